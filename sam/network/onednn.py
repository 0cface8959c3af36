"""Prepacked oneDNN convolutions for the encoders' style heads on a CPU (the bfloat16 copies of ``auto``).

The pSp encoder (Richardson et al., CVPR 2021, Sec. 3) maps each of the 18 W+ rows with its own head: stride-2 3x3
convolutions of 512 channels from a 64, 32 or 16 px map down to 1x1 (:class:`~sam.network.encoders.GradualStyleBlock`).
Their maps are small, so a plain ``conv2d`` call spends most of its time reordering its 4.7 MB bfloat16 weight
into oneDNN's blocked layout, every call, and converting the map's layout. Here each head convolution keeps its
weight reordered once, runs on channels-last maps, and applies its LeakyReLU inside the same oneDNN call (the
operators PyTorch's own CPU compiler uses for frozen models). Measured on a 2-core Intel Xeon with AMX, one
convolution: 64 px map 4.9 -> 2.5 ms, 32 px 1.9 -> 0.9 ms, 8 px 0.83 -> 0.28 ms, 2 px 0.74 -> 0.18 ms.

Only the reduced-precision copies that :func:`sam.network.precision.fast_encoder` makes are packed (previews, the first
look, videos: work that is approximate already); the exact float32 path is untouched. Packing checks itself on
one head against the plain convolution and is skipped (the copy stays plain) where the operators are missing or
disagree, e.g. in a PyTorch build without oneDNN.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from sam.network.encoders import GradualStyleBlock, GradualStyleEncoder

__all__ = ["PackedConv2d", "pack_style_heads"]

log = logging.getLogger("sam.network.onednn")

CHECK_TOLERANCE = 0.05  # largest difference to the plain head on a random map (bfloat16 rounding is ~0.01 here)


class PackedConv2d(nn.Module):
    """``conv`` followed by ``LeakyReLU(slope)`` as one oneDNN call with a prepacked weight (inference only).
    Inputs of any layout; the output is channels-last."""

    def __init__(self, conv: nn.Conv2d, slope: float, input_shape: tuple[int, int, int, int]):
        super().__init__()
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.groups, self.slope = conv.groups, float(slope)
        weight = conv.weight.detach()
        self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(input_shape))
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x.contiguous(memory_format=torch.channels_last), self.packed, self.bias, self.padding, self.stride,
            self.dilation, self.groups, "leaky_relu", [self.slope], "")


def _packed_head(head: GradualStyleBlock, side: int) -> nn.Sequential | None:
    """The convolutions of ``head`` (input maps ``side`` px) packed, or None when its layers are not plain
    conv + LeakyReLU pairs (e.g. the int8 heads of :mod:`sam.network.quantize`)."""
    layers = list(head.convs)
    pairs = list(zip(layers[::2], layers[1::2]))
    if len(layers) % 2 or not all(isinstance(c, nn.Conv2d) and type(a) is nn.LeakyReLU for c, a in pairs):
        return None
    packed = []
    for conv, act in pairs:
        packed.append(PackedConv2d(conv, act.negative_slope, (1, conv.in_channels, side, side)))
        side = (side + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
    return nn.Sequential(*packed)


def pack_style_heads(encoder: GradualStyleEncoder) -> bool:
    """Pack every style head of ``encoder`` (a CPU inference copy, modified in place) and run the heads on
    channels-last maps. Returns whether it did; a failed self-check leaves the encoder as it was."""
    weight = encoder.input_layer[0].weight
    if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    size = encoder.cfg.input_size
    sides = [size // 16 if i < encoder.coarse_ind else size // 8 if i < encoder.middle_ind else size // 4
             for i in range(encoder.style_count)]
    try:
        with torch.inference_mode():
            heads = [_packed_head(h, s) for h, s in zip(encoder.styles, sides)]
            if not heads or any(h is None for h in heads):
                return False
            probe = torch.randn(1, encoder.styles[0].convs[0].in_channels, sides[0], sides[0]).to(weight.dtype)
            plain = encoder.styles[0].convs(probe).float()
            fast = heads[0](probe).float()
            error = (plain - fast).abs().max().item()
        if not error <= CHECK_TOLERANCE * max(1.0, plain.abs().max().item()):
            log.warning("prepacked style heads differ from the plain ones (%.3g): not used", error)
            return False
    except (RuntimeError, AttributeError, NotImplementedError) as exc:
        log.info("prepacked style heads not available here (%s: %s)", type(exc).__name__, exc)
        return False
    for head, packed in zip(encoder.styles, heads):
        head.convs = packed
    encoder.heads_channels_last = True
    return True
