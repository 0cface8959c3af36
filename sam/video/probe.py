"""What a video clip holds, the limits a server puts on clips, and its frames as pictures.

Everything goes through PyAV (FFmpeg's libraries in this process: no ffmpeg program is started, so nothing can be
left running). One video stream is both checked and read: the clip's first video stream that is not an attached
cover picture (:attr:`ClipInfo.stream`).

:func:`probe_clip` works in two steps:

1. **The header**, with every decoder barred (FFmpeg's ``codec_whitelist`` names none, so not a single frame is
   decoded, however large): length, stated frame rate, frame size and codecs, from the demuxer's container and
   stream fields. A clip over one of :class:`ClipLimits` is refused here, in well under a second (a 20-minute
   clip, 1000 frames per second, 16000x16000-pixel frames).
2. **The frame count**, by decoding the stream (a container's count can be missing or wrong), one thread, frames
   over ``limits.pixels`` refused by the decoder itself; stopped as soon as the count passes ``limits.frames``,
   after ``limits.count_seconds``, or when ``should_stop`` says so (polled between packets and frames). The
   average frame rate follows: the stated one when the frames match it (a constant 30000/1001 stays exact), else
   frames / duration (a variable-frame-rate clip).

:func:`read_frames` gives each decoded frame once (no frame dropped or repeated, variable frame rates kept),
turned upright the way ffmpeg's command line does it (the display matrix of a phone's vertical clip: quarter turns
and mirroring), optionally scaled down with an area filter. Decoding releases the GIL: other threads (a slider's
request) keep running while a clip is probed or read.

:func:`check_span` is the one check of a ``start``/``end`` pair of seconds against a clip's length.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from sam.cancel import ShouldStop, check_stop
from sam.requests import RequestError, read_number

__all__ = [
    "VIDEO_FORMATS", "VIDEO_SUFFIXES", "VIDEO_FORMAT_NAMES", "NOT_A_VIDEO", "HEADER_SECONDS", "ClipHeader",
    "ClipInfo", "ClipLimits", "check_header", "check_span", "probe_clip", "read_frames",
]

# the one list of video files taken (the app's upload box, its checks and every text that names them)
VIDEO_FORMATS = {".mp4": "MP4", ".mov": "MOV", ".m4v": "M4V", ".webm": "WebM", ".mkv": "MKV", ".avi": "AVI",
                 ".gif": "GIF"}
VIDEO_SUFFIXES = set(VIDEO_FORMATS)
VIDEO_FORMAT_NAMES = ", ".join(list(VIDEO_FORMATS.values())[:-1]) + " or " + list(VIDEO_FORMATS.values())[-1]
NOT_A_VIDEO = f"this file is not a video that can be read. Please use an {VIDEO_FORMAT_NAMES} clip"
HEADER_SECONDS = 10.0  # the longest opening a file (its header, the decoder's first look) may take
_NO_DECODER = {"codec_whitelist": "none"}  # FFmpeg opens no decoder: the header is read, nothing is decoded


@dataclass
class ClipInfo:
    """What a clip holds, as read (sizes are those of the upright frames :func:`read_frames` gives)."""

    path: Path
    frames: int
    duration: float  # seconds (frames / fps)
    fps: Fraction  # the constant output rate: the input's average
    size: tuple[int, int]  # width, height of the decoded (upright) frames
    rotation: int  # the display matrix's rotation (degrees, counter-clockwise), applied by read_frames
    audio_codec: str | None  # None: no audio stream
    codec: str = ""
    nominal_fps: float = 0.0  # the rate the container states (a VFR clip's may differ from its average)
    stream: int = 0  # the index of the video stream checked and read
    orientation: tuple[str, ...] = ()  # the steps that turn a decoded frame upright (see _orientation)
    max_pixels: int | None = None  # the decoder's pixel cap the clip was checked with (read_frames keeps it)


@dataclass(frozen=True)
class ClipLimits:
    """What a server accepts (the CLI sets none). The container's header is checked first, so a clip far over a
    limit is refused in well under a second, before anything is decoded; the frame count (which decodes) stops
    as soon as it passes ``frames``, after ``count_seconds``, or when cancelled."""

    seconds: float = math.inf  # length
    frames: int | None = None  # frames in the whole clip
    fps: float = math.inf  # the stated frame rate
    pixels: int | None = None  # width x height of one frame
    count_seconds: float = 60.0  # the longest the frame count may take


_NO_LIMITS = ClipLimits()


def check_span(start: Any, end: Any, duration: float) -> tuple[float, float]:
    """The part of a clip to age, ``(start, end)`` in seconds, checked against its ``duration``: the one place for
    these checks (the web app calls it before a job waits for its turn, :func:`sam.video.clip.age_clip` again).

    ``start`` ``None`` (or blank) is 0; ``end`` ``None`` means the end of the clip. Numbers that are not finite,
    negative, a start at or past the end of the clip, or an end not after the start are a :class:`RequestError`."""
    lo = float(read_number(start, "start", 0, default=0))
    hi = float(duration) if end is None else float(read_number(end, "end", 0))
    if lo >= duration:
        raise RequestError(f"the start ({lo:g} s) is past the end of the video ({duration:.2f} s)")
    if hi <= lo:
        raise RequestError(f"the end ({hi:g} s) must come after the start ({lo:g} s)")
    return lo, hi


# --------------------------------------------------------------------------------------------- the header


@dataclass(frozen=True)
class _Header:
    """The demuxer's description of a clip's video stream (nothing decoded)."""

    stream: int
    codec: str
    size: tuple[int, int] | None  # None: not in the header (image pipes, some raw streams): known once decoded
    fps: Fraction  # the stated rate (FFmpeg's average frame rate, else its guess); 0 when unknown
    duration: float  # seconds, 0 when unknown
    audio_codec: str | None


def _video_stream(container: Any) -> Any | None:
    """The clip's video stream: the first one that is not an attached picture (an MP3's or MKV's cover)."""
    attached = av.stream.Disposition.attached_pic
    return next((s for s in container.streams.video if not s.disposition & attached), None)


