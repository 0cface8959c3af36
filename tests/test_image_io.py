"""Tests of sam.faces.image_io.load_image: every accepted input kind, mode conversions, and every bad-input case."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam.faces.image_io import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    ImageNotFoundError,
    ImageTooLargeError,
    default_max_pixels,
    load_image,
    to_rgb,
)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ASTRONAUT = ASSETS / "astronaut.png"


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels but whose data is a few bytes (a 'bomb' header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def small() -> Image.Image:
    """A 48x32 RGB test card with a red top-left corner."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    arr[:8, :8] = (255, 0, 0)
    return Image.fromarray(arr, "RGB")


# ------------------------------------------------------------------------------------------- accepted inputs


def test_path_str_pathlike_bytes_filelike_and_pil_agree() -> None:
    ref = load_image(str(ASTRONAUT))
    assert ref.mode == "RGB" and ref.size == (512, 512)
    data = ASTRONAUT.read_bytes()
    fh = io.BytesIO(b"junk" + data)
    fh.seek(4)  # file objects are read from their current position
    with Image.open(ASTRONAUT) as pil:
        variants = [
            load_image(ASTRONAUT),
            load_image(data),
            load_image(bytearray(data)),
            load_image(fh),
            load_image(pil),
        ]
    for img in variants:
        assert img.mode == "RGB" and img.size == (512, 512)
        assert np.array_equal(np.asarray(img), np.asarray(ref))


def test_pil_input_is_not_modified_and_is_copied() -> None:
    rgba = Image.new("RGBA", (4, 3), (10, 20, 30, 0))
    out = load_image(rgba)
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (10, 20, 30, 0)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    rgb = Image.new("RGB", (4, 3), (1, 2, 3))
    out = load_image(rgb)
    assert out is not rgb
    out.putpixel((0, 0), (9, 9, 9))
    assert rgb.getpixel((0, 0)) == (1, 2, 3)


def test_file_is_never_modified(tmp_path: Path, small: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_encode(small, "JPEG", exif=exif))
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns)
    load_image(path)
    load_image(str(path))
    after = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns)
    assert before == after


