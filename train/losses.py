"""SAM's training objective (paper Sec. 3.3), with the published loss weights as flags.

For one forward pass (``real``: input -> target age; ``cycle``: output -> back to the input age):

    L = id_lambda * L_id  +  l2 * L2  +  lpips * LPIPS  +  l2_lambda_crop * L2_crop  +  lpips_lambda_crop * LPIPS_crop
        + w_norm_lambda * L_wnorm  +  aging_lambda * L_age

* L2 / LPIPS compare the output with the input image on the whole image; on the real pass of *aging* samples
  their weights are ``l2_lambda_aging`` / ``lpips_lambda_aging``, otherwise ``l2_lambda`` / ``lpips_lambda``.
  The crop terms use rows 35:223 and columns 32:220 of a 256 px image (scaled for other sizes). L2 is the mean
  over all elements, LPIPS the mean over the batch of each image's distance (both as in the published code).
* L_id = mean_i w_i (1 - cos(f(y_hat_i), f(y_i))), ArcFace features f of the crop pooled to 112; with
  ``use_weighted_id_loss`` w_i = 0.25 cos(pi |target_i - input_i|) + 0.75 (ages / 100), else 1.
* L_wnorm = mean_i || W+_i - latent_avg ||_2 (Frobenius over all rows).
* L_age = MSE(age(y_hat) / 100, target / 100), age() the DEX regressor's softmax expectation.
The cycle pass' total is multiplied by ``cycle_lambda``. A term whose weight is 0 is not computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["crop_box", "inner_crop", "id_weights", "w_norm_loss", "LossWeights", "SAMLoss"]

CROP_256 = (35, 223, 32, 220)  # rows top:bottom, cols left:right of the 256 px image


def crop_box(size: int) -> tuple[int, int, int, int]:
    """The inner face crop for a ``size`` px image: (35, 223, 32, 220) at 256, scaled proportionally otherwise."""
    if size == 256:
        return CROP_256
    return tuple(int(round(v * size / 256)) for v in CROP_256)  # type: ignore[return-value]


def inner_crop(images: torch.Tensor) -> torch.Tensor:
    t, b, left, r = crop_box(images.shape[-1])
    return images[:, :, t:b, left:r]


def id_weights(target_ages: torch.Tensor, input_ages: torch.Tensor) -> torch.Tensor:
    """Per-sample identity-loss weights ``0.25 cos(pi |dt|) + 0.75`` for ages given / 100 (1 for no change,
    0.5 for a full 100-year change)."""
    dt = (target_ages - input_ages).abs().clamp(max=1.0)
    return 0.25 * torch.cos(math.pi * dt) + 0.75


def w_norm_loss(latent: torch.Tensor, latent_avg: torch.Tensor | None) -> torch.Tensor:
    """Mean over the batch of the L2 norm of each sample's W+ code minus ``latent_avg``."""
    if latent_avg is not None:
        latent = latent - latent_avg
    return latent.flatten(1).norm(2, dim=1).sum() / latent.shape[0]


@dataclass
class LossWeights:
    id_lambda: float = 0.0
    l2_lambda: float = 0.0
    lpips_lambda: float = 0.0
    l2_lambda_aging: float = 0.0
    lpips_lambda_aging: float = 0.0
    l2_lambda_crop: float = 0.0
    lpips_lambda_crop: float = 0.0
    w_norm_lambda: float = 0.0
    aging_lambda: float = 0.0
    cycle_lambda: float = 0.0
    use_weighted_id_loss: bool = False
    id_weight_age: str = "difference"  # or "target": the published code's 0.25 cos(pi * target) + 0.75

    @classmethod
    def from_opts(cls, opts: Any) -> LossWeights:
        d = vars(opts) if not isinstance(opts, dict) else opts
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d and d[k] is not None})


