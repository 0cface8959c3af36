"""Lifespan videos: one face morphing smoothly from one age to another.

SAM (paper Sec. 4.3, "continuous aging") gives a W+ code per target age; a lifespan animation interpolates
linearly between the codes of key ages (e.g. 0, 10, ..., 100) and decodes every in-between code. Noise is fixed
(the generator's stored maps) so frames do not flicker, and the generator stops at the requested resolution
instead of rendering 1024 px and shrinking.

Videos are H.264 MP4 in yuv420p (plays inline in browsers) written by :func:`sam.video.mp4.write_mp4`; GIFs with
Pillow. Frames go to the writer as they are rendered; the frames a second pass needs (the boomerang's way back, the
GIF) wait in a file on disk beside the video (:class:`FrameSpill`), not in memory, so a long video of a large photo
needs a frame's memory, not a video's. Every file is written under a temporary name and renamed when complete: a
cancelled or failed job closes its writer and leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from sam.ages import KEY_AGES, key_ages
from sam.atomic import atomic_path
from sam.cancel import ShouldStop, check_stop
from sam.pipeline import AgingPipeline, EncodedFace, ImageLike, to_pil
from sam.video.mp4 import write_mp4

__all__ = [
    "DEFAULT_KEY_AGES",
    "key_ages",
    "interpolate_codes",
    "write_lifespan",
    "lifespan_codes",
    "render_frames",
    "draw_age_label",
    "write_gif",
    "FrameSpill",
    "LifespanResult",
    "make_lifespan",
]

DEFAULT_KEY_AGES = KEY_AGES
Progress = Callable[[int, int], None]


def interpolate_codes(
    codes: torch.Tensor, key_ages: Sequence[float], frames_per_step: int
) -> tuple[torch.Tensor, list[float]]:
    """Linear interpolation between consecutive key codes.

    ``frames_per_step`` frames are inserted between each pair of keys, so ``K`` keys give
    ``(K - 1) * (frames_per_step + 1) + 1`` frames. Returns the codes and the (interpolated) age of each frame.
    """
    if codes.shape[0] != len(key_ages):
        raise ValueError(f"{codes.shape[0]} codes for {len(key_ages)} key ages")
    if frames_per_step < 0:
        raise ValueError(f"frames_per_step must be >= 0, got {frames_per_step}")
    if len(key_ages) == 1:
        return codes.clone(), [float(key_ages[0])]
    steps = frames_per_step + 1
    t = torch.arange(steps, dtype=codes.dtype, device=codes.device) / steps  # 0 <= t < 1
    out, ages = [], []
    for k in range(len(key_ages) - 1):
        a, b = codes[k], codes[k + 1]
        out.append(a[None] + t.view(-1, 1, 1) * (b - a)[None])
        a0, a1 = float(key_ages[k]), float(key_ages[k + 1])
        ages += [a0 + j * (a1 - a0) / steps for j in range(steps)]
    out.append(codes[-1:])
    ages.append(float(key_ages[-1]))
    return torch.cat(out), ages


def lifespan_codes(
    pipe: AgingPipeline,
    image: ImageLike | EncodedFace,
    key_ages: Sequence[float] = DEFAULT_KEY_AGES,
    frames_per_step: int = 10,
    should_stop: ShouldStop | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """W+ codes at the key ages (one encoder pass per key age, fast dtype), interpolated to every frame."""
    if len(key_ages) < 1:
        raise ValueError("at least one key age is needed")
    keys = pipe.latents(image, list(key_ages), should_stop=should_stop, fast=True)  # videos: the fast dtype
    return interpolate_codes(keys, key_ages, frames_per_step)


def draw_age_label(frame: Image.Image, age: float) -> Image.Image:
    """Burn ``age N`` into the lower left corner (white text on a dark box). Returns a new image."""
    frame = frame.copy()
    draw = ImageDraw.Draw(frame)
    size = max(10, frame.width // 16)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    text = f"age {round(age)}"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 4)
    x, y = pad, frame.height - (bottom - top) - 3 * pad
    draw.rectangle([x - pad, y - pad + top, x + right - left + pad, y + bottom + pad], fill=(0, 0, 0))
    draw.text((x - left, y), text, fill=(255, 255, 255), font=font)
    return frame


def render_frames(
    pipe: AgingPipeline,
    codes: torch.Tensor,
    size: int = 256,
    ages: Sequence[float] | None = None,
    label: bool = False,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> Iterator[Image.Image]:
    """Decode codes batch by batch (fixed noise, generator stopped at ``size``), yielding PIL frames."""
    total = codes.shape[0]
    bs = pipe.batch_size
    for i in range(0, total, bs):
        batch = pipe.render(codes[i : i + bs], size=size, fast=True, should_stop=should_stop)
        for j, frame in enumerate(to_pil(batch)):
            if label and ages is not None:
                frame = draw_age_label(frame, ages[i + j])
            yield frame
        if progress is not None:
            progress(min(i + bs, total), total)


def write_gif(frames: Iterable[Image.Image], path: str | os.PathLike, fps: float = 20) -> int:
    """Write a looping GIF with Pillow (``frames`` consumed as they come). Returns the number of frames written."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("no frames to write")
    count = [1]

    def rest() -> Iterator[Image.Image]:
        for frame in frames:
            count[0] += 1
            yield frame.convert("RGB")

    with atomic_path(path) as tmp:
        first.convert("RGB").save(tmp, format="GIF", save_all=True, append_images=rest(),
                                  duration=round(1000 / fps), loop=0, optimize=False)
    return count[0]