@pytest.mark.parametrize(
    ("orientation", "corner"),
    [(1, (0, 0)), (3, (1, 1)), (6, (1, 0)), (8, (0, 1)), (2, (1, 0))],
)
def test_exif_orientation_is_applied(small: Image.Image, orientation: int, corner: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = load_image(_encode(small, "PNG", exif=exif))
    w, h = small.size
    assert img.size == ((h, w) if orientation in (6, 8) else (w, h))
    # where the red top-left corner of the stored image ends up once displayed upright
    x = 2 if corner[0] == 0 else img.width - 3
    y = 2 if corner[1] == 0 else img.height - 3
    assert img.getpixel((x, y)) == (255, 0, 0)


def test_broken_exif_does_not_fail(small: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    img = load_image(_encode(small, "JPEG", exif=exif))
    assert img.size == small.size


def test_alpha_is_composited_on_white() -> None:
    arr = np.zeros((4, 6, 4), np.uint8)
    arr[..., 0] = 200
    arr[:, :3, 3] = 255  # left half opaque red-ish, right half fully transparent
    arr[0, 0, 3] = 128
    img = load_image(_encode(Image.fromarray(arr, "RGBA"), "PNG"))
    px = np.asarray(img)
    assert tuple(px[1, 1]) == (200, 0, 0)
    assert tuple(px[1, 5]) == (255, 255, 255)
    assert abs(int(px[0, 0, 1]) - 127) <= 2  # half transparent: halfway to white


def test_la_p_cmyk_greyscale_bilevel_modes() -> None:
    la = Image.new("LA", (5, 5), (0, 0))
    assert load_image(_encode(la, "PNG")).getpixel((2, 2)) == (255, 255, 255)
    p = Image.new("P", (5, 5), 1)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert load_image(_encode(p, "PNG")).getpixel((2, 2)) == (10, 200, 30)
    p_transparent = _encode(p, "GIF", transparency=1)
    assert load_image(p_transparent).getpixel((2, 2)) == (255, 255, 255)
    cmyk = Image.new("CMYK", (5, 5), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = load_image(_encode(cmyk, "JPEG", quality=95)).getpixel((2, 2))
    assert r > 230 and g < 30 and b < 30
    grey = Image.new("L", (5, 5), 77)
    assert load_image(_encode(grey, "PNG")).getpixel((1, 1)) == (77, 77, 77)
    bilevel = Image.new("1", (5, 5), 1)
    assert load_image(_encode(bilevel, "PNG")).getpixel((1, 1)) == (255, 255, 255)


def test_16_bit_png_is_scaled_to_8_bit() -> None:
    arr = np.full((6, 7), 65535, np.uint16)
    arr[0, 0] = 0
    arr[1, 1] = 32896  # 128 * 257
    img16 = Image.fromarray(arr)
    img = load_image(_encode(img16, "PNG"))
    assert img.mode == "RGB"
    assert img.getpixel((3, 3)) == (255, 255, 255)
    assert img.getpixel((0, 0)) == (0, 0, 0)
    assert img.getpixel((1, 1)) == (128, 128, 128)


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 2
    r, g, b = load_image(data).getpixel((4, 4))
    assert r > 240 and b < 20


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.full((3, 4), 9, np.uint8), (9, 9, 9)),
        (np.full((3, 4, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((3, 4, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.dstack([np.full((3, 4, 3), 50, np.uint8), np.zeros((3, 4), np.uint8)]), (255, 255, 255)),
        (np.full((3, 4, 2), (40, 255), np.uint8), (40, 40, 40)),
        (np.full((3, 4, 3), 65535, np.uint16), (255, 255, 255)),
        (np.full((3, 4, 3), 0.5, np.float32), (128, 128, 128)),
        (np.full((3, 4, 3), 200.0, np.float64), (200, 200, 200)),
        (np.ones((3, 4), bool), (255, 255, 255)),
        (np.full((3, 4, 3), 1000, np.int32), (4, 4, 4)),
    ],
)
def test_numpy_arrays(arr: np.ndarray, expected: tuple[int, int, int]) -> None:
    img = load_image(arr)
    assert img.mode == "RGB" and img.size == (4, 3)
    assert img.getpixel((1, 1)) == expected


def test_to_rgb_keeps_rgb_pixels_and_copies() -> None:
    img = Image.new("RGB", (2, 2), (5, 6, 7))
    out = to_rgb(img)
    assert out is not img and out.getpixel((0, 0)) == (5, 6, 7)
    assert to_rgb(Image.new("I;16", (2, 2), 65535)).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("F", (2, 2), 0.25)).getpixel((0, 0)) == (64, 64, 64)


# ------------------------------------------------------------------------------------------- size limit


def test_pixel_limit_argument_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAM_MAX_PIXELS", raising=False)
    assert default_max_pixels() == DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLargeError, match="too large to open safely"):
        load_image(ASTRONAUT, max_pixels=100_000)
    assert load_image(ASTRONAUT, max_pixels=512 * 512).size == (512, 512)
    monkeypatch.setenv("SAM_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match="limit is 0 megapixels") as info:
        load_image(ASTRONAUT)
    assert "max_pixels" not in str(info.value) and "SAM_MAX_PIXELS" not in str(info.value)  # words for a person
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((40, 40, 3), np.uint8))
    assert load_image(ASTRONAUT, max_pixels=0).size == (512, 512)  # explicit 0: no limit
    monkeypatch.setenv("SAM_MAX_PIXELS", "0")
    assert load_image(ASTRONAUT).size == (512, 512)


def test_bomb_header_is_rejected_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAM_MAX_PIXELS", raising=False)
    bomb = _png_header_only(12000, 11000)  # 132 megapixels claimed, ~100 bytes of data
    assert len(bomb) < 200
    with pytest.raises(ImageTooLargeError, match="12000x11000 pixels .132 megapixels"):
        load_image(bomb)
    huge = _png_header_only(100_000, 100_000)  # beyond Pillow's own hard limit, even with ours disabled
    for limit in (None, 0):
        with pytest.raises(ImageTooLargeError, match="too many pixels to open safely"):
            load_image(huge, max_pixels=limit)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_photo_gives_a_downscaled_working_copy(tmp_path: Path, fmt: str) -> None:
    """An 8000x8000 photo (64 megapixels) is decoded and worked on as a copy of at most max_side pixels."""
    monkeypatch_free = default_max_pixels()
    assert 8000 * 8000 <= monkeypatch_free or monkeypatch_free <= 0
    big = Image.open(ASTRONAUT).convert("RGB").resize((8000, 8000), Image.Resampling.NEAREST)
    path = tmp_path / f"big.{fmt.lower()}"
    big.save(path, format=fmt, quality=80) if fmt == "JPEG" else big.save(path, format=fmt, compress_level=1)
    small = load_image(path, max_side=2048)
    assert small.size == (2048, 2048)
    ref = np.asarray(Image.open(ASTRONAUT).convert("RGB").resize((2048, 2048)), dtype=np.float32)
    assert np.abs(np.asarray(small, dtype=np.float32) - ref).mean() < 12  # the same picture, downscaled
    assert load_image(path).size == (8000, 8000)  # without max_side: full size


def test_bad_env_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="SAM_MAX_PIXELS"):
        load_image(ASTRONAUT)


# ------------------------------------------------------------------------------------------- bad input


def test_missing_file_directory_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="not found") as info:
        load_image(tmp_path / "nope.png")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(io.BytesIO())


