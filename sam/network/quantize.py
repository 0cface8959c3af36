"""Opt-in approximate speed-up: int8 style heads in both encoders (CPU only).

The pSp encoder (Richardson et al., "Encoding in Style", CVPR 2021, Sec. 3) maps each of the 18 W+ rows with its
own "map2style" head: a stack of stride-2 3x3 convolutions with 512 channels, from the 64, 32 or 16 px feature
map down to 1x1. On a CPU these heads take about half of an encoder's time although their maps are small: each
convolution reads 9 MB of float32 weights. Here their convolutions become dynamically quantized int8 ones
(weights per output channel, activations per tensor, chosen at run time; no calibration data), which read a
quarter of the bytes and use the CPU's integer dot products. The IR-SE50 body stays in float32: quantizing it
gained little time and most of the error (measured with the full-size synthetic checkpoint).

This is **not** the default and changes the results: ``bench/benchmark.py`` prints the error of the codes and
images against the exact path. The int8 weights are extra memory (about 0.23 GB per encoder at full size).
"""

from __future__ import annotations

import warnings

from torch import nn

__all__ = ["quantize_style_heads", "is_quantized"]


def quantize_style_heads(model: nn.Module) -> int:
    """Replace every ``nn.Conv2d`` of ``model.encoder.styles`` and ``model.pretrained_encoder.styles`` by a
    dynamically quantized int8 convolution, in place. Returns how many were replaced (0 when already done).

    Only for inference on the CPU: the int8 kernels have no backward pass and no CUDA version.
    """
    if model.latent_avg.device.type != "cpu":
        raise ValueError("int8 style heads run on the CPU only; load the model with device='cpu'")
    from torch.ao.nn.quantized.dynamic import Conv2d as DynamicConv2d
    from torch.ao.quantization import per_channel_dynamic_qconfig

    replaced = 0
    with warnings.catch_warnings():
        # torch.ao's eager-mode quantization is marked for migration to torchao, which has no int8 convolution
        # for the CPU yet; the kernels used here (fbgemm / oneDNN) are the ones PyTorch itself ships.
        warnings.simplefilter("ignore")
        for encoder in (model.encoder, model.pretrained_encoder):
            for head in encoder.styles:
                for i, layer in enumerate(head.convs):
                    if type(layer) is nn.Conv2d:
                        layer.qconfig = per_channel_dynamic_qconfig
                        head.convs[i] = DynamicConv2d.from_float(layer)
                        replaced += 1
    return replaced


def is_quantized(model: nn.Module) -> bool:
    """Whether :func:`quantize_style_heads` has been applied."""
    from torch.ao.nn.quantized.dynamic import Conv2d as DynamicConv2d

    return any(isinstance(m, DynamicConv2d) for m in model.encoder.styles.modules())