def _codec_name(stream: Any) -> str:
    """The codec's own name (``mp3``, not the decoder's ``mp3float``)."""
    ctx = stream.codec_context
    return ctx.codec.canonical_name if ctx is not None else "unknown"


def _read_header(path: Path) -> _Header | None:
    """The clip's header with every decoder barred (nothing is decoded); ``None`` when it is not a video."""
    try:
        with av.open(str(path), options=_NO_DECODER, timeout=(HEADER_SECONDS, None),
                     metadata_errors="replace") as container:
            video = _video_stream(container)
            if video is None:
                return None
            ctx = video.codec_context
            size = (ctx.width, ctx.height) if ctx is not None and ctx.width > 0 and ctx.height > 0 else None
            rate = video.average_rate or video.guessed_rate or video.base_rate or Fraction(0)
            seconds = container.duration / av.time_base if container.duration else 0.0
            if not seconds and video.duration and video.time_base:
                seconds = float(video.duration * video.time_base)
            audio = container.streams.audio
            return _Header(stream=video.index, codec=_codec_name(video), size=size, fps=Fraction(rate),
                           duration=max(0.0, float(seconds)), audio_codec=_codec_name(audio[0]) if audio else None)
    except (av.FFmpegError, UnicodeDecodeError, ValueError):
        return None


def _refuse_over(limits: ClipLimits, *, seconds: float = 0.0, frames: int = 0, fps: float = 0.0,
                 size: tuple[int, int] | None = None) -> None:
    """A :class:`RequestError` in words when a clip is over one of ``limits``."""
    if seconds > limits.seconds + 0.5:
        raise RequestError(f"the video is {seconds:.0f} seconds long; this page takes clips of at most "
                           f"{limits.seconds:g} seconds. Please trim it first")
    if fps > limits.fps + 0.5:
        raise RequestError(f"the video has {fps:g} frames per second; this page takes at most {limits.fps:g}")
    if limits.frames is not None and frames > limits.frames:
        raise RequestError(f"the video has more than {limits.frames} frames; this page takes at most "
                           f"{limits.frames} ({limits.seconds:g} s at {limits.frames / limits.seconds:g} frames per "
                           "second). Please trim it first")
    if limits.pixels is not None and size is not None and size[0] * size[1] > limits.pixels:
        raise RequestError(f"the video's frames are {size[0]}x{size[1]} pixels; this page takes frames of at most "
                           f"{limits.pixels / 1e6:.0f} megapixels")


# --------------------------------------------------------------------------------------------- decoding


@contextmanager
def _opened(path: Path, stream: int, max_pixels: int | None) -> Iterator[Any]:
    """The clip's video stream ``stream``, open for decoding in one thread (two jobs never oversubscribe two cores),
    the decoder refusing frames over ``max_pixels``; the file is closed on every way out."""
    options = {"threads": "1"}
    if max_pixels:
        options["max_pixels"] = str(int(max_pixels))
    with av.open(str(path), options=options, timeout=(HEADER_SECONDS, None), metadata_errors="replace") as container:
        if stream >= len(container.streams) or container.streams[stream].type != "video":
            raise RequestError(NOT_A_VIDEO)
        video = container.streams[stream]
        if video.codec_context is None:
            raise RequestError(NOT_A_VIDEO)
        video.codec_context.thread_count = 1
        video.codec_context.options = dict(options)
        yield video


