"""The pSp encoder that SAM uses twice: an IR-SE50 backbone with a feature pyramid of style heads.

* IR-SE50: the ArcFace backbone of Deng et al. (CVPR 2019): improved residual units ("bottleneck_IR") with
  squeeze-and-excitation (Hu et al., CVPR 2018), 24 units in four stages at 64/128/256/512 channels.
* GradualStyleEncoder: Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation"
  (pSp, CVPR 2021), Sec. 3 and Fig. 2: a feature pyramid over the backbone; coarse styles (0-2) read the 16x16
  map, middle styles (3-6) the 32x32 map, fine styles (7-) the 64x64 map. Each style head is a stack of stride-2
  3x3 convolutions down to 1x1 followed by an equalised-lr linear layer.

SAM (Sec. 3) uses one encoder with 4 input channels (RGB + target age) that is trained, and a frozen copy of
pSp's FFHQ encoder with 3 input channels. Names follow the published checkpoint (``encoder.*`` and
``pretrained_encoder.*`` keys). Widths and depths are configurable for tiny test models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sam.network.stylegan2 import EqualLinear

__all__ = ["EncoderConfig", "GradualStyleEncoder", "IRSEBackbone", "bottleneck_IR_SE"]


@dataclass(frozen=True)
class EncoderConfig:
    """Size of an IR-SE + pSp encoder. Defaults: IR-SE50 as in the published checkpoint."""

    base_channels: int = 64  # stage widths are base * (1, 2, 4, 8)
    units: tuple[int, int, int, int] = (3, 4, 14, 3)  # bottleneck units per stage (IR-50)
    input_size: int = 256  # side of the input images
    style_dim: int = 512  # width of each W+ row

    @property
    def widths(self) -> tuple[int, int, int, int]:
        b = self.base_channels
        return (b, 2 * b, 4 * b, 8 * b)


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from global average pooling (reduction 16)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, max(channels // reduction, 1), 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(max(channels // reduction, 1), channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class bottleneck_IR_SE(nn.Module):  # noqa: N801 - the name of this unit in the IR-SE / pSp literature
    """BN -> 3x3 conv -> PReLU -> 3x3 conv (stride) -> BN -> SE, plus an identity (or 1x1 conv + BN) shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.shortcut_layer, nn.MaxPool2d):
            # A 1x1 max-pool is plain subsampling (identity at stride 1): take a view instead of a copy.
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        else:
            shortcut = self.shortcut_layer(x)
        return self.res_layer(x).add_(shortcut)


def _body(cfg: EncoderConfig) -> nn.Sequential:
    """The four stages; the first unit of each stage halves the resolution."""
    units = []
    in_ch = cfg.base_channels
    for depth, n in zip(cfg.widths, cfg.units):
        units.append(bottleneck_IR_SE(in_ch, depth, 2))
        units.extend(bottleneck_IR_SE(depth, depth, 1) for _ in range(n - 1))
        in_ch = depth
    return nn.Sequential(*units)


class IRSEBackbone(nn.Module):
    """IR-SE body with input layer only (no ArcFace output head); used by the identity loss in training."""

    def __init__(self, input_nc: int = 3, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, cfg.base_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cfg.base_channels),
            nn.PReLU(cfg.base_channels),
        )
        self.body = _body(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))


class GradualStyleBlock(nn.Module):
    """Style head: log2(spatial) stride-2 3x3 convs (LeakyReLU 0.01) down to 1x1, then an equalised linear."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        num_pools = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            layers += [nn.Conv2d(out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` (align_corners=True) to ``y``'s size and add ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class GradualStyleEncoder(nn.Module):
    """pSp encoder: image (B x input_nc x S x S) -> W+ residual codes (B x n_styles x style_dim)."""

    coarse_ind = 3
    middle_ind = 7
    heads_channels_last = False  # True once sam.network.onednn has packed the heads (they take channels-last maps)

    def __init__(self, input_nc: int = 3, n_styles: int = 18, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.style_count = n_styles
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, cfg.base_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cfg.base_channels),
            nn.PReLU(cfg.base_channels),
        )
        self.body = _body(cfg)
        # feature taps: end of stage 2 (c1, S/4), stage 3 (c2, S/8), stage 4 (c3, S/16)
        ends = [sum(cfg.units[: i + 1]) - 1 for i in range(4)]
        self.taps = (ends[1], ends[2], ends[3])
        top = cfg.widths[3]
        spatial = [cfg.input_size // 16, cfg.input_size // 8, cfg.input_size // 4]
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            s = spatial[0] if i < self.coarse_ind else spatial[1] if i < self.middle_ind else spatial[2]
            self.styles.append(GradualStyleBlock(top, cfg.style_dim, s))
        self.latlayer1 = nn.Conv2d(cfg.widths[2], top, 1)
        self.latlayer2 = nn.Conv2d(cfg.widths[1], top, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W+ codes (float32) of ``x``, computed in the dtype of the encoder's weights (see sam.network.precision)."""
        x = x.to(self.input_layer[0].weight.dtype)
        # CPU inference runs the IR-SE body in channels-last (5 % faster here, same sums); the feature taps go
        # back to NCHW, the faster layout for plain style-head convolutions (prepacked heads take channels-last)
        body_cl = not torch.is_grad_enabled() and not x.is_cuda
        if body_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.input_layer(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[i] = x.contiguous() if body_cl and not self.heads_channels_last else x
        c1, c2, c3 = (feats[t] for t in self.taps)
        latents = [self.styles[j](c3) for j in range(min(self.coarse_ind, self.style_count))]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in range(self.coarse_ind, min(self.middle_ind, self.style_count))]
        p1 = _upsample_add(p2, self.latlayer2(c1))
        latents += [self.styles[j](p1) for j in range(self.middle_ind, self.style_count)]
        return torch.stack(latents, dim=1).float()