class FrameSpill:
    """Frames of one size kept on disk (raw RGB, one after another) for a second pass over them: ``add`` as they
    come, then :meth:`frames` forward or backward. The file is a temporary one beside ``near`` and is gone after
    :meth:`close` (or the ``with`` block), whatever happened."""

    def __init__(self, near: str | os.PathLike):
        folder = Path(near).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=Path(near).stem + ".partial-frames-", dir=folder)
        self.path = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self.size: tuple[int, int] | None = None
        self.count = 0

    def add(self, frame: Image.Image) -> None:
        frame = frame if frame.mode == "RGB" else frame.convert("RGB")
        if self.size is None:
            self.size = frame.size
        elif frame.size != self.size:
            raise ValueError(f"frame {self.count} is {frame.size}, the others {self.size}")
        self._file.write(frame.tobytes())
        self.count += 1

    def frames(self, reverse: bool = False, skip_last: bool = False) -> Iterator[Image.Image]:
        """The frames in order (or ``reverse``), without the last one added when ``skip_last``."""
        if self.size is None:
            return
        step = self.size[0] * self.size[1] * 3
        n = self.count - 1 if skip_last else self.count
        for i in (range(n - 1, -1, -1) if reverse else range(n)):
            self._file.seek(i * step)
            yield Image.frombytes("RGB", self.size, self._file.read(step))

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> FrameSpill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class LifespanResult:
    mp4: Path
    gif: Path | None
    frames: int
    ages: list[float]


def make_lifespan(
    pipe: AgingPipeline,
    image: ImageLike | EncodedFace,
    mp4_path: str | os.PathLike,
    key_ages: Sequence[float] = DEFAULT_KEY_AGES,
    frames_per_step: int = 10,
    fps: float = 20,
    size: int = 256,
    boomerang: bool = False,
    label: bool = False,
    gif_path: str | os.PathLike | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> LifespanResult:
    """Render a lifespan animation of one aligned face to MP4 (and optionally GIF).

    With ``boomerang`` the animation plays forward then backward (the rendered frames are reused).
    ``progress(done, total)`` is called after each rendered batch; ``should_stop`` is polled before each
    (:class:`~sam.pipeline.JobCancelledError`, and no file is left behind, when it returns true).
    """
    if size > pipe.output_size or size < 8:
        raise ValueError(f"video size must be between 8 and {pipe.output_size}, got {size}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    codes, ages = lifespan_codes(pipe, image, key_ages, frames_per_step, should_stop)
    frames = render_frames(pipe, codes, size, ages, label, progress, should_stop)
    return write_lifespan(frames, ages, mp4_path, fps, boomerang, gif_path, should_stop)


def write_lifespan(frames: Iterable[Image.Image], ages: list[float], mp4_path: str | os.PathLike, fps: float,
                   boomerang: bool = False, gif_path: str | os.PathLike | None = None,
                   should_stop: ShouldStop | None = None) -> LifespanResult:
    """Write rendered lifespan ``frames`` (one per age, consumed as they come) to MP4, with ``boomerang`` forward
    then back (frames reused from a :class:`FrameSpill`, not rendered again), and to ``gif_path`` too: both files or
    neither."""
    keep = boomerang or gif_path is not None
    with contextlib.ExitStack() as stack:
        spill = stack.enter_context(FrameSpill(mp4_path)) if keep else None

        def sequence() -> Iterator[Image.Image]:
            for f in frames:
                if spill is not None:
                    spill.add(f)
                yield f
            if boomerang and spill is not None:
                for f in spill.frames(reverse=True, skip_last=True):
                    check_stop(should_stop)
                    yield f

        n = write_mp4(sequence(), mp4_path, fps)
        gif = None
        if gif_path is not None and spill is not None:
            try:
                check_stop(should_stop)
                back = spill.frames(reverse=True, skip_last=True) if boomerang else iter(())
                write_gif(itertools.chain(spill.frames(), back), gif_path, fps)
            except BaseException:
                Path(mp4_path).unlink(missing_ok=True)  # both files or neither: a rerun does the pair again
                raise
            gif = Path(gif_path)
    all_ages = ages + ages[-2::-1] if boomerang else ages
    return LifespanResult(mp4=Path(mp4_path), gif=gif, frames=n, ages=all_ages)
