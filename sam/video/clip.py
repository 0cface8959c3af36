"""Age the people in a video clip: faces tracked over time, steady alignment, no flicker, the sound kept.

The video job shared by ``python -m sam video`` and the web app's Video tab (lifespan animations of one photo are
:mod:`sam.video.lifespan`). One pass over the clip, frame by frame (memory stays at a few frames whatever its
length):

1. **Read** (:mod:`sam.video.probe`, PyAV): each decoded frame once, turned upright as players show it; the output
   is written at a constant rate, the input's average, so count and duration are kept.
2. **Track faces** (:mod:`sam.video.tracking`): dlib's detector on key frames, the landmark predictor in between;
   each person keeps one number, also after being hidden for a while.
3. **Steady alignment**: each face's landmarks go through a One Euro filter (:mod:`sam.video.smoothing`).
4. **No flicker**: noise fixed (the generator's stored maps); the encoders run on key frames only and the codes
   between them are interpolated and smoothed per person (:mod:`sam.video.keyframes`); paste-back with the
   feathered mask of :func:`sam.faces.paste.paste_back`, colour matched to the frame with a shift that is itself
   smoothed over time.
5. **Write** H.264 / yuv420p MP4 (:mod:`sam.video.mp4`) under a temporary name, then add the input's sound
   (:func:`sam.video.mp4.add_audio`: copied when MP4 holds its codec, else re-encoded to AAC, and the result says
   so). The file appears under its name only when complete: a cancelled or failed job leaves nothing.

Decoding and tracking, and paste-back and writing, run in threads of their own beside the networks
(:mod:`sam.video.threads`). Frames outside ``start``/``end`` (seconds, :func:`sam.video.probe.check_span`) are
copied unchanged (the output is always the whole clip). A clip in which no face is found is refused with
:class:`~sam.faces.detect.NoFaceError` (a message in words), not passed through. Per-stage time (read, detect,
align, encode, render, paste, write) is measured in :attr:`ClipResult.seconds` (``bench/video_benchmark.py``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam.ages import to_age
from sam.cancel import Progress, ShouldStop, check_stop
from sam.faces.align import AlignedFace, ffhq_align
from sam.faces.detect import Face, NoFaceError
from sam.pipeline import AgingPipeline, to_pil
from sam.requests import MIN_SIZE, RequestError
from sam.video.keyframes import KeyFrameCoder, TrackedFace, TrackedFrame, signature
from sam.video.mp4 import add_audio
from sam.video.probe import ClipInfo, check_span, probe_clip, read_frames
from sam.video.threads import FrameOutput, read_ahead
from sam.video.tracking import FaceTracker, Track

__all__ = ["age_clip", "ClipResult", "FaceFrame", "PREVIEW_SIDE"]

PREVIEW_SIDE = 480  # preview: frames worked on (and written) with the long side at most this
STAGES = ("read", "detect", "align", "encode", "render", "paste", "write")


@dataclass
class FaceFrame:
    """One person in one frame (kept when ``trace`` is on: tests and measurements)."""

    frame: int
    face: int
    raw: np.ndarray  # landmarks as predicted
    smooth: np.ndarray  # landmarks as used for the alignment
    matrix: np.ndarray  # aligned (continuous, ``align_size``) -> source map
    align_size: int
    box: np.ndarray
    code: torch.Tensor | None = None  # the W+ code rendered (after smoothing)
    key: bool = False  # a key frame for this person: the encoders ran on it

    @classmethod
    def of(cls, fr: TrackedFrame, f: TrackedFace) -> FaceFrame:
        return cls(frame=fr.index, face=f.track.id, raw=f.raw, smooth=f.smooth, matrix=f.aligned.matrix.copy(),
                   align_size=f.aligned.output_size, box=f.box,
                   code=None if f.code is None else f.code.float().cpu(), key=f.key)


@dataclass
class ClipResult:
    path: Path
    frames: int
    fps: Fraction
    duration: float
    size: tuple[int, int]
    audio: str  # "copied", "re-encoded to AAC (<codec> does not fit in MP4)", ..., or "none"
    faces: dict[int, int]  # person number -> frames aged
    seconds: dict[str, float]  # per stage (time spent in it; stages overlap when they run in threads)
    trace: list[FaceFrame] = field(default_factory=list)
    wall: float = 0.0  # seconds from start to finish
    key_frames: int = 0  # frames whose faces went through the encoders

    @property
    def frames_per_second(self) -> float:
        total = self.wall or sum(self.seconds.values())
        return self.frames / total if total > 0 else 0.0


def _render_side(requested: int, face_side: float, full: int) -> int:
    """The side a face is rendered at: the requested one, or for a face smaller than that in the frame the
    smallest power of two at least the face's side, never below 256 (nor the request, when that is smaller)."""
    if requested <= 256:
        return requested
    need = 1 << max(0, math.ceil(face_side) - 1).bit_length()
    return int(min(requested, full, max(256, need)))