def _decoded(video: Any, should_stop: ShouldStop | None = None) -> Iterator[av.VideoFrame]:
    """Every frame of ``video`` as decoded, in order, each once. As ffmpeg does, a packet the decoder cannot read
    is skipped and a read error ends the stream (after the frames the decoder still holds). ``should_stop`` is
    polled before each packet and each frame."""
    packets = video.container.demux(video)
    decoder = video.codec_context
    try:
        while True:
            check_stop(should_stop)
            try:
                packet = next(packets, None)
            except av.FFmpegError:
                packet = None
            if packet is not None and not packet.size:
                continue  # the demuxer's end-of-stream marker (and any empty packet): the flush below is ours
            try:
                frames = decoder.decode(packet)  # None: the end; the frames still held come out
            except av.FFmpegError:
                frames = []
            for frame in frames:
                check_stop(should_stop)
                if frame.time_base is None:  # the frames a flush gives carry no time base: the stream's
                    frame.time_base = video.time_base
                yield frame
            if packet is None:
                return
    finally:
        packets.close()


# The ways to turn a decoded frame upright (the filters ffmpeg's command line inserts, as array steps).
_STEPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clock": lambda a: np.rot90(a, -1),  # a quarter turn clockwise
    "cclock": lambda a: np.rot90(a, 1),  # a quarter turn counter-clockwise
    "cclock_flip": lambda a: a.transpose(1, 0, 2),  # counter-clockwise, then upside down
    "clock_flip": lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # clockwise, then upside down
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
}


def _orientation(frame: av.VideoFrame) -> tuple[tuple[str, ...], int]:
    """The steps (:data:`_STEPS`) that turn ``frame`` upright, and its rotation in degrees (counter-clockwise),
    from its display matrix: ffmpeg's own rule (``fftools``: autorotate), so a clip comes out as ffmpeg and
    players show it. An angle that is not a quarter turn (never written by cameras) is taken to the nearest one."""
    data = frame.side_data.get("DISPLAYMATRIX")
    if data is None:
        return (), 0
    m = np.frombuffer(bytes(data), dtype=np.int32)[:9].astype(np.float64)
    sx, sy = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if not sx or not sy:
        return (), 0
    rotation = -math.degrees(math.atan2(m[1] / sy, m[0] / sx))  # av_display_rotation_get: counter-clockwise
    theta = (-round(rotation)) % 360  # the clockwise turn that makes it upright
    quarter = round(theta / 90) % 4
    if quarter == 1:
        steps: tuple[str, ...] = ("cclock_flip",) if m[3] > 0 else ("clock",)
    elif quarter == 2:
        steps = tuple(s for s, flip in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if flip)
    elif quarter == 3:
        steps = ("clock_flip",) if m[3] < 0 else ("cclock",)
    else:
        steps = ("vflip",) if m[4] < 0 else ()
    return steps, round(rotation)


def _turns(steps: tuple[str, ...]) -> bool:
    """Whether ``steps`` swap width and height."""
    return any(s.startswith(("clock", "cclock")) for s in steps)


def _picture(frame: av.VideoFrame, size: tuple[int, int], steps: tuple[str, ...]) -> np.ndarray:
    """``frame`` as an upright ``H x W x 3`` uint8 array of ``size`` (width, height): converted as ffmpeg's command
    line does (the frame's own colour range and matrix), scaled down with an area filter when ``size`` asks."""
    w, h = (size[1], size[0]) if _turns(steps) else size
    scaled = (w, h) != (frame.width, frame.height)
    rgb = frame.reformat(w, h, format="rgb24", interpolation="AREA" if scaled else "BICUBIC",
                         src_color_range=frame.color_range, threads=1).to_ndarray()
    for step in steps:
        rgb = _STEPS[step](rgb)
    return np.ascontiguousarray(rgb)


# --------------------------------------------------------------------------------------------- the clip


@dataclass
class _Count:
    frames: int = 0
    seconds: float = 0.0  # from the first frame's start to the last one's end (0: the frames have no times)
    size: tuple[int, int] | None = None  # the first frame's, upright
    steps: tuple[str, ...] = ()
    rotation: int = 0
    finished: bool = False  # decoded to the end (not stopped at a limit)


