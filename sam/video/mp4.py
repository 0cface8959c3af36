"""The package's one MP4 writer: H.264 in yuv420p at CRF 18, fast start, so the file plays inline in browsers; and
the sound of a source clip added to a finished video.

Both kinds of video the project makes go through it: lifespan animations (:mod:`sam.video.lifespan`, a sequence of
rendered frames, :func:`write_mp4`) and aged clips (:mod:`sam.video.clip`, frames streamed one at a time as the job
makes them, :class:`Mp4Writer`, then :func:`add_audio`). Everything goes through PyAV (FFmpeg's libraries, in this
process): libx264 at preset ``veryfast`` in one thread, ``movflags=+faststart``; a frame rate given as a
:class:`~fractions.Fraction` (e.g. 30000/1001) is kept exact. No ffmpeg program is started.

Where the file is written is the caller's choice: :func:`write_mp4` writes through
:func:`sam.atomic.atomic_path` (the file appears under its name only when complete); :class:`Mp4Writer` writes to
the path it is given (the clip job writes a partial file of its own, then adds the sound and renames it).

The frame size is the first frame's; a side that is odd is padded to even by repeating the last row or column
(yuv420p needs even sides). A frame of another size than the first is refused.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from sam.atomic import atomic_path

__all__ = ["CRF", "MP4_AUDIO", "AAC_BITRATE", "Mp4Writer", "write_mp4", "add_audio"]

CRF = 18  # x264 constant rate factor (lower: better and larger)
_X264 = {"crf": str(CRF), "preset": "veryfast"}
_MUXER = {"movflags": "+faststart"}  # the index first: a browser plays while it downloads
MP4_AUDIO = {"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"}  # copied as they are; others become AAC
AAC_BITRATE = 192_000

Frame = Image.Image | np.ndarray


def _rgb(frame: Frame) -> np.ndarray:
    """``frame`` as a C-contiguous ``(H, W, 3)`` uint8 array."""
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
    arr = np.ascontiguousarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a frame must be RGB uint8 (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def _fraction(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (a float such as 29.97 to its nearest with a small denominator)."""
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


class Mp4Writer:
    """Stream frames into an H.264 MP4 at ``path`` (opened at the first frame, whose size sets the video's).

    >>> with Mp4Writer("out.mp4", fps=25) as w:
    ...     for frame in frames:
    ...         w.write(frame)

    :meth:`close` finishes the file (and is safe to call twice); :meth:`abort` (and leaving the ``with`` block by
    an exception) stops without finishing it, and what was written is the caller's to remove.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the frames
        self._container: Any = None
        self._stream: Any = None

    def _open(self, size: tuple[int, int]) -> None:
        self.size = size
        container = av.open(str(self.path), "w", format="mp4", container_options=_MUXER)
        try:
            stream = container.add_stream("libx264", rate=_fraction(self.fps), options=dict(_X264))
            stream.width, stream.height = size[0] + size[0] % 2, size[1] + size[1] % 2
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
        except BaseException:
            container.close()
            raise
        self._container, self._stream = container, stream

    def write(self, frame: Frame) -> None:
        arr = _rgb(frame)
        size = (arr.shape[1], arr.shape[0])
        if self._container is None:
            if self.size is not None:
                raise ValueError("the writer is closed")
            self._open(size)
        elif size != self.size:
            raise ValueError(f"frame {self.frames} is {size[0]}x{size[1]}, the video {self.size[0]}x{self.size[1]}")
        if size[0] % 2 or size[1] % 2:
            arr = np.pad(arr, ((0, size[1] % 2), (0, size[0] % 2), (0, 0)), mode="edge")
        # rgb24 -> yuv420p as ffmpeg's command line converts (bicubic), in this thread only
        picture = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p", interpolation="BICUBIC",
                                                                          threads=1)
        picture.pts = self.frames
        self._mux(self._stream.encode(picture))
        self.frames += 1

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            self._container.mux(packet)

    def close(self) -> None:
        """Encode the frames the encoder still holds and finish the file."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()

    def abort(self) -> None:
        """Stop without finishing the file (a cancelled job: the caller removes it)."""
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except av.FFmpegError:
                pass

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


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


# --------------------------------------------------------------------------------------------- sound


def add_audio(video: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike) -> str:
    """``video`` with the first audio stream of ``source`` into the MP4 ``out``; returns what happened to the sound.

    Copied unchanged when MP4 holds its codec (:data:`MP4_AUDIO`); else re-encoded to AAC; else AAC downmixed to
    stereo (e.g. 16-channel PCM); else, for a layout the resampler cannot map (64 unnamed channels), every channel
    averaged into both of a stereo AAC track; if the sound still cannot be added the video is moved to ``out``
    without it (a finished job is never lost) and the answer says so. Timestamps are shifted as ffmpeg's command
    line shifts them (each input starts at zero). ``video`` is moved or left for the caller; a failed try leaves no
    ``out``.
    """
    video, out = Path(video), Path(out)
    codec = _audio_codec(Path(source))
    if codec is None:
        os.replace(video, out)
        return "none"
    tries = [("copy", "copied")] if codec.lower() in MP4_AUDIO else []
    tries += [("aac", f"re-encoded to AAC ({codec} does not fit in MP4)"),
              ("stereo", f"downmixed to stereo AAC ({codec} in that channel layout does not fit in MP4)"),
              ("mixed", f"mixed down to stereo AAC (the {codec} channels averaged: MP4 holds no such layout)")]
    for how, words in tries:
        try:
            _mux_with_audio(video, Path(source), out, how)
            return words
        except Exception:  # noqa: BLE001 - the next way, and at worst the video without its sound
            out.unlink(missing_ok=True)
    os.replace(video, out)
    return f"none: the sound ({codec}) could not be added, the video is kept without it"