class SAMLoss(torch.nn.Module):
    """All terms of one pass. ``arcface``, ``age_net``, ``lpips`` may be None when their weights are 0."""

    def __init__(self, weights: LossWeights, arcface=None, age_net=None, lpips=None, id_input_size: int = 112):
        super().__init__()
        self.w = weights
        self.arcface = arcface
        self.age_net = age_net
        self.lpips = lpips
        self.id_input_size = id_input_size
        if weights.id_lambda > 0 and arcface is None:
            raise ValueError("id_lambda > 0 needs the ArcFace network")
        lp = (weights.lpips_lambda, weights.lpips_lambda_aging, weights.lpips_lambda_crop)
        if max(lp) > 0 and lpips is None:
            raise ValueError("LPIPS weights > 0 need the LPIPS network")

    def id_features(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length face features of the inner crop pooled to ``id_input_size`` (so dot products are cosines)."""
        x = F.adaptive_avg_pool2d(inner_crop(images), (self.id_input_size, self.id_input_size))
        return F.normalize(self.arcface(x), dim=1)

    def estimate_ages(self, images: torch.Tensor) -> torch.Tensor:
        """Ages in years (B,)."""
        if self.age_net is None:
            raise ValueError("age estimation needs the age regressor (--age_predictor_path)")
        return self.age_net.estimate_age(images)

    def forward(self, x, y, y_hat, latent, target_ages, input_ages, no_aging: bool, latent_avg,
                data_type: str = "real") -> tuple[torch.Tensor, dict[str, float], list[dict[str, float]]]:
        """``target_ages`` / ``input_ages``: ages / 100 (B,). Returns (weighted loss, logged values, per-sample logs).

        ``x`` is the source image, ``y`` the target (the same image for SAM), ``y_hat`` the output.
        """
        w = self.w
        same = x is y
        if y.shape[-1] != y_hat.shape[-1]:  # tiny configs: compare at the output size
            y = F.adaptive_avg_pool2d(y, y_hat.shape[-2:])
            x = y if same else F.adaptive_avg_pool2d(x, y_hat.shape[-2:])
        loss = y_hat.new_zeros(())
        logs: dict[str, float] = {}
        per_sample: list[dict[str, float]] = [{} for _ in range(y_hat.shape[0])]
        aging_real = data_type == "real" and not no_aging
        if w.id_lambda > 0:
            f_hat = self.id_features(y_hat)
            with torch.no_grad():
                f_y = self.id_features(y)
                f_x = f_y if same else self.id_features(x)
            sim_target = (f_hat * f_y).sum(1)
            sim_views = (f_y * f_x).sum(1)
            per = 1 - sim_target
            if w.use_weighted_id_loss:
                ref = input_ages if w.id_weight_age == "difference" else torch.zeros_like(target_ages)
                per = per * id_weights(target_ages, ref).to(per.dtype)
            loss_id = per.mean()
            logs[f"loss_id_{data_type}"] = float(loss_id.detach())
            logs[f"id_improve_{data_type}"] = float((sim_target - sim_views).mean().detach())
            for i, s in enumerate(per_sample):
                s[f"diff_target_{data_type}"] = float(sim_target[i].detach())
            loss = loss + w.id_lambda * loss_id
        l2_w = w.l2_lambda_aging if aging_real else w.l2_lambda
        if l2_w > 0:
            loss_l2 = F.mse_loss(y_hat, y)
            logs[f"loss_l2_{data_type}"] = float(loss_l2.detach())
            loss = loss + l2_w * loss_l2
        lpips_w = w.lpips_lambda_aging if aging_real else w.lpips_lambda
        if lpips_w > 0:
            loss_lpips = self.lpips(y_hat, y)
            logs[f"loss_lpips_{data_type}"] = float(loss_lpips.detach())
            loss = loss + lpips_w * loss_lpips
        if w.lpips_lambda_crop > 0:
            loss_lpips_crop = self.lpips(inner_crop(y_hat), inner_crop(y))
            logs[f"loss_lpips_crop_{data_type}"] = float(loss_lpips_crop.detach())
            loss = loss + w.lpips_lambda_crop * loss_lpips_crop
        if w.l2_lambda_crop > 0:
            loss_l2_crop = F.mse_loss(inner_crop(y_hat), inner_crop(y))
            logs[f"loss_l2_crop_{data_type}"] = float(loss_l2_crop.detach())
            loss = loss + w.l2_lambda_crop * loss_l2_crop
        if w.w_norm_lambda > 0:
            loss_w = w_norm_loss(latent, latent_avg)
            logs[f"loss_w_norm_{data_type}"] = float(loss_w.detach())
            loss = loss + w.w_norm_lambda * loss_w
        if w.aging_lambda > 0:
            out_ages = self.estimate_ages(y_hat) / 100.0
            loss_age = F.mse_loss(out_ages, target_ages.to(out_ages.dtype))
            logs[f"loss_aging_{data_type}"] = float(loss_age.detach())
            for i, s in enumerate(per_sample):
                s.update({f"input_age_{data_type}": float(input_ages[i]) * 100,
                          f"output_age_{data_type}": float(out_ages[i].detach()) * 100,
                          f"target_age_{data_type}": float(target_ages[i]) * 100})
            loss = loss + w.aging_lambda * loss_age
        logs[f"loss_{data_type}"] = float(loss.detach())
        if data_type == "cycle":
            loss = loss * w.cycle_lambda
        return loss, logs, per_sample
