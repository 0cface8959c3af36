"""SAM: Style-based Age Manipulation (Alaluf, Patashnik, Cohen-Or, SIGGRAPH 2021), the network.

Paper Sec. 3 / Fig. 3: an input face (RGB in [-1, 1]) gets a fourth constant channel holding the target age
divided by 100. A trained pSp encoder maps it to a *residual* in W+; a frozen, pretrained pSp encoder maps the RGB
image to its own W+ code; their sum plus StyleGAN's average latent is decoded by a frozen StyleGAN2 generator:

    W+ = encoder([x, age/100]) + pretrained_encoder(x) + latent_avg
    y  = decoder(W+)                  # 1024 x 1024, pooled to 256 when ``resize``

Style mixing (Sec. 4.4, "reference-guided"): rows ``latent_mask`` of W+ are replaced by (or blended with weight
``alpha`` into) another code, e.g. ``pretrained_encoder(reference) + latent_avg``.

:class:`SAM` keeps the published module names (``encoder``, ``pretrained_encoder``, ``decoder``) and call
signature and saves the published layout; :func:`sam.network.checkpoint.load_model` loads ``sam_ffhq_aging.pt`` into it
(strict key checking). Its sizes are :class:`sam.network.config.SAMConfig`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import nn

from sam.atomic import atomic_path
from sam.network.config import OPTS_FIELDS, TINY_CONFIG, SAMConfig
from sam.network.encoders import GradualStyleEncoder
from sam.network.precision import FP32, Precision, fast_encoder
from sam.network.stylegan2 import Generator

__all__ = ["SAM", "SAMConfig", "add_age_channel", "random_init_", "TINY_CONFIG", "OPTS_FIELDS"]


def add_age_channel(rgb: torch.Tensor, ages: torch.Tensor | list[float] | float) -> torch.Tensor:
    """``B x 3 x H x W`` images in [-1, 1] and ages in years -> ``B x 4 x H x W`` network input (age / 100)."""
    ages_t = torch.as_tensor(ages, dtype=rgb.dtype, device=rgb.device).reshape(-1)
    if ages_t.numel() == 1 and rgb.shape[0] > 1:
        ages_t = ages_t.expand(rgb.shape[0])
    if ages_t.numel() != rgb.shape[0]:
        raise ValueError(f"got {ages_t.numel()} ages for {rgb.shape[0]} images")
    age_plane = (ages_t / 100.0).view(-1, 1, 1, 1).expand(-1, 1, *rgb.shape[2:])
    return torch.cat([rgb, age_plane], dim=1)


class SAM(nn.Module):
    """The SAM age transformation network (encoder + frozen pretrained encoder + StyleGAN2 decoder)."""

    def __init__(self, config: SAMConfig | None = None, opts: dict[str, Any] | None = None):
        super().__init__()
        self.config = config = config or SAMConfig()
        self.opts: dict[str, Any] = dict(opts or {})
        self.opts.setdefault("output_size", config.output_size)
        self.opts.setdefault("input_nc", config.input_nc)
        self.opts.setdefault("start_from_encoded_w_plus", config.start_from_encoded_w_plus)
        self.opts.setdefault("start_from_latent_avg", config.start_from_latent_avg)
        self.opts.setdefault("device", "cpu")
        n = config.n_styles
        enc_cfg = dataclasses.replace(config.encoder, style_dim=config.style_dim)
        # Registration order = key order of the published state_dict.
        self.encoder = GradualStyleEncoder(config.input_nc, n, enc_cfg)
        self.decoder = Generator(config.output_size, config.style_dim, config.n_mlp, config.channel_multiplier,
                                 config.channel_max)
        self.face_pool = nn.AdaptiveAvgPool2d((config.pool_size, config.pool_size))
        self.pretrained_encoder = GradualStyleEncoder(config.input_nc - 1, n, enc_cfg)
        self.pretrained_encoder.requires_grad_(False)
        # Stored beside (not inside) the state_dict in the published checkpoint, hence not persistent here.
        self.register_buffer("latent_avg", torch.zeros(n, config.style_dim), persistent=False)
        # exact / fast dtypes (sam.network.precision); float32 unless the checkpoint's load_model(precision=...) says
        self.precision: Precision = FP32

    def encode_pretrained(self, rgb: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """The frozen pretrained encoder's code of ``B x 3 x H x W`` faces (float32; ``fast``: computed by a copy in
        ``self.precision.fast``, e.g. for a photo's first preview, see :mod:`sam.network.precision`)."""
        if not fast:
            return self.pretrained_encoder(rgb)
        return fast_encoder(self, "pretrained_encoder")(rgb).float()

    # ----------------------------------------------------------------------------------------------------------
    # Forward pass (the published interface)

    def forward(
        self,
        x: torch.Tensor,
        resize: bool = True,
        latent_mask: list[int] | None = None,
        input_code: bool = False,
        randomize_noise: bool = True,
        inject_latent: torch.Tensor | None = None,
        return_latents: bool = False,
        alpha: float | None = None,
        input_is_full: bool = False,
        pretrained_codes: torch.Tensor | None = None,
        resolution: int | None = None,
    ):
        """Age faces, or decode codes.

        Args:
            x: ``B x 4 x 256 x 256`` (RGB in [-1, 1] + a plane of age / 100), or W+ codes with ``input_code``.
            resize: pool the output to ``pool_size`` (256).
            latent_mask, inject_latent, alpha: style mixing of the listed W+ rows (zeroed without inject_latent).
            input_code: ``x`` is a code; it goes through the mapping network unless ``input_is_full``.
            randomize_noise: fresh noise per call (published default) or the stored noise maps.
            return_latents: also return the W+ code that was decoded.
            pretrained_codes: ``pretrained_encoder(x_rgb)`` computed earlier (it does not depend on the age).
            resolution: stop the generator at this side (its intermediate toRGB output), e.g. for previews.
        """
        if input_code:
            codes = x
        else:
            codes = self.encode(x, pretrained_codes=pretrained_codes)
        if latent_mask is not None:
            codes = mix_styles(codes, latent_mask, inject_latent, alpha)
        input_is_latent = (not input_code) or input_is_full
        dtype = self.precision.exact
        images, result_latent = self.decoder(
            [codes], input_is_latent=input_is_latent, randomize_noise=randomize_noise,
            return_latents=return_latents, resolution=resolution,
            dtype=None if dtype == torch.float32 else dtype,
        )
        if resize and images.shape[-1] != self.config.pool_size:
            images = self.face_pool(images)
        if return_latents:
            return images, result_latent
        return images

    def encode(
        self, x: torch.Tensor, pretrained_codes: torch.Tensor | None = None, fast: bool = False
    ) -> torch.Tensor:
        """W+ codes of ``B x 4 x H x W`` inputs: trained residual (+ frozen encoder's code) (+ latent_avg).

        ``fast``: the trained encoder runs in ``self.precision.fast`` (e.g. a bfloat16 copy; see
        :mod:`sam.network.precision`); the frozen encoder's code is computed in the exact dtype. Codes are float32."""
        residual = (fast_encoder(self) if fast else self.encoder)(x)
        if self.config.start_from_encoded_w_plus and pretrained_codes is None:
            pretrained_codes = self.pretrained_encoder(x[:, :-1])
        return self.add_base(residual, pretrained_codes)

    def add_base(self, residual: torch.Tensor, pretrained_codes: torch.Tensor | None) -> torch.Tensor:
        """The trained encoder's output ``residual`` -> W+ codes: + ``latent_avg`` and/or + the frozen encoder's
        code + ``latent_avg``, as the checkpoint's options say (the sum :meth:`encode` returns)."""
        codes = residual
        if self.config.start_from_latent_avg:
            codes = codes + self.latent_avg
        if self.config.start_from_encoded_w_plus:
            if pretrained_codes is None:
                raise ValueError("this model adds the frozen encoder's code: pass pretrained_codes")
            codes = codes + pretrained_codes + self.latent_avg
        return codes

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints

    def checkpoint_dict(self) -> dict[str, Any]:
        """``{'state_dict', 'latent_avg', 'opts'}``, the published layout (plus ``opts['model_config']``)."""
        opts = dict(self.opts)
        opts["model_config"] = self.config.to_dict()
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return {"state_dict": state, "latent_avg": self.latent_avg.detach().cpu().clone(), "opts": opts}

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint atomically (a temporary file renamed into place)."""
        with atomic_path(path) as tmp:
            torch.save(self.checkpoint_dict(), tmp)


# --------------------------------------------------------------------------------------------------------------
# Style mixing


def mix_styles(
    codes: torch.Tensor, latent_mask: list[int], inject_latent: torch.Tensor | None, alpha: float | None = None
) -> torch.Tensor:
    """Replace (or blend, with ``alpha``) the W+ rows in ``latent_mask`` by those of ``inject_latent``.

    Without ``inject_latent`` the masked rows are zeroed (the published behaviour). Returns a new tensor.
    """
    codes = codes.clone()
    n = codes.shape[1]
    for i in latent_mask:
        if not -n <= int(i) < n:
            raise ValueError(f"latent_mask index {i} is outside 0..{n - 1}")
        if inject_latent is None:
            codes[:, i] = 0
        elif alpha is not None:
            codes[:, i] = alpha * inject_latent[:, i] + (1 - alpha) * codes[:, i]
        else:
            codes[:, i] = inject_latent[:, i]
    return codes


def random_init_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and BatchNorm statistic with deterministic random values of sensible scale.

    For smoke tests and demos without real weights (a fresh module has zero biases and noise weights, which hide
    bugs). FIR kernels and counters are left as they are.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("kernel"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(".noise.weight") or name.endswith("bias") and "modulation" not in name:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("modulation.bias"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim <= 1:  # BatchNorm / PReLU weights
                t.copy_(1 + 0.05 * torch.randn(t.shape, generator=g))
            elif name.startswith("decoder.") or name.endswith("linear.weight"):
                t.copy_(torch.randn(t.shape, generator=g))  # equalised-lr layers scale at run time
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
    if hasattr(model, "latent_avg"):
        model.latent_avg = 0.5 * torch.randn(model.latent_avg.shape, generator=g)
    return model
