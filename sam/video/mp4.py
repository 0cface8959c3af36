"""The package's one MP4 writer: H.264 in yuv420p at CRF 18, fast start, so the file plays inline in browsers.

Both kinds of video the project makes go through it: lifespan animations (:mod:`sam.lifespan`, a sequence of
rendered frames, :func:`write_mp4`) and aged clips (:mod:`sam.clip`, frames streamed one at a time as the job
makes them, :class:`Mp4Writer`). Frames are piped as raw RGB to the ffmpeg binary of ``imageio-ffmpeg``.

Where the file is written is the caller's choice: :func:`write_mp4` writes through
:func:`sam.atomic.atomic_path` (the file appears under its name only when complete); :class:`Mp4Writer` writes to
the path it is given (the clip job writes a partial file of its own, then adds the sound and renames it).

The frame size is the first frame's; a side that is odd is padded to even (yuv420p needs even sides). A frame of
another size than the first is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam.atomic import atomic_path

__all__ = ["CRF", "Mp4Writer", "write_mp4"]

CRF = 18  # x264 constant rate factor (lower: better and larger)
_OUTPUT_PARAMS = ["-crf", str(CRF), "-preset", "veryfast", "-threads", "1", "-movflags", "+faststart", "-f", "mp4"]

Frame = Image.Image | np.ndarray


def _rgb(frame: Frame) -> np.ndarray:
    """``frame`` as a C-contiguous ``(H, W, 3)`` uint8 array."""
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
    arr = np.ascontiguousarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a frame must be RGB uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


class Mp4Writer:
    """Stream frames into an H.264 MP4 at ``path`` (opened at the first frame, whose size sets the video's).

    >>> with Mp4Writer("out.mp4", fps=25) as w:
    ...     for frame in frames:
    ...         w.write(frame)

    :meth:`close` finishes the file (and is safe to call twice); leaving the ``with`` block by an exception closes
    ffmpeg too, and what it wrote is the caller's to remove.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the frames
        self._gen: Any = None

    def write(self, frame: Frame) -> None:
        arr = _rgb(frame)
        size = (arr.shape[1], arr.shape[0])
        if self._gen is None:
            import imageio_ffmpeg

            self.size = size
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), size, fps=self.fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
                macro_block_size=2, ffmpeg_log_level="error", output_params=list(_OUTPUT_PARAMS))
            self._gen.send(None)
        elif size != self.size:
            raise ValueError(f"frame {self.frames} is {size[0]}x{size[1]}, the video {self.size[0]}x{self.size[1]}")
        self._gen.send(arr)
        self.frames += 1

    def close(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_mp4(frames: Iterable[Frame], path: str | os.PathLike, fps: float | Fraction = 20) -> int:
    """Write ``frames`` (consumed as they come) to the MP4 ``path`` through :func:`~sam.atomic.atomic_path`.
    Returns the number of frames written; no frames is a :class:`ValueError` (and no file)."""
    with atomic_path(path) as tmp:
        with Mp4Writer(tmp, fps) as writer:
            for frame in frames:
                writer.write(frame)
        if writer.frames == 0:
            raise ValueError("no frames to write")
    return writer.frames
