"""Style mixing (SAM paper Sec. 4.4 / Fig. 9): take some W+ rows of an aged face from another code.

StyleGAN's W+ rows control coarse-to-fine attributes: rows 0-3 pose and face shape, 4-7 hair style and facial
features, 8+ colours, lighting and fine texture. Injecting rows from a *reference* face's code
(``pretrained_encoder(ref) + latent_avg``) or from random W vectors of the mapping network changes those
attributes while the aging of the other rows is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from sam.network.model import SAM

__all__ = ["LAYER_PRESETS", "layer_groups", "parse_latent_mask", "random_w_codes"]

# Plain-language names (as shown in the app) for the groups of W+ rows.
LAYER_PRESETS: dict[str, str] = {
    "colour & lighting": "fine",
    "hair & texture": "middle",
    "face shape & pose": "coarse",
    "everything": "all",
}


def layer_groups(n_styles: int) -> dict[str, list[int]]:
    """W+ rows by scale: coarse (4-8 px: pose, face shape), middle (16-32 px: hair, features), fine (colour)."""
    return {
        "coarse": list(range(0, min(4, n_styles))),
        "middle": list(range(4, min(8, n_styles))),
        "fine": list(range(8, n_styles)),
        "all": list(range(n_styles)),
    }


def parse_latent_mask(spec: str | Sequence[int] | None, n_styles: int) -> list[int]:
    """W+ rows to mix: ``"8-17"``, ``"0, 2, 5-7"``, a group (``fine``, ``middle``, ``coarse``, ``all``), a preset
    name (``"colour & lighting"``), or a list of ints -> sorted unique indices. ``ValueError`` with a readable
    message otherwise."""
    groups = layer_groups(n_styles)
    if isinstance(spec, (list, tuple)):
        items: list[str] = [str(s) for s in spec]
    else:
        text = str(spec if spec is not None else "").strip().lower()
        text = LAYER_PRESETS.get(text, text)
        if text in groups:
            if not groups[text]:
                raise ValueError(f"this model has only {n_styles} style layers, so it has no {text} layers")
            return groups[text]
        items = [s for s in re.split(r"[,\s;]+", text) if s]
    if not items:
        raise ValueError(f"choose at least one style layer (0 to {n_styles - 1}), e.g. 8-17")
    out: set[int] = set()
    for item in items:
        m = re.fullmatch(r"(-?\d+)(?:\s*-\s*(\d+))?", item)
        if not m:
            raise ValueError(f"cannot read style layers {spec!r}: use numbers and ranges like 8-17 or 0,2,5")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        lo, hi = min(lo, hi), max(lo, hi)
        if lo < 0 or hi >= n_styles:
            raise ValueError(f"style layers must be between 0 and {n_styles - 1} (outside: {item})")
        out.update(range(lo, hi + 1))
    return sorted(out)


@torch.inference_mode()
def random_w_codes(model: SAM, n: int, seed: int = 0,
                   mapping: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``n`` random W vectors (z ~ N(0, I) through the mapping network), repeated over the W+ rows. ``mapping``:
    how to call the mapping network (default ``model.decoder.style``; the pipeline passes its ZeroGPU door)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, model.config.style_dim, generator=g).to(model.latent_avg.device)
    w = (mapping or model.decoder.style)(z)
    return w[:, None, :].expand(-1, model.config.n_styles, -1).contiguous()
