"""The StyleGAN2 generator (config-f) that SAM decodes its W+ codes with.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020): a mapping network
(Sec. 2 of StyleGAN: pixel norm + an 8-layer MLP with a 100x lower learning rate), a learned 4x4 constant,
modulated / demodulated 3x3 convolutions (Sec. 2.2, Eq. 1-3), per-pixel noise, and the "skip" output
architecture (Sec. 4.1, Fig. 7b): every resolution adds its toRGB output to the upsampled image so far.

Module and parameter names follow the layout of the published SAM checkpoint (``decoder.*`` keys), so
``decoder.state_dict()`` of the published file loads with strict checking. Every size is configurable
(resolution, style dimension, mapping depth, channel multiplier and cap) so that tests can run tiny generators.

W+ indexing: ``conv1`` reads code 0 and ``to_rgb1`` code 1; then resolution ``r = 8, 16, ...`` uses codes
``i, i + 1, i + 2`` (up-conv, conv, toRGB) with ``i = 1, 3, 5, ...``. A generator of side ``2**k`` has
``2k - 2`` codes (18 at 1024 px).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sam.network.ops import fused_leaky_relu, make_kernel, upfirdn2d

__all__ = ["Generator", "generator_channels"]


def generator_channels(resolution: int, channel_multiplier: int = 2, channel_max: int = 512) -> int:
    """Feature maps at a resolution: 512 up to 32 px, then halving per octave (times the channel multiplier)."""
    return min(channel_max, channel_multiplier * 16384 // resolution)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (weights scaled by ``lr_mul / sqrt(fan_in)`` at run time)."""

    def __init__(
        self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
        activation: str | None = None,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "fused_lrelu":
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class FusedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by leaky ReLU (slope 0.2) and a sqrt(2) gain."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter (``upfirdn2d`` without resampling). ``kernel`` is a buffer stored in the checkpoint."""

    def __init__(self, taps: list[int], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling by zero insertion and FIR filtering (used on the skip image between resolutions)."""

    def __init__(self, taps: list[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(taps) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


def _fold_batch(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> 1 x BC x H x W for a convolution with ``groups=B``. A batch of one is passed as is: a
    reshape would rewrite the (unused) batch stride and oneDNN then no longer sees a channels-last tensor."""
    return x if x.shape[0] == 1 else x.reshape(1, -1, *x.shape[2:])


def _unfold_batch(x: torch.Tensor, b: int) -> torch.Tensor:
    """The inverse of :func:`_fold_batch`."""
    return x if b == 1 else x.reshape(b, -1, *x.shape[2:])


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (StyleGAN2 Eq. 1-3), optionally demodulated and/or 2x upsampling.

    Instead of building one weight per sample (a grouped convolution), the style scales the input channels and
    the demodulation scales the output channels of one shared convolution: the same linear map, computed with
    ordinary dense convolutions.
    """

    def __init__(
        self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
        upsample: bool = False, blur_kernel: list[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        self.eps = 1e-8
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        if upsample:
            # Transposed conv (stride 2) then a blur whose padding re-centres the result on the 2x grid.
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(list(blur_kernel), pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    # How to apply the per-sample weights: "input" scales activations around one shared dense convolution
    # (best for training and large batches); "weight" builds each sample's modulated weight and runs a grouped
    # convolution (fewer passes over large activations; best for inference with small batches); "auto" picks
    # "weight" for single images when no gradient is needed (measured fastest on CPU).
    fused = "auto"

    def _modulation(
        self, style: torch.Tensor, gain: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The shared weight, the per-sample input scales and the per-(sample, output) demodulation x gain."""
        s = self.modulation(style)  # (B, in)
        w = self.weight[0] * self.scale  # (out, in, k, k)
        coef = None
        if self.demodulate:
            # ||w_o * s||^2 over (in, k, k) = sum_i s_i^2 * sum_k w_{o,i,k}^2
            coef = torch.rsqrt((s * s) @ (self._weight_sq() * self.scale**2).t() + self.eps)  # (B, out)
            if gain != 1.0:
                coef = coef * gain
        elif gain != 1.0:
            s = s * gain  # without demodulation the output is linear in the style
        return w, s, coef

    def _weight_sq(self) -> torch.Tensor:
        """``sum_k weight[o, i, k]^2`` (out x in) of the raw weight: a constant of the layer, so inference keeps it
        (recomputed when the weight changes) instead of re-reading the whole weight twice per call."""
        w = self.weight[0]
        if torch.is_grad_enabled() and w.requires_grad:
            return w.pow(2).sum([2, 3])
        return self._inference_constants()[0]

    def _inference_constants(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Kept between inference calls (rebuilt when the weight changes): the squared weight summed over the
        taps, and for the upsampling layer the weight transposed to (in, out, k, k), the layout its per-sample
        weights are written in (a contiguous read is 2.8x faster than a transposed one here). About 4 % of the
        float32 weight, plus a copy of each upsampling layer's weight: 44 MB at 1024 px."""
        w = self.weight[0]
        # inference tensors (made under torch.inference_mode) have no version counter: keyed by storage only
        version = -1 if self.weight.is_inference() else self.weight._version
        key = (self.weight.data_ptr(), version, w.dtype, w.device)
        cached = self.__dict__.get("_inference_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                wf = w.to(torch.promote_types(w.dtype, torch.float32))
                wt = wf.transpose(0, 1).contiguous() if self.upsample else None
                cached = (key, wf.pow(2).sum([2, 3]), wt)
            self.__dict__["_inference_cache"] = cached  # a plain attribute: not a buffer, not in the state_dict
        return cached[1], cached[2]

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, gain: float = 1.0, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Modulated convolution of ``x`` (B x in x H x W) with per-sample styles (B x style_dim).

        ``gain`` and ``bias`` (per output channel) give ``gain * conv(x) + bias`` with the gain folded into the
        per-sample weights and the bias into the convolution where possible (no extra pass over the output).
        """
        mode = self.fused
        if mode == "auto":
            mode = "weight" if (not torch.is_grad_enabled() and x.shape[0] == 1) else "input"
        if mode == "weight":
            weight, bias = self.grouped_weights(style, gain, bias, dtype=x.dtype)
            return self.grouped_forward(x, weight, bias)
        w, s, coef = self._modulation(style, gain)
        x = x * s.to(x.dtype)[:, :, None, None]
        if self.upsample:
            x = F.conv_transpose2d(x, w.transpose(0, 1).to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, w.to(x.dtype), padding=self.padding)
        if coef is not None:
            x = x * coef.to(x.dtype)[:, :, None, None]
        if self.upsample:
            x = self.blur(x)
        if bias is not None:
            x = x + bias.to(x.dtype).view(1, -1, 1, 1)
        return x

    def grouped_weights(
        self, style: torch.Tensor, gain: float = 1.0, bias: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each sample's modulated (and demodulated) weight, stacked for a convolution with ``groups=B``.

        Returns the weight, shaped ``(B*out, in, k, k)`` for ``conv2d`` or ``(B*in, out, k, k)`` for the
        upsampling ``conv_transpose2d``, and the bias repeated per sample (``B*out``, or None)."""
        # The factors in float32 (the range-sensitive part; float64 for float64 weights), then one pass over the
        # weight writing the result in ``dtype`` and in the convolution's layout:
        # w[b, o, i] = weight[o, i] * scale * s[b, i] * coef[b, o].
        cdt = torch.promote_types(self.weight.dtype, torch.float32)  # float32, or float64 for float64 weights
        s = self.modulation(style).to(cdt) * self.scale  # (B, in)
        weight = self.weight[0].to(cdt)
        b, k = s.shape[0], self.kernel_size
        if self.demodulate:
            # ||w_o * s||^2 over (in, k, k) = sum_i s_i^2 * sum_k w_{o,i,k}^2 (the scale is inside s)
            coef = torch.rsqrt((s * s) @ self._weight_sq().t() + self.eps) * gain  # (B, out)
            factor = coef[:, :, None] * s[:, None, :]  # (B, out, in)
        else:
            factor = (s * gain)[:, None, :].expand(b, self.out_channel, self.in_channel)
        if torch.is_grad_enabled() and (factor.requires_grad or weight.requires_grad):  # out= has no autograd
            wb = (weight[None] * factor[..., None, None]).to(dtype)
            if self.upsample:
                wb = wb.transpose(1, 2).reshape(b * self.in_channel, self.out_channel, k, k).contiguous()
            else:
                wb = wb.reshape(b * self.out_channel, self.in_channel, k, k)
        elif self.upsample:
            # (B*in, out, k, k) for conv_transpose2d, made contiguous: a strided weight makes oneDNN fall back to
            # NCHW outputs for channels-last inputs
            weight_t = self._inference_constants()[1]  # (in, out, k, k)
            wb = torch.empty(b, self.in_channel, self.out_channel, k, k, dtype=dtype, device=weight.device)
            torch.mul(weight_t[None], factor.transpose(1, 2)[..., None, None], out=wb)
            wb = wb.view(b * self.in_channel, self.out_channel, k, k)
        else:
            wb = torch.empty(b, self.out_channel, self.in_channel, k, k, dtype=dtype, device=weight.device)
            torch.mul(weight[None], factor[..., None, None], out=wb)
            wb = wb.view(b * self.out_channel, self.in_channel, k, k)
        return wb, (bias.to(dtype).repeat(b) if bias is not None else None)

    def grouped_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """Apply :meth:`grouped_weights` output to ``x`` (B x in x H x W), padding / blurring as the layer does."""
        b = x.shape[0]
        if self.upsample:
            x = self.blur(_unfold_batch(F.conv_transpose2d(_fold_batch(x), weight, stride=2, groups=b), b))
            if bias is not None:
                x = x.add_(bias.view(b, -1, 1, 1))  # the blur's fresh output: safe in place
            return x
        return _unfold_batch(F.conv2d(_fold_batch(x), weight, bias, padding=self.padding, groups=b), b)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
            f"demodulate={self.demodulate}"
        )


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by one learned weight; fresh Gaussian noise when none is given."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, 1, h, w).normal_()
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4x4 input tensor, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: list[int] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled() or x.is_cuda:
            return self.activate(self.noise(self.conv(x, style), noise))
        gain, bias, noise_scale = self.folded()
        out = self.conv(x, style, gain=gain, bias=bias)
        if noise is None:
            b, _, h, w = out.shape
            noise = out.new_empty(b, 1, h, w).normal_()
        out.add_(noise.to(out.dtype), alpha=noise_scale)
        return F.leaky_relu_(out, 0.2)

    def folded(self) -> tuple[float, torch.Tensor, float]:
        """Gain, bias and noise scale for CPU inference, which makes fewer passes over large activations: leaky
        ReLU is positively homogeneous, so lrelu(y + n + b) * g == lrelu(g*y + g*n + g*b), and g*y and g*b are
        folded into the convolution. Returns ``(g, g * bias, g * noise weight)``; then only lrelu(., 0.2) is left."""
        g = math.sqrt(2)
        return g, self.activate.bias * g, float(self.noise.weight) * g


class ToRGB(nn.Module):
    """1x1 modulated (not demodulated) conv to RGB, added to the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: list[int] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(list(blur_kernel))
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        # the RGB sum is kept in float32 whatever the feature maps' dtype (range and 8-bit output precision)
        out = self.conv(x, style, bias=self.bias.view(-1)).float()
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """StyleGAN2 generator (skip architecture). Defaults are config-f at 1024 px, as used by SAM.

    Args:
        size: output resolution (a power of two >= 8).
        style_dim: dimension of z, w and each W+ row.
        n_mlp: layers of the mapping network.
        channel_multiplier: 2 for config-f.
        channel_max: cap on feature maps (512 in config-f; small values give tiny test generators).
        blur_kernel: separable FIR taps for resampling.
        lr_mlp: learning-rate multiplier of the mapping network.
    """

    def __init__(self, size: int = 1024, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channel_max: int = 512, blur_kernel: list[int] = (1, 3, 3, 1), lr_mlp: float = 0.01):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"generator size must be a power of two >= 8, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1  # noise inputs
        self.n_latent = self.log_size * 2 - 2  # W+ rows
        ch = {2**r: generator_channels(2**r, channel_multiplier, channel_max) for r in range(2, self.log_size + 1)}
        self.channels = ch

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_ch = ch[4]
        for r in range(3, self.log_size + 1):
            out_ch = ch[2**r]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    def stored_noise(self) -> list[torch.Tensor]:
        """The fixed noise maps stored in the checkpoint (``noises.noise_i``), coarse to fine."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 4096, seed: int = 0) -> torch.Tensor:
        """Average w over ``n_latent`` random z (for truncation)."""
        device = self.input.input.device
        g = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(n_latent, self.style_dim, generator=g).to(device)
        return self.style(z).mean(0, keepdim=True)

    def forward(
        self,
        styles: list[torch.Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: list[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        resolution: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Render images.

        Args:
            styles: one or two tensors of z / w (B x D) or W+ (B x n_latent x D) codes.
            input_is_latent: the codes are already in W / W+ (skip the mapping network).
            noise: one map per noise input; default: fresh random noise, or the stored maps when
                ``randomize_noise`` is False.
            inject_index: with two style tensors, rows before this index come from the first.
            resolution: stop at this output resolution (a power of two <= size) and return that
                intermediate skip image; the full image when None.
            dtype: the feature maps' dtype (default float32), e.g. ``torch.bfloat16`` for the fast path of
                :mod:`sam.network.precision`. The weights stay as they are: each layer's modulated weight is built from
                them and the style in float32, then cast; the noise is cast; the RGB skip image stays float32.

        Returns ``(image, latent)``; ``latent`` (B x n_latent x D) only when ``return_latents``.
        """
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.stored_noise()
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (see mean_latent())")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) < 2:
            latent = styles[0]
            if latent.ndim < 3:
                latent = latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        else:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent - 1, ()).item())
            a, b = (s if s.ndim == 3 else s.unsqueeze(1).repeat(1, self.n_latent, 1) for s in styles[:2])
            latent = torch.cat([a[:, :inject_index], b[:, inject_index:]], 1)
        if latent.shape[1] != self.n_latent:
            raise ValueError(f"expected {self.n_latent} W+ rows, got {latent.shape[1]}")

        target = resolution or self.size
        if target < 4 or target > self.size or target & (target - 1):
            raise ValueError(f"resolution must be a power of two between 4 and {self.size}, got {resolution}")

        out = self.input(latent.shape[0])
        if dtype is not None:
            out = out.to(dtype)
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        res = 4
        for conv_up, conv, noise_up, noise_same, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            if res >= target:
                break
            if self._use_bands(out, 2 * res):
                out, skip = self._level_in_bands(
                    conv_up, conv, to_rgb, out, latent[:, i : i + 3], noise_up, noise_same, skip,
                    keep_features=2 * res < target,
                )
            else:
                out = conv_up(out, latent[:, i], noise=noise_up)
                out = conv(out, latent[:, i + 1], noise=noise_same)
                skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
            res *= 2
        return skip, (latent if return_latents else None)

    # CPU inference renders every level taller than ``band_rows`` in bands of output rows (each band with the
    # halo of rows its convolutions and blur read), in channels-last, so that a level's large intermediate maps
    # never exist whole and stay in cache. Measured here at 1024 px: generator ~2.5 s -> ~1.9 s, peak RSS of
    # load + one image 3.2 -> 2.9 GiB; the same sums (tests/test_model.py). None turns it off.
    band_rows: int | None = 64

    def _use_bands(self, x: torch.Tensor, res: int) -> bool:
        """Levels taller than one band, on CPU, without autograd."""
        return self.band_rows is not None and res > self.band_rows and not torch.is_grad_enabled() and not x.is_cuda

    def _level_in_bands(
        self, conv_up: StyledConv, conv: StyledConv, to_rgb: ToRGB, x: torch.Tensor, codes: torch.Tensor,
        noise_up: torch.Tensor | None, noise_same: torch.Tensor | None, skip: torch.Tensor,
        keep_features: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One resolution level (up-conv, conv, toRGB) computed band by band; same result as the plain path.

        Returns the level's feature maps (only when ``keep_features``, i.e. a finer level follows) and the
        RGB skip image. Bias, gain and noise are folded as in :meth:`StyledConv.folded`."""
        b, _, h_in, w_in = x.shape
        size = 2 * h_in
        dtype = x.dtype
        g_up, bias_up, a_up = conv_up.folded()
        g_c, bias_c, a_same = conv.folded()
        w_up, b_up = conv_up.conv.grouped_weights(codes[:, 0], g_up, bias_up, dtype=dtype)
        w_c, b_c = conv.conv.grouped_weights(codes[:, 1], g_c, bias_c, dtype=dtype)
        w_rgb, b_rgb = to_rgb.conv.grouped_weights(codes[:, 2], 1.0, to_rgb.bias.view(-1), dtype=dtype)
        # fresh noise is drawn in the same order and shape as the plain path draws it
        noise_up = x.new_empty(b, 1, size, size).normal_() if noise_up is None else noise_up.to(dtype)
        noise_same = x.new_empty(b, 1, size, size).normal_() if noise_same is None else noise_same.to(dtype)
        rgb = to_rgb.upsample(skip)  # 3 channels: cheap to make whole; each band adds its toRGB in place
        # Channels-last: a band of rows is then one contiguous block, and oneDNN's convolutions on band-sized
        # maps ran 1.7x faster in this layout than in NCHW here (the stride-2 transposed conv 6x).
        cl = torch.channels_last
        x = x.contiguous(memory_format=cl)
        feats = None
        if keep_features:
            feats = torch.empty(b, conv.conv.out_channel, size, size, dtype=dtype, memory_format=cl)

        k_up, pad = conv_up.conv.kernel_size, conv.conv.padding
        blur = conv_up.conv.blur
        kb, (pb0, _) = blur.kernel.shape[0], blur.pad
        for r0 in range(0, size, self.band_rows):
            r1 = min(r0 + self.band_rows, size)
            # Rows the band needs, back to front: a0:a1 of the up-conv's output (read by the 3x3 conv), u0:u1 of the
            # transposed conv's output (read by the blur), x0:x1 of the input (read by the stride-2 transposed conv).
            a0, a1 = max(r0 - pad, 0), min(r1 + pad, size)
            u0, u1 = max(a0 - pb0, 0), min(a1 - pb0 + kb - 1, 2 * h_in + k_up - 2)
            x0, x1 = max(-((k_up - 1 - u0) // 2), 0), min((u1 - 1) // 2 + 1, h_in)
            # Each op runs on its whole input with its own padding, so row q of its output is row lo + q of the
            # level; rows outside the needed range are partial sums that are never read (no cropping copies).
            lo = 2 * x0
            u = F.conv_transpose2d(_fold_batch(x[:, :, x0:x1]), w_up, stride=2, groups=b)
            a = blur(_unfold_batch(u, b))
            if lo + a.shape[2] > size:  # longer blur kernels only: rows past the image must be the conv's zeros
                a = a[:, :, : size - lo].contiguous()
            act = a[:, :, a0 - lo : a1 - lo]
            act.add_(b_up.view(b, -1, 1, 1)).add_(noise_up[:, :, a0:a1], alpha=a_up)
            F.leaky_relu_(act, 0.2)
            o = _unfold_batch(F.conv2d(_fold_batch(a), w_c, b_c, padding=pad, groups=b), b)
            band = o[:, :, r0 - lo : r1 - lo]
            F.leaky_relu_(band.add_(noise_same[:, :, r0:r1], alpha=a_same), 0.2)
            if feats is not None:
                feats[:, :, r0:r1] = band
            y = _unfold_batch(F.conv2d(_fold_batch(o), w_rgb, b_rgb, groups=b), b)
            rgb[:, :, r0:r1] += y[:, :, r0 - lo : r1 - lo]
        return feats, rgb