def _count_frames(path: Path, header: _Header, limits: ClipLimits, should_stop: ShouldStop | None) -> _Count:
    """Frames and seconds of the clip's video stream, by decoding it, stopped as soon as the count passes
    ``limits.frames``, after ``limits.count_seconds``, or when cancelled (:class:`JobCancelledError`)."""
    out = _Count()
    began = time.monotonic()
    first = end = None
    with _opened(path, header.stream, limits.pixels) as video:
        for frame in _decoded(video, should_stop):
            if out.frames == 0:
                out.steps, out.rotation = _orientation(frame)
                out.size = (frame.height, frame.width) if _turns(out.steps) else (frame.width, frame.height)
            out.frames += 1
            if frame.pts is not None and frame.time_base:
                t = frame.pts * frame.time_base
                first = t if first is None else min(first, t)
                end = max(end or t, t + (frame.duration or 0) * frame.time_base)
            if limits.frames is not None and out.frames > limits.frames:
                return out
            if time.monotonic() - began > limits.count_seconds:
                return out
        out.finished = True
    if first is not None and end is not None:
        out.seconds = float(end - first)
    return out


def _average_rate(frames: int, seconds: float, stated: Fraction) -> Fraction:
    """The output's constant rate: the stated one when the frames match it (e.g. 30000/1001, kept exact), else
    the average (frames / seconds) of a variable-rate clip, else 25."""
    if stated > 0 and (seconds <= 0 or abs(frames / stated - seconds) <= 1.5 / stated):
        return Fraction(stated).limit_denominator(1001)
    if seconds > 0:
        return Fraction(frames / seconds).limit_denominator(1001)
    return Fraction(25)


def _checked_header(path: Path, limits: ClipLimits) -> _Header:
    """The clip's header, checked against ``limits`` (a :class:`RequestError` in words), nothing decoded."""
    if not path.is_file():
        raise RequestError("the video file was not found")
    if path.stat().st_size == 0:
        raise RequestError("the video file is empty")
    header = _read_header(path)
    if header is None:
        raise RequestError(NOT_A_VIDEO)
    stated = float(header.fps)
    _refuse_over(limits, seconds=header.duration, fps=stated, size=header.size, frames=int(header.duration * stated))
    return header


@dataclass(frozen=True)
class ClipHeader:
    """What a clip's header says, checked against the limits (:func:`check_header`): nothing decoded yet."""

    duration: float  # seconds; 0 when the header does not say
    frames: int  # frames it says it holds (duration x stated rate); 0 when it does not say


def check_header(path: str | os.PathLike, limits: ClipLimits | None = None) -> ClipHeader:
    """The cheap first check of a clip, in milliseconds: its container's header against ``limits`` (a
    :class:`~sam.requests.RequestError` in words), nothing decoded. :func:`probe_clip` does it again, then counts the
    frames by decoding (a server runs that part in its turn in the line of long jobs)."""
    header = _checked_header(Path(path), limits or _NO_LIMITS)
    return ClipHeader(duration=header.duration, frames=int(header.duration * float(header.fps)))


def probe_clip(path: str | os.PathLike, limits: ClipLimits | None = None,
               should_stop: ShouldStop | None = None) -> ClipInfo:
    """Open a clip, check it against ``limits`` (the container's header first, then the frame count), count its
    frames and work out its average frame rate. :class:`~sam.requests.RequestError` in words when it is not a
    readable video, has no frames or is over a limit; :class:`JobCancelledError` when ``should_stop`` says so.
    Nothing is left open when this returns."""
    limits = limits or _NO_LIMITS
    path = Path(path)
    check_stop(should_stop)
    header = _checked_header(path, limits)
    stated = float(header.fps)
    try:
        count = _count_frames(path, header, limits, should_stop)
    except av.FFmpegError:
        raise RequestError(NOT_A_VIDEO) from None
    _refuse_over(limits, frames=count.frames, size=count.size)  # the size again: some headers do not state it
    if not count.finished and (limits.frames is None or count.frames <= limits.frames):
        raise RequestError(f"the video could not be read within {limits.count_seconds:g} seconds; please use a "
                           "shorter or smaller clip")
    if not count.frames or count.size is None:
        raise RequestError("the video has no frames")
    if count.frames < 2:
        raise RequestError("the file holds a single picture, not a video (at least 2 frames are needed); age photos "
                           "on the photo page")
    seconds = count.seconds if count.seconds > 0 else header.duration
    _refuse_over(limits, seconds=seconds)
    fps = _average_rate(count.frames, seconds, header.fps)
    return ClipInfo(path=path, frames=count.frames, duration=float(count.frames / fps), fps=fps, size=count.size,
                    rotation=count.rotation, audio_codec=header.audio_codec, codec=header.codec, nominal_fps=stated,
                    stream=header.stream, orientation=count.steps, max_pixels=limits.pixels)


def read_frames(info: ClipInfo, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The clip's frames as ``H x W x 3`` uint8 arrays, each decoded frame once (no frames dropped or repeated),
    upright, optionally scaled to ``size`` (width, height). Closing the generator closes the file."""
    size = tuple(size) if size is not None else info.size
    with _opened(info.path, info.stream, info.max_pixels) as video:
        for frame in _decoded(video):
            yield _picture(frame, size, info.orientation)