def _audio_codec(path: Path) -> str | None:
    """The codec of ``path``'s first audio stream (its own name: ``mp3``, not the decoder's), or ``None``."""
    try:
        with av.open(str(path), options={"codec_whitelist": "none"}, metadata_errors="replace") as container:
            if not container.streams.audio:
                return None
            ctx = container.streams.audio[0].codec_context
            return ctx.codec.canonical_name if ctx is not None else "unknown"
    except av.FFmpegError:
        return None


def _start(container: Any) -> Fraction:
    """Where a file's timestamps start (seconds): ffmpeg's command line makes each input start at zero."""
    return Fraction(container.start_time or 0, av.time_base)


def _shifted(packets: Iterable[Any], shift: Fraction, stream: Any) -> Iterator[Any]:
    """``packets`` (the demuxer's end markers dropped) moved earlier by ``shift`` seconds and set to go out on
    ``stream``."""
    for packet in packets:
        if not packet.size:
            continue
        if shift and packet.time_base:
            ticks = round(shift / packet.time_base)
            packet.pts = None if packet.pts is None else packet.pts - ticks
            packet.dts = None if packet.dts is None else packet.dts - ticks
        packet.stream = stream
        yield packet


def _encoded(source: Any, audio: Any, out: Any, shift: Fraction) -> Iterator[Any]:
    """The decoded sound of ``audio``, moved earlier by ``shift`` seconds, encoded by the AAC stream ``out``
    (resampled to its format, layout and rate)."""
    for frame in source.decode(audio):
        if frame.pts is not None and frame.time_base:
            frame.pts -= round(shift / frame.time_base)
        yield from out.encode(frame)
    yield from out.encode(None)


def _averaged(source: Any, audio: Any, out: Any, shift: Fraction) -> Iterator[Any]:
    """As :func:`_encoded`, every channel of the sound averaged into both channels of a stereo track first (no
    resampler matrix: any number of channels, any layout)."""
    for frame in source.decode(audio):
        samples = frame.to_ndarray()
        if not frame.format.is_planar:  # interleaved: one row of samples x channels
            samples = samples.reshape(-1, len(frame.layout.channels)).T
        scale = {"s16": 2.0**15, "s32": 2.0**31, "u8": 2.0**7}.get(frame.format.name.rstrip("p"), 1.0)
        mono = samples.astype(np.float32).mean(axis=0) / scale
        if frame.format.name.rstrip("p") == "u8":
            mono -= 1.0
        mixed = av.AudioFrame.from_ndarray(np.stack([mono, mono]).astype(np.float32), format="fltp",
                                           layout="stereo")
        mixed.sample_rate, mixed.time_base = frame.sample_rate, frame.time_base
        mixed.pts = None if frame.pts is None else frame.pts - round(shift / frame.time_base)
        yield from out.encode(mixed)
    yield from out.encode(None)


def _aac_rate(rate: int) -> int:
    """The sample rate the AAC encoder takes nearest to ``rate`` (the same rate when it can: 8 to 96 kHz)."""
    rates = sorted(av.codec.Codec("aac", "w").audio_rates or [rate])
    return min(rates, key=lambda r: (abs(r - rate), -r))


def _in_time_order(*streams: Iterator[Any]) -> Iterator[Any]:
    """Packets of several streams merged by decoding time (a well interleaved file)."""
    def keyed(packets: Iterator[Any]) -> Iterator[tuple[Fraction, int, Any]]:
        last = Fraction(0)
        for i, packet in enumerate(packets):
            ts = packet.dts if packet.dts is not None else packet.pts
            if ts is not None and packet.time_base:
                last = ts * packet.time_base
            yield last, i, packet

    for _, _, packet in heapq.merge(*(keyed(s) for s in streams), key=lambda x: (x[0], x[1])):
        yield packet


def _mux_with_audio(video: Path, source: Path, out: Path, how: str) -> None:
    """``video``'s packets and ``source``'s first audio stream into ``out``: ``how`` is ``copy`` (the packets as
    they are), ``aac`` (re-encoded, same channels), ``stereo`` (re-encoded, downmixed) or ``mixed`` (re-encoded,
    every channel averaged)."""
    with av.open(str(video)) as vin, av.open(str(source), metadata_errors="replace") as ain, \
            av.open(str(out), "w", format="mp4", container_options=_MUXER) as dst:
        picture = vin.streams.video[0]
        audio = ain.streams.audio[0]
        vout = dst.add_stream_from_template(picture)
        if how == "copy":
            aout = dst.add_stream_from_template(audio)
            sound = _shifted(ain.demux(audio), _start(ain), aout)
        else:
            ctx = audio.codec_context
            aout = dst.add_stream("aac", rate=_aac_rate(ctx.sample_rate), bit_rate=AAC_BITRATE)
            aout.layout = ctx.layout if how == "aac" else "stereo"
            aout.codec_context.thread_count = 1
            sound = (_averaged if how == "mixed" else _encoded)(ain, audio, aout, _start(ain))
        for packet in _in_time_order(_shifted(vin.demux(picture), _start(vin), vout), sound):
            dst.mux(packet)