def _work_size(size: tuple[int, int], preview: bool, max_side: int | None) -> tuple[int, int]:
    """The frame size the job works at (and writes): the clip's, scaled down to ``max_side`` (and
    :data:`PREVIEW_SIDE` for a preview), sides even."""
    side = min(PREVIEW_SIDE if preview else math.inf, max_side or math.inf)
    if max(size) <= side:
        return size
    k = side / max(size)
    return max(2, round(size[0] * k / 2) * 2), max(2, round(size[1] * k / 2) * 2)


@dataclass
class _Renderer:
    """The faces of finished frames rendered from their codes (batched by the side each is rendered at), then
    handed to the output."""

    pipe: AgingPipeline
    requested: int  # the side asked for (see _render_side)
    quick: bool  # a preview: the fast dtype, the generator stopped early
    should_stop: ShouldStop | None
    seconds: dict[str, float]

    def __call__(self, done: list[TrackedFrame], output: FrameOutput) -> None:
        t0 = time.perf_counter()
        pipe = self.pipe
        by_side: dict[int, list[TrackedFace]] = {}
        for fr in done:
            for f in fr.faces:
                by_side.setdefault(_render_side(self.requested, f.side, pipe.output_size), []).append(f)
        faces: dict[int, Image.Image] = {}
        for side, group in by_side.items():
            images = pipe.render(torch.cat([f.code for f in group]), size=side, fast=self.quick,
                                 early=self.quick or side < pipe.output_size, should_stop=self.should_stop)
            for f, image in zip(group, to_pil(images), strict=True):
                faces[id(f)] = image
        self.seconds["render"] += time.perf_counter() - t0
        for fr in done:
            output.put(fr, [faces[id(f)] for f in fr.faces])


def age_clip(pipe: AgingPipeline, src: str | os.PathLike | ClipInfo, dst: str | os.PathLike, target_age: Any, *,
             faces: str = "largest", output_size: int = 256, start: float | None = None, end: float | None = None,
             preview: bool = False, max_side: int | None = None, smooth: bool = True, smooth_codes: bool = True,
             key_every: int = 5, key_frames: int | str = "auto", overlap: bool = True, batch: int | None = None,
             trace: bool = False, progress: Progress | None = None,
             should_stop: ShouldStop | None = None) -> ClipResult:
    """Age every tracked face of the clip ``src`` to ``target_age`` and write ``dst`` (H.264 MP4, the input's
    frame count, rate, duration and sound).

    Args:
        faces: ``"largest"`` (one person, the best face) or ``"all"``.
        output_size: side the face is rendered at before paste-back (256 or 1024; capped at the model's). Above
            256, a face smaller than that in the frame is rendered at the smallest power of two >= its size.
        start, end: seconds: only frames in ``[start, end)`` are aged; the others are copied unchanged. ``end``
            ``None``: to the end (:func:`sam.video.probe.check_span`).
        preview: a quick pass: frames worked on with the long side at most :data:`PREVIEW_SIDE`, faces rendered
            at 256 px or less with the generator stopped early.
        max_side: frames with a longer side are scaled down to it (read, aged and written at that size).
        smooth, smooth_codes: the landmark filter and the code smoothing (off only to measure what they do).
        key_every: frames between detector runs.
        key_frames: ``"auto"`` or N: frames whose faces go through the encoders (:class:`KeyFrameCoder`; 1: all).
        overlap: decoding/tracking and paste-back/writing in threads of their own, alongside the networks.
        batch: faces per network pass (default: the pipeline's batch size on a GPU, 1 on a CPU).
        progress: ``progress(frames done, frames total)`` after each frame.
        should_stop: polled before each frame: :class:`~sam.cancel.JobCancelledError`, nothing left behind.

    Raises:
        RequestError: not a readable video, no frames, bad ``start``/``end``, no frame between them.
        NoFaceError: no face anywhere in the aged span (nothing written).
    """
    t_all = time.perf_counter()
    info = src if isinstance(src, ClipInfo) else probe_clip(src)
    age = to_age(target_age)
    lo, hi = check_span(start, end, info.duration)
    size = _work_size(info.size, preview, max_side)
    requested = min(int(output_size), pipe.output_size, 256 if preview else pipe.output_size)
    if requested < MIN_SIZE:
        raise RequestError(f"output size must be at least {MIN_SIZE}, got {output_size}")
    quick = preview or requested < pipe.output_size  # a video is a preview: the fast dtype where there is one
    tracker = FaceTracker(faces, key_every=key_every, smooth=smooth, code_tau=0.2 if smooth_codes else 0.0)
    if batch is None:
        batch = pipe.batch_size if pipe.device.type != "cpu" else 1
    coder = KeyFrameCoder(pipe, age, float(info.fps), key_frames, fast=quick, batch=batch)
    seconds = dict.fromkeys(STAGES, 0.0)
    records: list[FaceFrame] = []

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partials = (dst.with_name(dst.stem + ".partial-video.mp4"), dst.with_name(dst.stem + ".partial.mp4"))
    frames: Iterator[TrackedFrame] = _prepare(info, size, tracker, lo, hi, pipe.input_size, seconds)
    if overlap:
        frames = read_ahead(frames, depth=coder.max_gap + 2)
    output = FrameOutput(partials[0], info.fps, info.frames, seconds, progress, should_stop,
                         (lambda fr, f: records.append(FaceFrame.of(fr, f))) if trace else None, threaded=overlap)
    in_span = _run(frames, coder, _Renderer(pipe, requested, quick, should_stop, seconds), output, should_stop,
                   partials)
    try:
        _check_made(output.n, in_span, bool(tracker.tracks), info, lo, hi, bool(start or end))
        check_stop(should_stop)
        t0 = time.perf_counter()
        audio = add_audio(partials[0], info.path, partials[1])
        os.replace(partials[1], dst)
        seconds["write"] += time.perf_counter() - t0
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)
    seconds["detect"] = tracker.detect_seconds
    seconds["align"] += tracker.landmark_seconds
    seconds["encode"] = coder.seconds
    n = output.n
    return ClipResult(path=dst, frames=n, fps=info.fps, duration=n / float(info.fps), size=size, audio=audio,
                      faces={tr.id: tr.frames for tr in tracker.tracks}, seconds=seconds, trace=records,
                      wall=time.perf_counter() - t_all, key_frames=coder.key_frames)


