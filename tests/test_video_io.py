"""The one MP4 writer (sam.video.mp4): a list of frames (lifespan) and a stream of frames (clip) both give a
readable H.264 / yuv420p MP4 of the right frame count and size; both callers use it."""

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from sam.video import clip, lifespan
from sam.video import mp4 as video_io
from sam.video.mp4 import Mp4Writer, write_mp4


def _frames(n: int, w: int, h: int) -> list[np.ndarray]:
    """Smooth moving gradients (easy for H.264: the decoded frames stay close to them)."""
    y, x = np.mgrid[0:h, 0:w]
    return [np.stack([(x * 255 // max(w - 1, 1) + 9 * i) % 256, y * 255 // max(h - 1, 1),
                      np.full_like(x, 40 + 10 * i)], axis=-1).astype(np.uint8) for i in range(n)]


def _read(path) -> tuple[dict, list[np.ndarray]]:
    """The stream's metadata and every decoded frame (counted by reading: the container's count can be missing)."""
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]


@pytest.mark.parametrize("w,h", [(64, 48), (40, 40)])
def test_list_and_stream_give_the_same_readable_mp4(tmp_path, w, h):
    frames = _frames(7, w, h)
    n = write_mp4([Image.fromarray(f) for f in frames], tmp_path / "list.mp4", fps=10)
    with Mp4Writer(tmp_path / "stream.mp4", fps=10) as writer:
        for f in frames:
            writer.write(f)
    assert n == writer.frames == 7 and writer.size == (w, h)
    assert not list(tmp_path.glob("*partial*"))
    decoded = {}
    for name in ("list", "stream"):
        meta, got = _read(tmp_path / f"{name}.mp4")
        assert meta["codec"].startswith("h264") and meta["pix_fmt"].startswith("yuv420p")
        assert meta["size"] == (w, h) and meta["fps"] == 10
        assert len(got) == 7
        err = np.abs(np.stack(got).astype(int) - np.stack(frames).astype(int)).mean()
        assert err < 4, f"{name}: mean error {err:.1f} (frames not what was written)"
        decoded[name] = np.stack(got)
    np.testing.assert_array_equal(decoded["list"], decoded["stream"])  # one writer, one recipe


def test_odd_sides_are_padded_to_even(tmp_path):
    with Mp4Writer(tmp_path / "odd.mp4", fps=5) as writer:
        for f in _frames(3, 33, 21):
            writer.write(f)
    meta, got = _read(tmp_path / "odd.mp4")
    assert meta["size"] == (34, 22) and len(got) == 3


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "none.mp4")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="fps"):
        Mp4Writer(tmp_path / "x.mp4", fps=0)
    a, b = _frames(1, 32, 32)[0], _frames(1, 16, 32)[0]
    with pytest.raises(ValueError, match="16x32"):
        write_mp4([a, b], tmp_path / "sizes.mp4")
    assert list(tmp_path.iterdir()) == []  # written through atomic_path: nothing left behind
    with pytest.raises(ValueError, match="RGB"):
        Mp4Writer(tmp_path / "grey.mp4", fps=5).write(np.zeros((8, 8), np.uint8))


def test_both_callers_use_the_one_writer():
    assert lifespan.write_mp4 is video_io.write_mp4
    assert clip.Mp4Writer is video_io.Mp4Writer
    assert not hasattr(clip, "_open_writer")
