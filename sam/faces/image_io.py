"""Safe image input for SAM: turn whatever a user hands us into an RGB ``PIL.Image``.

``load_image`` accepts a path (``str`` / ``os.PathLike``), raw ``bytes``, a binary file-like object, a
``PIL.Image.Image`` or a NumPy array, and always returns a fresh 8-bit RGB image:

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``);
* RGBA / LA / PA / P-with-transparency are composited on white; CMYK, 16-bit, 32-bit integer, float,
  bilevel and greyscale images are converted to RGB;
* animated or multi-page images give their first frame;
* a pixel-count limit guards against decompression bombs (``max_pixels`` argument, else the ``SAM_MAX_PIXELS``
  environment variable, else 120 megapixels); the size is checked from the header, before any decoding;
* ``max_side`` gives a downscaled working copy of a large photo (JPEGs are decoded at a reduced scale directly,
  so an 8000x8000 photo never needs its full-size RGB copy in memory);
* empty, truncated, corrupt or non-image data raise ``ImageLoadError`` (a ``ValueError``) naming the problem;
  nothing else escapes for bad input.

Input files are only ever opened for reading.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sam import settings

__all__ = [
    "as_rgb",
    "DEFAULT_MAX_PIXELS",
    "MAX_INPUT_BYTES",
    "ImageLoadError",
    "ImageNotFoundError",
    "ImageTooLargeError",
    "default_max_pixels",
    "load_image",
    "to_rgb",
]

DEFAULT_MAX_PIXELS = 120_000_000
"""Default decompression-bomb limit (pixels of the decoded first frame)."""

MAX_INPUT_BYTES = 512 * 1024 * 1024
"""Largest encoded input (bytes / file-like / file) that is read at all."""

_ENV_MAX_PIXELS = "SAM_MAX_PIXELS"
_BOMB_MESSAGE = "this image has too many pixels to open safely; please use a smaller copy of the photo"
_WHITE = (255, 255, 255)


class ImageLoadError(ValueError):
    """The input could not be turned into an image; the message says why."""


class ImageNotFoundError(ImageLoadError, FileNotFoundError):
    """The path given does not name an existing file."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


def default_max_pixels() -> int:
    """The pixel limit in force: ``$SAM_MAX_PIXELS`` if set (``0`` disables the limit), else 120 megapixels."""
    return settings.integer(_ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS)


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{what} has no pixels (size {width}x{height})")
    if max_pixels > 0 and width * height > max_pixels:
        raise ImageTooLargeError(
            f"this image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), too large to open "
            f"safely (the limit is {max_pixels / 1e6:.0f} megapixels); please use a smaller copy of the photo"
        )