def _run(frames: Iterator[TrackedFrame], coder: KeyFrameCoder, render: _Renderer, output: FrameOutput,
         should_stop: ShouldStop | None, partials: tuple[Path, ...]) -> int:
    """Every frame through the key-frame coder, the renderer and the output; returns how many lay in the aged
    span. On every way out (a cancel, a closed page, an error) the reader stops and the output ends: finished when
    all went well, else abandoned and the partial files removed."""
    in_span = 0
    ok = False
    try:
        for fr in frames:
            check_stop(should_stop)
            in_span += fr.in_span
            render(coder.push(fr), output)
        render(coder.flush(), output)
        ok = True
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
        try:
            output.finish(ok)
        finally:
            if not ok:
                for partial in partials:
                    partial.unlink(missing_ok=True)
    return in_span


def _check_made(n: int, in_span: int, found: bool, info: ClipInfo, lo: float, hi: float, chosen: bool) -> None:
    """The refusals only the finished pass can tell: no frames, none in the span, no face (nothing is written)."""
    if n == 0:
        raise RequestError("the video has no frames")
    if not in_span:
        raise RequestError(f"no frame of the video lies between {lo:g} s and {hi:g} s (its last frame starts at "
                           f"{(n - 1) / float(info.fps):.2f} s); nothing was written")
    if not found:
        raise NoFaceError(f"no face found in the video{' between the chosen times' if chosen else ''}; use a clip "
                          "with a clearly visible, roughly frontal face at least about 40 pixels wide (nothing was "
                          "written)")


def _prepare(info: ClipInfo, size: tuple[int, int], tracker: FaceTracker, lo: float, hi: float, align_size: int,
             seconds: dict[str, float]) -> Iterator[TrackedFrame]:
    """Decode, track and align (smoothed landmarks) each frame: the work that does not need the networks."""
    frames = read_frames(info, size)
    n = 0
    try:
        while True:
            t0 = time.perf_counter()
            arr = next(frames, None)
            seconds["read"] += time.perf_counter() - t0
            if arr is None:
                return
            t = n / float(info.fps)
            image = Image.fromarray(arr)
            inside = lo <= t < hi
            faces = [_aligned(image, tr, align_size, seconds) for tr in tracker.step(image, t)] if inside else []
            yield TrackedFrame(index=n, t=t, image=image, faces=faces, in_span=inside)
            n += 1
    finally:
        frames.close()


def _aligned(image: Image.Image, tr: Track, align_size: int, seconds: dict[str, float]) -> TrackedFace:
    """A tracked person of ``image`` FFHQ-aligned on their smoothed landmarks."""
    t0 = time.perf_counter()
    crop, _, matrix, _ = ffhq_align(image, tr.smooth, align_size)
    aligned = AlignedFace(image=crop, quad=np.zeros((4, 2)), face=Face(tuple(tr.box), 1.0, tr.smooth.copy()),
                          source_size=image.size, output_size=align_size, transform_size=align_size, matrix=matrix)
    face = TrackedFace(track=tr, aligned=aligned, sig=signature(crop), cut=tr.cut, raw=tr.raw.copy(),
                       smooth=tr.smooth.copy(), box=tr.box.copy())
    tr.cut = False
    seconds["align"] += time.perf_counter() - t0
    return face
