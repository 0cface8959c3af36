"""Image strips and grids for side-by-side and mixing outputs (pure image layout, no model)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

__all__ = ["hstack", "grid"]


def hstack(images: Sequence[Image.Image], size: int) -> Image.Image:
    """Resize each image to ``size x size`` and place them left to right."""
    strip = Image.new("RGB", (size * len(images), size), (255, 255, 255))
    for i, im in enumerate(images):
        strip.paste(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), (i * size, 0))
    return strip


def grid(rows: Sequence[Sequence[Image.Image | None]], size: int) -> Image.Image:
    """Rows of images (``None`` leaves a white cell), each resized to ``size x size``."""
    cols = max(len(r) for r in rows)
    out = Image.new("RGB", (cols * size, len(rows) * size), (255, 255, 255))
    for y, row in enumerate(rows):
        for x, im in enumerate(row):
            if im is not None:
                out.paste(im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), (x * size, y * size))
    return out