def load_image(src: Any, max_pixels: int | None = None, *, max_side: int | None = None) -> Image.Image:
    """Load ``src`` as a new 8-bit RGB ``PIL.Image``.

    Args:
        src: a path (``str`` or ``os.PathLike``), ``bytes``/``bytearray``/``memoryview`` of an encoded image, a
            binary file-like object (read from its current position, not closed), a ``PIL.Image.Image`` (not
            modified) or a NumPy array of shape HxW, HxWx1, HxWx2 (grey + alpha), HxWx3 or HxWx4 with an
            integer, boolean or float dtype (floats in [0, 1], or in [0, 255] when larger than 1.5).
        max_pixels: largest accepted ``width * height``; ``None`` uses :func:`default_max_pixels`, ``0`` or less
            disables the check.
        max_side: if given, a larger image is returned downscaled (Lanczos) so that its longer side is
            ``max_side``: a working copy of a large photo.

    Raises:
        ImageLoadError: (a ``ValueError``) for anything that is not a usable image: missing or empty file,
            directory, unsupported type, corrupt or truncated data, unknown format, too many pixels
            (``ImageTooLargeError``), a bad array shape or non-finite values.
    """
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    if isinstance(src, Image.Image):
        return _shrink(_from_pil(src, limit, "image", from_file=False), max_side)
    if isinstance(src, np.ndarray):
        return _shrink(_from_array(src, limit), max_side)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise ImageLoadError("empty image data (0 bytes)")
        return _shrink(_decode(data, limit, "image data", max_side), max_side)
    if isinstance(src, (str, os.PathLike)):
        return _shrink(_from_path(Path(os.fspath(src)), limit, max_side), max_side)
    if hasattr(src, "read"):
        return _shrink(_from_filelike(src, limit, max_side), max_side)
    raise ImageLoadError(
        f"unsupported image input of type {type(src).__name__}; pass a path, bytes, a file object, a PIL image "
        "or a NumPy array"
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert an already decoded PIL image of any mode to 8-bit RGB (alpha composited on white).

    EXIF orientation is not applied here (see :func:`load_image`). Always returns a new image.
    """
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA")
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, _WHITE)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    if mode in ("L", "1", "CMYK", "YCbCr", "HSV"):
        return img.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _from_array(np.asarray(img), 0)
    if mode == "RGBX":
        return img.convert("RGB")
    try:
        return img.convert("RGB")
    except Exception as exc:
        raise ImageLoadError(f"cannot convert an image of mode {mode!r} to RGB: {exc}") from exc


def as_rgb(img: Any) -> Image.Image:
    """A PIL RGB view of ``img``: PIL images are used as they are (no EXIF rotation; decoded now, so a corrupt one is
    an :class:`ImageLoadError`), anything else goes through :func:`load_image`."""
    if isinstance(img, Image.Image):
        try:
            img.load()
        except Exception as exc:
            raise ImageLoadError(f"the PIL image could not be decoded (corrupt or truncated): {exc}") from exc
        return img if img.mode == "RGB" else to_rgb(img)
    return load_image(img)


def _shrink(img: Image.Image, max_side: int | None) -> Image.Image:
    """``img`` downscaled so that its longer side is at most ``max_side`` (unchanged when smaller)."""
    if not max_side or max(img.size) <= max_side:
        return img
    k = max_side / max(img.size)
    size = (max(1, round(img.width * k)), max(1, round(img.height * k)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _from_path(path: Path, limit: int, max_side: int | None = None) -> Image.Image:
    try:
        if not path.exists():
            raise ImageNotFoundError(f"image file not found: {str(path)!r}")
        if path.is_dir():
            raise ImageLoadError(f"{str(path)!r} is a directory, not an image file")
        size = path.stat().st_size
    except OSError as exc:
        if isinstance(exc, ImageLoadError):
            raise
        raise ImageLoadError(f"cannot access image file {str(path)!r}: {exc}") from exc
    if size == 0:
        raise ImageLoadError(f"image file {str(path)!r} is empty (0 bytes)")
    if size > MAX_INPUT_BYTES:
        raise ImageTooLargeError(
            f"image file {str(path)!r} is {size / 2**20:.0f} MiB, more than the {MAX_INPUT_BYTES / 2**20:.0f} MiB "
            "accepted"
        )
    try:
        with open(path, "rb") as fh:  # read-only: the user's file is never modified
            data = fh.read()
    except OSError as exc:
        raise ImageLoadError(f"cannot read image file {str(path)!r}: {exc}") from exc
    if not data:
        raise ImageLoadError(f"image file {str(path)!r} is empty (0 bytes)")
    return _decode(data, limit, f"image file {str(path)!r}", max_side)


def _from_filelike(fh: Any, limit: int, max_side: int | None = None) -> Image.Image:
    try:
        data = fh.read(MAX_INPUT_BYTES + 1)
    except Exception as exc:
        raise ImageLoadError(f"cannot read from the file object: {exc}") from exc
    if isinstance(data, str):
        raise ImageLoadError("the file object is opened in text mode; open it in binary mode ('rb')")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(f"the file object returned {type(data).__name__}, not bytes")
    data = bytes(data)
    if not data:
        raise ImageLoadError("empty image data: the file object returned 0 bytes")
    if len(data) > MAX_INPUT_BYTES:
        raise ImageTooLargeError(f"image data is larger than the {MAX_INPUT_BYTES / 2**20:.0f} MiB accepted")
    return _decode(data, limit, "image data", max_side)


def _decode(data: bytes, limit: int, what: str, max_side: int | None = None) -> Image.Image:
    with warnings.catch_warnings():
        # our own limit replaces Pillow's global one (which would only warn below 2x its value)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": handled below or harmless
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(_BOMB_MESSAGE) from exc
        except UnidentifiedImageError as exc:
            raise ImageLoadError(
                f"{what} is not a recognised image (corrupt data or unsupported format; starts with {data[:8]!r})"
            ) from exc
        except Exception as exc:
            raise ImageLoadError(f"{what} is corrupt or truncated and could not be opened as an image: {exc}") from exc
        try:
            with img:
                return _from_pil(img, limit, what, from_file=True, max_side=max_side)
        except ImageLoadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(_BOMB_MESSAGE) from exc
        except MemoryError as exc:
            raise ImageTooLargeError(f"{what} needs more memory than is available to decode") from exc
        except Exception as exc:
            raise ImageLoadError(f"{what} is corrupt or truncated and could not be decoded: {exc}") from exc


def _from_pil(img: Image.Image, limit: int, what: str, *, from_file: bool, max_side: int | None = None) -> Image.Image:
    if from_file and getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated / multi-page: first frame
    _check_pixels(img.width, img.height, limit, what)
    if from_file and max_side and img.format == "JPEG" and max(img.size) > 2 * max_side:
        k = max_side / max(img.size)  # decode at 1/2, 1/4 or 1/8 scale, still at least max_side
        img.draft("RGB", (round(img.width * k), round(img.height * k)))
    try:
        img.load()
    except Image.DecompressionBombError:
        raise
    except Exception as exc:
        if from_file:
            raise ImageLoadError(f"{what} is corrupt or truncated and could not be decoded: {exc}") from exc
        raise ImageLoadError(f"{what} could not be read: {exc}") from exc
    try:
        oriented = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation rather than fail
        oriented = img
    if oriented is None:  # only returned with in_place=True; kept for safety
        oriented = img
    rgb = to_rgb(oriented)
    if rgb is img:
        rgb = img.copy()
    _check_pixels(rgb.width, rgb.height, limit, what)
    return rgb


def _from_array(arr: np.ndarray, limit: int) -> Image.Image:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageLoadError(
            f"array of shape {tuple(a.shape)} is not an image; expected HxW, HxWx1, HxWx2, HxWx3 or HxWx4 "
            "(channels last)"
        )
    _check_pixels(int(a.shape[1]), int(a.shape[0]), limit, "image array")
    a8 = _to_uint8(a)
    if a8.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(a8), "L").convert("RGB")
    channels = a8.shape[2]
    mode = {2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    img = Image.fromarray(np.ascontiguousarray(a8), mode)
    return img if mode == "RGB" else to_rgb(img)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0:
            raise ImageLoadError(f"integer image array has negative values (min {lo})")
        if a.dtype == np.uint16 or hi > 255:
            if hi > 65535:
                raise ImageLoadError(f"integer image array has values up to {hi}, above the 16-bit range")
            return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float32)
        if not np.all(np.isfinite(f)):
            raise ImageLoadError("float image array contains NaN or infinite values")
        if f.size and float(f.max()) > 1.5:
            f = f / 255.0
        return np.rint(np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageLoadError(f"image array has unsupported dtype {a.dtype}")