def test_non_image_data(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        load_image(text)
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        load_image(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    with pytest.raises(ImageLoadError, match="not a recognised image"):
        load_image(np.random.default_rng(0).bytes(4096))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_truncated_files(fmt: str) -> None:
    img = load_image(ASTRONAUT).resize((128, 128))
    data = _encode(img, fmt)
    with pytest.raises(ImageLoadError, match="corrupt|truncated|not a recognised"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageLoadError):
        load_image(data[:12])


def test_fuzzed_bytes_only_raise_image_load_error() -> None:
    """Corrupted and truncated encodings either load as RGB or raise ImageLoadError, never anything else."""
    rng = np.random.default_rng(1)
    img = load_image(ASTRONAUT).resize((48, 48))
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF"):
        data = _encode(img, fmt)
        for _ in range(12):
            corrupt = bytearray(data)
            for pos in rng.integers(0, len(corrupt), size=int(rng.integers(1, 8))):
                corrupt[pos] = int(rng.integers(0, 256))
            cut = int(rng.integers(1, len(corrupt) + 1))
            for sample in (bytes(corrupt), bytes(corrupt[:cut])):
                try:
                    out = load_image(sample)
                except ImageLoadError:
                    continue
                assert out.mode == "RGB"


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (12, "unsupported image input"),
        ([1, 2, 3], "unsupported image input"),
        (None, "unsupported image input"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (np.zeros((4, 4, 5), np.uint8), "not an image"),
        (np.zeros((2, 4, 4, 3), np.uint8), "not an image"),
        (np.zeros(7, np.uint8), "not an image"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.full((4, 4), -3, np.int16), "negative"),
        (np.full((4, 4), 70000, np.int32), "16-bit"),
        (np.zeros((4, 4), np.complex64), "dtype"),
        (io.StringIO("text"), "text mode"),
    ],
)
def test_bad_inputs(bad: object, match: str) -> None:
    with pytest.raises(ImageLoadError, match=match):
        load_image(bad)


def test_errors_are_value_errors() -> None:
    assert issubclass(ImageLoadError, ValueError)
    assert issubclass(ImageTooLargeError, ImageLoadError)
    assert issubclass(ImageNotFoundError, ImageLoadError)
