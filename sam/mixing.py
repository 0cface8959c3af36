"""Style mixing (SAM paper Sec. 4.4 / Fig. 9): take some W+ rows of an aged face from another code.

StyleGAN's W+ rows control coarse-to-fine attributes: rows 0-3 pose and face shape, 4-7 hair style and facial
features, 8+ colours, lighting and fine texture. Injecting rows from a *reference* face's code
(``pretrained_encoder(ref) + latent_avg``) or from random W vectors of the mapping network changes those
attributes while the aging of the other rows is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .model import SAM

__all__ = ["LAYER_PRESETS", "parse_latent_mask", "random_w_codes"]

# Plain-language presets for the published 18-row W+ (1024 px generator).
LAYER_PRESETS: dict[str, list[int]] = {
    "pose & face shape": [0, 1, 2, 3],
    "hair & features": [4, 5, 6, 7],
    "colour & lighting": list(range(8, 18)),
    "hair & texture": [8, 9],
}


def parse_latent_mask(spec: str | Sequence[int] | None, n_styles: int) -> list[int] | None:
    """``"8,9"``, ``"8-17"``, ``[8, 9]`` or a preset name -> sorted unique W+ rows below ``n_styles``."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in LAYER_PRESETS:
            rows = [i for i in LAYER_PRESETS[key] if i < n_styles]
        else:
            rows = []
            for part in key.replace(" ", "").split(","):
                if not part:
                    continue
                try:
                    if "-" in part:
                        lo, hi = (int(p) for p in part.split("-", 1))
                        rows.extend(range(lo, hi + 1))
                    else:
                        rows.append(int(part))
                except ValueError:
                    raise ValueError(
                        f"latent mask {spec!r}: use comma-separated W+ rows like '8,9' or ranges like '8-17', "
                        f"or one of {sorted(LAYER_PRESETS)}"
                    ) from None
    else:
        rows = [int(i) for i in spec]
    bad = [i for i in rows if not 0 <= i < n_styles]
    if bad:
        raise ValueError(f"latent mask rows {bad} are outside 0..{n_styles - 1}")
    return sorted(set(rows)) or None


@torch.inference_mode()
def random_w_codes(model: SAM, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random W vectors (z ~ N(0, I) through the mapping network), repeated over the W+ rows."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, model.config.style_dim, generator=g).to(model.latent_avg.device)
    w = model.decoder.style(z)
    return w[:, None, :].expand(-1, model.config.n_styles, -1).contiguous()
