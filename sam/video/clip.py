"""Age the people in a video clip: faces tracked over time, steady alignment, no flicker, the sound kept.

The video job shared by ``python -m sam video`` and the app's Video tab (lifespan animations of one photo are
:mod:`sam.lifespan`). One pass over the clip, frame by frame (memory stays at a few frames whatever its length):

1. **Read** with the ffmpeg binary of ``imageio-ffmpeg`` (:data:`VIDEO_FORMATS`). ffmpeg applies a
   rotation tag while decoding, so a phone's vertical clip comes out upright. Frames are taken as decoded
   (``-fps_mode passthrough``): a variable-frame-rate clip gives each of its frames once, and the output is
   written at a constant rate, the input's average (frames / duration), so count and duration are kept.
2. **Track faces**: dlib's detector runs on key frames only (every ``key_every`` frames); between them each face
   is followed by placing the 68-point shape predictor in a box carried along by the face's own landmarks. On a
   key frame, detections are matched to the tracks by box overlap (IoU), then by distance for a face that was
   lost. A face the detector misses is looked for again around its last place with a lower threshold; when it
   is really gone (covered, turned away) it is not aged and the detector runs on every frame for a while; when
   it comes back within two face widths of where it left (at any later time) it gets its old number again.
3. **Steady alignment**: each face's landmarks go through a :class:`OneEuroFilter` (Casiez et al., CHI 2012):
   strong smoothing when the head is still (no jitter in the aligned crop), little when it moves (no lag).
4. **No flicker**: noise fixed (the generator's stored maps); the frozen encoder's code and the SAM code are
   smoothed per person with :class:`CodeSmoother` (exponential, time constant in seconds); paste-back with the
   feathered mask of :func:`sam.align.paste_back`, colour matched to the frame with a shift that is itself
   smoothed over time.
5. **Write** H.264 / yuv420p MP4 (:class:`sam.video_io.Mp4Writer`) under a temporary name; a second ffmpeg pass
   copies the input's audio stream unchanged (``-map 0:v -map 1:a? -c:a copy``) when MP4 holds its codec in a way
   browsers play (AAC, MP3, Opus, FLAC, ALAC, AC-3); other codecs (e.g. Vorbis from a WebM) are re-encoded to AAC,
   and the result says so. The file appears under its name only when complete: a cancelled or failed job leaves
   nothing.

Frames outside ``start``/``end`` (seconds) are copied unchanged (the output is always the whole clip). A clip
in which no face is found is refused with :class:`~sam.align.NoFaceError` (a message in words), not passed
through. Per-stage time (read, detect, align, encode, render, paste, write) is measured in
:attr:`ClipResult.seconds` (``bench/video_benchmark.py``).
"""

from __future__ import annotations

import contextvars
import math
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam.ages import to_age
from sam.cancel import JobCancelledError, ShouldStop, check_stop
from sam.faces.align import AlignedFace, ffhq_align
from sam.faces.detect import MIN_EXTRA_FACE_SCORE, Face, NoFaceError, box_iou, detect_faces, predict_landmarks
from sam.faces.paste import apply_color_shift, color_shift, face_weights, paste_back
from sam.pipeline import AgingPipeline, to_pil
from sam.requests import RequestError
from sam.video.mp4 import Mp4Writer

__all__ = [
    "ClipInfo", "ClipLimits", "ClipResult", "OneEuroFilter", "CodeSmoother", "FaceTracker", "Track", "probe_clip",
    "read_frames", "age_clip", "VIDEO_FORMATS", "VIDEO_FORMAT_NAMES", "VIDEO_SUFFIXES", "PREVIEW_SIDE",
]

Progress = Callable[[int, int], None]
# the one list of video files taken (the app's upload box, its checks and every text that names them)
VIDEO_FORMATS = {".mp4": "MP4", ".mov": "MOV", ".m4v": "M4V", ".webm": "WebM", ".mkv": "MKV", ".avi": "AVI",
                 ".gif": "GIF"}
VIDEO_SUFFIXES = set(VIDEO_FORMATS)
VIDEO_FORMAT_NAMES = ", ".join(list(VIDEO_FORMATS.values())[:-1]) + " or " + list(VIDEO_FORMATS.values())[-1]
PREVIEW_SIDE = 480  # --preview: frames worked on (and written) with the long side at most this
MP4_AUDIO = {"aac", "mp3", "opus", "flac", "alac", "ac3", "eac3"}  # copied as they are; others become AAC
NOT_A_VIDEO = f"this file is not a video that can be read. Please use an {VIDEO_FORMAT_NAMES} clip"


# --------------------------------------------------------------------------------------------- filters


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for arrays of any shape, element by element.

    A low-pass filter whose cutoff rises with speed: ``cutoff = min_cutoff + beta * |dx/dt|`` (Hz). At rest
    only ``min_cutoff`` passes (jitter removed); when the signal moves fast the cutoff opens and lag stays
    small. The derivative is itself low-passed at ``d_cutoff``. Each step's smoothing factor comes from the
    actual time step, so uneven frame times (variable-frame-rate clips) are handled.

    ``min_cutoff`` and ``d_cutoff`` are in Hz; ``beta`` in 1 / (signal unit), so it depends on the signal's
    scale (for landmarks :class:`FaceTracker` divides it by the face size in pixels).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("cutoffs must be positive and beta not negative")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` observed at time ``t`` (seconds, increasing); returns the smoothed value (a new array)."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + self._alpha(dt, self.d_cutoff) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        self.x = self.x + self._alpha(dt, cutoff) * (x - self.x)
        self.t = float(t)
        return self.x.copy()


class CodeSmoother:
    """Exponential smoothing of a tensor over time with a time constant ``tau`` (seconds; 0 turns it off).

    ``y += (1 - exp(-dt / tau)) * (x - y)``: the same smoothing whatever the frame rate.
    """

    def __init__(self, tau: float = 0.2):
        self.tau = max(float(tau), 0.0)
        self.y: torch.Tensor | None = None
        self.t: float | None = None

    def __call__(self, t: float, x: torch.Tensor) -> torch.Tensor:
        if self.tau == 0 or self.y is None or self.t is None or t <= self.t or self.y.shape != x.shape:
            self.y, self.t = x.clone(), float(t)
            return x
        a = 1.0 - math.exp(-(float(t) - self.t) / self.tau)
        self.y = self.y + a * (x - self.y)
        self.t = float(t)
        return self.y


# --------------------------------------------------------------------------------------------- reading


@dataclass
class ClipInfo:
    """What a clip holds, as read (sizes after the rotation tag is applied)."""

    path: Path
    frames: int
    duration: float  # seconds (frames / fps)
    fps: Fraction  # the constant output rate: the input's average
    size: tuple[int, int]  # width, height of the decoded (upright) frames
    rotation: int  # the rotation tag (degrees), already applied by the decoder
    audio_codec: str | None  # None: no audio stream
    codec: str = ""
    nominal_fps: float = 0.0  # the rate the container states (a VFR clip's may differ from its average)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


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


HEADER_SECONDS = 10.0  # the longest reading a container's header may take
_NO_LIMITS = ClipLimits()


def _run_bounded(cmd: list[str], seconds: float, should_stop: ShouldStop | None,
                 on_line: Callable[[str], bool] | None = None, stream: str = "stderr") -> tuple[str, bool]:
    """Run ffmpeg with a time limit, polling ``should_stop``; ``on_line(line)`` returning True stops it early.
    Returns (everything it wrote on ``stream``, whether it ran to its end). The process is killed on every way out.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if stream == "stdout" else
                            subprocess.DEVNULL, stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL)
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    lines: list[str] = []
    enough = threading.Event()

    def read() -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if on_line is not None and on_line(line):
                enough.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + seconds
    try:
        while proc.poll() is None:
            if enough.is_set() or time.monotonic() > deadline:
                return "\n".join(lines), False
            check_stop(should_stop)
            time.sleep(0.05)
        reader.join(2.0)
        return "\n".join(lines), not enough.is_set()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        pipe.close()


def _pixel_cap(limits: ClipLimits) -> list[str]:
    """ffmpeg's decoders refuse frames over the pixel limit (a video bomb is never decoded at full size)."""
    return ["-max_pixels", str(int(limits.pixels))] if limits.pixels else []


def _header(path: Path, limits: ClipLimits, should_stop: ShouldStop | None) -> str:
    """What ffmpeg says about the container and its streams (nothing decoded beyond what probing needs)."""
    text, _ = _run_bounded([_ffmpeg(), "-hide_banner", "-nostdin", *_pixel_cap(limits), "-i", str(path)],
                           HEADER_SECONDS, should_stop)
    return text


def _parse_header(text: str) -> dict[str, Any]:
    """Duration, frame rate, frame size, rotation and codecs from ffmpeg's description of a file."""
    video = next((line for line in text.splitlines() if "Stream #" in line and "Video:" in line), None)
    if video is None:
        return {}
    out: dict[str, Any] = {"codec": video.split("Video:", 1)[1].split()[0].strip(" ,")}
    size = [(int(w), int(h)) for w, h in re.findall(r"[ ,](\d{1,6})x(\d{1,6})(?=[ ,\[])", video) if int(w) > 0]
    capped = re.search(r"Picture size (\d+)x(\d+) exceeds", text)  # a frame over -max_pixels: not decoded
    out["size"] = (int(capped.group(1)), int(capped.group(2))) if capped else size[0] if size else None
    rate = re.search(r"([0-9.]+)(k?) fps", video) or re.search(r"([0-9.]+)(k?) tbr", video)
    out["fps"] = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else 0.0
    found = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    out["duration"] = (int(found.group(1)) * 3600 + int(found.group(2)) * 60 + float(found.group(3))) if found else 0.0
    turn = re.search(r"rotation of (-?[0-9.]+) degrees", text) or re.search(r"rotate\s*:\s*(-?[0-9]+)", text)
    out["rotation"] = round(float(turn.group(1))) if turn else 0
    audio = next((line for line in text.splitlines() if "Stream #" in line and "Audio:" in line), None)
    out["audio_codec"] = audio.split("Audio:", 1)[1].split()[0].strip(" ,") if audio else None
    return out


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


def _count_frames(path: Path, limits: ClipLimits, should_stop: ShouldStop | None) -> tuple[int, float]:
    """Frames and seconds of the first video stream, by decoding it (a container's count can be missing or wrong),
    stopped as soon as the count passes ``limits.frames``, after ``limits.count_seconds``, or when cancelled."""
    state = {"frame": 0, "time": 0.0}

    def on_line(line: str) -> bool:
        key, _, value = line.partition("=")
        if key == "frame" and value.strip().isdigit():
            state["frame"] = int(value)
        elif key == "out_time_us" and value.strip().lstrip("-").isdigit():
            state["time"] = max(0.0, int(value) / 1e6)
        return limits.frames is not None and state["frame"] > limits.frames

    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1",
           *_pixel_cap(limits), "-i", str(path), "-map", "0:v:0", "-vf", "null", "-f", "null", "-"]
    _, finished = _run_bounded(cmd, limits.count_seconds, should_stop, on_line, stream="stdout")
    _refuse_over(limits, frames=state["frame"])
    if not finished:
        raise RequestError(f"the video could not be read within {limits.count_seconds:g} seconds; please use a "
                           "shorter or smaller clip")
    return state["frame"], state["time"]


def probe_clip(path: str | os.PathLike, limits: ClipLimits | None = None,
               should_stop: ShouldStop | None = None) -> ClipInfo:
    """Open a clip, check it against ``limits`` (the container's header first, then the frame count), count its
    frames and work out its average frame rate. :class:`~sam.session.RequestError` in words when it is not a
    readable video, has no frames or is over a limit; :class:`JobCancelledError` when ``should_stop`` says so.
    Every ffmpeg it starts has ended when this returns."""
    limits = limits or _NO_LIMITS
    path = Path(path)
    if not path.is_file():
        raise RequestError("the video file was not found")
    if path.stat().st_size == 0:
        raise RequestError("the video file is empty")
    meta = _parse_header(_header(path, limits, should_stop))
    if not meta or not meta.get("size"):
        raise RequestError(NOT_A_VIDEO)
    _refuse_over(limits, seconds=meta["duration"], fps=meta["fps"], size=meta["size"],
                 frames=int(meta["duration"] * meta["fps"]))
    frames, secs = _count_frames(path, limits, should_stop)
    if not frames:
        raise RequestError("the video has no frames")
    if frames < 2:
        raise RequestError("the file holds a single picture, not a video (at least 2 frames are needed); age photos "
                           "on the photo page")
    rotation = int(meta["rotation"])
    w, h = meta["size"]
    if rotation % 180:  # ffmpeg turns the frames upright while decoding
        w, h = h, w
    nominal = float(meta["fps"] or 0.0)
    duration = float(secs or 0.0)
    if duration <= 0:
        duration = float(meta["duration"] or 0.0)
    _refuse_over(limits, seconds=duration)
    if nominal > 0 and (duration <= 0 or abs(frames / nominal - duration) <= 1.5 / nominal):
        fps = Fraction(nominal).limit_denominator(1001)  # constant rate: keep the stated one (e.g. 30000/1001)
    elif duration > 0:
        fps = Fraction(frames / duration).limit_denominator(1001)  # variable rate: the average
    else:
        fps = Fraction(25)
    return ClipInfo(path=path, frames=int(frames), duration=float(frames / fps), fps=fps, size=(int(w), int(h)),
                    rotation=rotation, audio_codec=meta["audio_codec"], codec=meta["codec"], nominal_fps=nominal)


def read_frames(info: ClipInfo, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """The clip's frames as ``H x W x 3`` uint8 arrays, each decoded frame once (no frames dropped or repeated),
    upright, optionally scaled to ``size`` (width, height)."""
    import imageio_ffmpeg

    out = ["-fps_mode", "passthrough", "-an", "-sn"]
    if size is not None and tuple(size) != tuple(info.size):
        out += ["-vf", f"scale={size[0]}:{size[1]}:flags=area"]
    gen = imageio_ffmpeg.read_frames(str(info.path), input_params=["-threads", "1"], output_params=out)
    try:
        meta = next(gen)
        w, h = meta["size"]
        for buf in gen:
            yield np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
    finally:
        gen.close()


# --------------------------------------------------------------------------------------------- tracking


def _landmark_frame(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """A face's centre and size from its landmarks (the eye-mouth layout, stable under small expressions)."""
    centre = lm.mean(axis=0)
    return centre, float(np.sqrt(((lm - centre) ** 2).sum(axis=1).mean()))


@dataclass(eq=False)
class Track:
    """One person over the clip: a stable number, the current box and landmarks, and the per-person filters."""

    id: int
    box: np.ndarray  # left, top, right, bottom (source pixel edges), a detector-like box
    raw: np.ndarray  # the latest landmarks as predicted (68 x 2)
    landmark_filter: OneEuroFilter
    anchor: tuple[np.ndarray, np.ndarray, float]  # box, landmark centre and size when the box was last set
    missed: int = 0  # key frames in a row without a matching detection
    active: bool = True
    frames: int = 0  # frames this person was aged in
    smooth: np.ndarray | None = None  # the latest smoothed landmarks
    pretrained: CodeSmoother = field(default_factory=CodeSmoother)
    code: CodeSmoother = field(default_factory=CodeSmoother)
    colour: CodeSmoother = field(default_factory=CodeSmoother)
    cut: bool = False  # jumped (a cut, or back elsewhere): its next frame is a key frame for the codes
    key: Any = None  # the codes of its last key frame (:class:`_Key`)

    def set_box(self, box: np.ndarray, lm: np.ndarray) -> None:
        centre, size = _landmark_frame(lm)
        self.box = np.asarray(box, dtype=np.float64)
        self.anchor = (self.box.copy(), centre, size)

    def follow(self) -> None:
        """Carry the box along with the landmarks (shift and scale since it was last set by the detector)."""
        box, c0, s0 = self.anchor
        c1, s1 = _landmark_frame(self.raw)
        k = s1 / max(s0, 1e-6)
        bc = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        half = np.array([(box[2] - box[0]) / 2, (box[3] - box[1]) / 2]) * k
        centre = c1 + (bc - c0) * k
        self.box = np.concatenate([centre - half, centre + half])


class FaceTracker:
    """Faces followed over a clip (see the module notes). ``faces="largest"`` keeps one person: the best face of
    the first key frame with a face (found again by position when lost); ``"all"`` follows everyone found."""

    def __init__(self, faces: str = "largest", key_every: int = 5, max_missed: int = 2, smooth: bool = True,
                 min_cutoff: float = 0.4, beta: float = 4.0, code_tau: float = 0.2, max_faces: int = 8):
        if faces not in ("largest", "all"):
            raise RequestError(f"faces must be 'largest' or 'all', got {faces!r}")
        self.faces = faces
        self.key_every = max(1, int(key_every))
        self.max_missed = max(0, int(max_missed))
        self.smooth = smooth
        self.min_cutoff, self.beta, self.code_tau = min_cutoff, beta, code_tau
        self.max_faces = max_faces
        self.tracks: list[Track] = []
        self.detect_seconds = 0.0
        self.landmark_seconds = 0.0
        self._since_key = 0

    def _new_track(self, face: Face) -> Track:
        tr = Track(id=len(self.tracks), box=np.asarray(face.box, dtype=np.float64), raw=face.landmarks.copy(),
                   landmark_filter=OneEuroFilter(self.min_cutoff, self.beta, 1.0),
                   anchor=(np.zeros(4), np.zeros(2), 1.0), pretrained=CodeSmoother(self.code_tau),
                   code=CodeSmoother(self.code_tau), colour=CodeSmoother(self.code_tau))
        tr.set_box(np.asarray(face.box), face.landmarks)
        self.tracks.append(tr)
        return tr

    def _match(self, found: list[Face]) -> set[int]:
        """Assign detections to tracks; returns the ids of tracks seen on this key frame."""
        seen: set[int] = set()
        boxes = [np.asarray(f.box, dtype=np.float64) for f in found]
        # 1. overlap with active tracks, best pairs first
        pairs = sorted(((box_iou(t.box, b), ti, fi) for ti, t in enumerate(self.tracks) if t.active
                        for fi, b in enumerate(boxes)), reverse=True)
        used: set[int] = set()
        for iou, ti, fi in pairs:
            if iou < 0.3 or ti in seen or fi in used:
                continue
            self._take(self.tracks[ti], found[fi], reset=False)
            seen.add(ti)
            used.add(fi)
        # 2. lost tracks (or active ones that moved fast) found again by distance, within two face sizes
        for fi, face in enumerate(found):
            if fi in used:
                continue
            c = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
            best, best_d = None, math.inf
            for ti, t in enumerate(self.tracks):
                if ti in seen:
                    continue
                tc = np.array([(t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2])
                d = float(np.linalg.norm(c - tc)) / max(t.box[2] - t.box[0], 1.0)
                if d < best_d:
                    best, best_d = ti, d
            if best is not None and (best_d < 2.0 or self.faces == "largest"):
                self._take(self.tracks[best], face, reset=best_d > 0.5)
                seen.add(best)
                used.add(fi)
        # 3. new people
        if self.faces == "all":
            for fi, face in enumerate(found):
                if fi not in used and len(self.tracks) < self.max_faces:
                    seen.add(self._new_track(face).id)
        elif not self.tracks and found:
            seen.add(self._new_track(found[0]).id)
        return seen

    def _take(self, tr: Track, face: Face, reset: bool) -> None:
        if reset or not tr.active:
            tr.landmark_filter.reset()  # a jump (came back elsewhere): no glide from the old place
            tr.cut = True
        tr.raw = face.landmarks.copy()
        tr.set_box(np.asarray(face.box), face.landmarks)
        tr.missed = 0
        tr.active = True

    def _confirm(self, frame: Image.Image, tr: Track) -> bool:
        """Look again around a track the detector missed, with a lower threshold (a face turned or blurred for
        a moment); takes the face when found."""
        b = tr.box
        m = 0.5 * (b[2] - b[0])
        x0, y0 = max(0, int(b[0] - m)), max(0, int(b[1] - m))
        x1, y1 = min(frame.width, int(b[2] + m)), min(frame.height, int(b[3] + m))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return False
        for face in detect_faces(frame.crop((x0, y0, x1, y1)), min_score=-0.5):
            box = np.asarray(face.box) + [x0, y0, x0, y0]
            if box_iou(box, b) >= 0.3:
                lm = face.landmarks + [x0, y0]
                self._take(tr, Face(tuple(box), face.score, lm, face.detector_index), reset=False)
                return True
        return False

    def step(self, frame: Image.Image, t: float, key: bool | None = None) -> list[Track]:
        """Track the faces into ``frame`` (time ``t`` seconds); returns the people seen in it, with fresh landmarks
        (``raw``) and smoothed ones (``smooth``). A person the detector misses is looked for again around their
        last place; if not there, they are left out (not aged) but keep their number for ``max_missed`` key
        frames' time, while the detector runs on every frame."""
        if key is None:  # a key frame: every key_every-th, and every frame while a person is missing
            key = self._since_key == 0 or any(tr.active and tr.missed for tr in self.tracks)
        detected: set[int] = set()
        if key:
            self._since_key = 0
            t0 = time.perf_counter()
            found = detect_faces(frame)
            found = (found[:1] + [f for f in found[1:] if f.score >= MIN_EXTRA_FACE_SCORE])[: self.max_faces]
            detected = self._match(found)
            for tr in self.tracks:
                if tr.active and tr.id not in detected:
                    if tr.missed == 0 and self._confirm(frame, tr):
                        detected.add(tr.id)  # a doubtful detection where the face was: still there
                        continue
                    tr.missed += 1  # not seen: kept (and its number), but not aged until found again
                    if tr.missed > self.max_missed * self.key_every:
                        tr.active = False
            self.detect_seconds += time.perf_counter() - t0
        self._since_key = (self._since_key + 1) % self.key_every
        t0 = time.perf_counter()
        out = []
        w, h = frame.size
        for tr in self.tracks:
            if not tr.active or tr.missed:
                continue
            if tr.id not in detected:
                tr.follow()
                b = tr.box
                if b[2] <= 0 or b[3] <= 0 or b[0] >= w or b[1] >= h or b[2] - b[0] < 8:
                    tr.active = False  # left the picture
                    continue
                tr.raw = predict_landmarks(frame, tuple(b))
            if self.smooth:
                # beta per face size (in pixels): the same behaviour for a small face and a large one
                tr.landmark_filter.beta = self.beta / max(tr.anchor[2], 1.0)
                tr.smooth = tr.landmark_filter(t, tr.raw)
            else:
                tr.smooth = tr.raw.copy()
            out.append(tr)
        self.landmark_seconds += time.perf_counter() - t0
        return out


# --------------------------------------------------------------------------------------------- key frames

KEY_MAX_SECONDS = 0.4  # ``key_frames="auto"``: the longest gap between key frames (twice the codes' 0.2 s smoothing)
KEY_CHANGE = 4.0  # ``auto``: how much the aligned face may change (mean grey levels, 32 px) before a new key frame
KEY_STILL_TAU = 0.6  # ``auto``: a still face's key codes are averaged over time with this time constant (seconds)
_SIG_SIDE = 32


_SIG_WEIGHTS = face_weights(_SIG_SIDE) / face_weights(_SIG_SIDE).mean()


def _signature(image: Image.Image) -> np.ndarray:
    """A small grey copy of an aligned face, weighted to its centre (the face, not the background at the crop's
    edges): what its key-frame change is measured on."""
    small = image.convert("L").resize((_SIG_SIDE, _SIG_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32) * _SIG_WEIGHTS.astype(np.float32)


@dataclass
class _Key:
    """A person's codes on their last key frame: the frozen encoder's (as computed) and the SAM code's residual
    (the SAM code less the smoothed frozen code and ``latent_avg``), the two things interpolated between keys."""

    t: float
    pre: torch.Tensor
    residual: torch.Tensor
    sig: np.ndarray


@dataclass(eq=False)
class _Face:
    """One person in one frame, from tracking and alignment to the code it is rendered from."""

    track: Track
    aligned: AlignedFace
    sig: np.ndarray
    cut: bool  # the track jumped here: a key frame
    raw: np.ndarray
    smooth: np.ndarray
    box: np.ndarray
    pre: torch.Tensor | None = None  # the smoothed frozen code
    code: torch.Tensor | None = None  # the smoothed W+ code rendered
    key: bool = False  # went through the encoders

    @property
    def side(self) -> float:
        """The face's side in the frame (pixels): the aligned crop's size mapped back."""
        m = self.aligned.matrix
        return float(self.aligned.output_size * math.sqrt(abs(np.linalg.det(m[:, :2]))))


@dataclass(eq=False)
class _Frame:
    index: int
    t: float
    image: Image.Image
    faces: list[_Face]
    in_span: bool


class KeyFrameCoder:
    """The codes of every face in every frame from encoder passes on key frames only.

    On a key frame both encoders run (the frozen one, then SAM's on the smoothed frozen code); between key frames
    the frozen code and the SAM residual are interpolated linearly in time, then smoothed per frame exactly as
    every-frame codes would be (:class:`CodeSmoother`), so with ``key_frames=1`` this is every-frame encoding.
    ``key_frames="auto"``: a key frame when the aligned face has changed by :data:`KEY_CHANGE` since the person's
    last one (a head turn, an open mouth, a cut), for a new person or one who jumped, and at least every
    :data:`KEY_MAX_SECONDS`; ``N``: every N frames (and for new people). Frames are held until the next key frame
    (at most the longest gap) and given back in order with each face's ``code`` set.
    """

    def __init__(self, pipe: AgingPipeline, age: int, fps: float, key_frames: int | str | None = "auto",
                 fast: bool = True, batch: int = 1):
        auto = key_frames is None or str(key_frames).strip().lower() == "auto"
        if not auto:
            try:
                n = int(key_frames)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                n = 0
            if isinstance(key_frames, float) and key_frames != n or n < 1:
                raise RequestError(f"key frames must be 'auto' or a whole number >= 1, got {str(key_frames)[:20]!r}")
        self.max_gap = max(1, round(KEY_MAX_SECONDS * fps)) if auto else n
        self.change = KEY_CHANGE if auto else math.inf
        self.pipe, self.age, self.fast, self.batch = pipe, age, fast, max(1, int(batch))
        self.held: list[_Frame] = []
        self.key_faces = 0  # faces encoded
        self.key_frames = 0
        self.seconds = 0.0

    def _is_key(self, fr: _Frame) -> bool:
        if len(self.held) + 1 >= self.max_gap:
            return True
        return any(f.cut or f.track.key is None or float(np.abs(f.sig - f.track.key.sig).mean()) >= self.change
                   for f in fr.faces)

    def push(self, fr: _Frame) -> list[_Frame]:
        """Take the next frame; returns the frames whose codes are now known (in order, maybe none)."""
        if not fr.faces and not self.held:
            return [fr]
        key = self._is_key(fr)
        self.held.append(fr)
        return self._resolve() if key else []

    def flush(self) -> list[_Frame]:
        """The end of the clip: the last held frame becomes a key frame."""
        return self._resolve() if self.held else []

    def _still_weight(self, f: _Face, t: float) -> float:
        """How much of a key frame's own codes to take (1: all). A face that has not changed by :data:`KEY_CHANGE`
        since its last key frame (``auto`` only): ``1 - exp(-gap / KEY_STILL_TAU)``, the rest from the last key's
        (averaged) codes. Its codes change only by the encoders' jitter then, which a key frame every 0.4 s,
        interpolated, would otherwise show as slow flicker; a change, a cut or a new person takes the codes whole."""
        key = f.track.key
        if not math.isfinite(self.change) or KEY_STILL_TAU <= 0 or key is None or f.cut or t <= key.t:
            return 1.0
        if float(np.abs(f.sig - key.sig).mean()) >= self.change:
            return 1.0
        return 1.0 - math.exp(-(t - key.t) / KEY_STILL_TAU)

    @staticmethod
    def _lerp(left: torch.Tensor, t0: float, right: torch.Tensor | None, t1: float, t: float) -> torch.Tensor:
        if right is None or t1 <= t0:
            return left
        return torch.lerp(left, right, (t - t0) / (t1 - t0))

    @torch.inference_mode()
    def _resolve(self) -> list[_Frame]:
        frames, self.held = self.held, []
        last = frames[-1]
        t0 = time.perf_counter()
        pipe = self.pipe
        images = [f.aligned.image for f in last.faces]
        pre = pipe.encode_frames(images, batch=self.batch)
        weights = [self._still_weight(f, last.t) for f in last.faces]
        for i, f in enumerate(last.faces):  # a still face: its key frozen code averaged with the previous key's
            if weights[i] < 1.0:
                pre[i : i + 1] = torch.lerp(f.track.key.pre, pre[i : i + 1], weights[i])
        ends: dict[int, int] = {id(f.track): i for i, f in enumerate(last.faces)}
        # Two passes over the held frames, not one: the key frame's SAM codes (codes_at) need its faces' smoothed
        # frozen codes, which come last in the first pass (each smoother takes its frames in time order).
        for fr in frames:  # the frozen codes, interpolated, then smoothed in time order
            for f in fr.faces:
                tr = f.track
                i = ends.get(id(tr))
                if fr is last:
                    raw = pre[i : i + 1]
                else:
                    raw = self._lerp(tr.key.pre, tr.key.t, None if i is None else pre[i : i + 1], last.t, fr.t)
                f.pre = tr.pretrained(fr.t, raw)
        full = pipe.codes_at(images, torch.cat([f.pre for f in last.faces]) if images else pre, self.age,
                             fast=self.fast, batch=self.batch)
        avg = pipe.model.latent_avg
        residual = [full[i : i + 1] - f.pre - avg for i, f in enumerate(last.faces)]
        for i, f in enumerate(last.faces):  # a still face: its key residual averaged with the previous key's
            if weights[i] < 1.0:
                residual[i] = torch.lerp(f.track.key.residual, residual[i], weights[i])
                full[i : i + 1] = residual[i] + f.pre + avg
        for fr in frames:  # the SAM codes: the residual interpolated, then smoothed
            for f in fr.faces:
                tr = f.track
                i = ends.get(id(tr))
                if fr is last:
                    x = full[i : i + 1]
                else:
                    r = self._lerp(tr.key.residual, tr.key.t, None if i is None else residual[i], last.t, fr.t)
                    x = r + f.pre + avg
                f.code = tr.code(fr.t, x)
        for i, f in enumerate(last.faces):
            f.key = True
            f.track.key = _Key(t=last.t, pre=pre[i : i + 1], residual=residual[i], sig=f.sig)
        self.key_faces += len(images)
        self.key_frames += bool(images)
        self.seconds += time.perf_counter() - t0
        return frames


# --------------------------------------------------------------------------------------------- threads


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def _ahead(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """``items`` produced in a thread of their own, up to ``depth`` ahead of the consumer (errors raised here).
    Closing this generator stops the thread (and closes ``items`` there)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in items:
                if not put(x):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="clip-reader", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Failed):
                raise x.exc
            yield x
    finally:
        stop.set()
        thread.join()


_COLOUR_SIDE = 64  # a rendered face's colour is compared with the frame's on 64 px copies (sam.align.color_shift)


class _Output:
    """Colour matching, paste-back and H.264 writing of finished frames, in order; in a thread of its own when
    ``threaded`` (the networks never wait for it). Errors (a cancel included) surface at the next :meth:`put`."""

    def __init__(self, path: Path, fps: Fraction, total: int, seconds: dict[str, float],
                 progress: Progress | None, should_stop: ShouldStop | None, records: list[FaceFrame] | None,
                 threaded: bool):
        self.path, self.fps, self.total, self.seconds = path, fps, total, seconds
        self.progress, self.should_stop, self.records = progress, should_stop, records
        self.writer: Mp4Writer | None = Mp4Writer(path, fps)  # opened at the first frame
        self.n = 0
        self.error: BaseException | None = None
        self.q: queue.Queue[Any] | None = queue.Queue(maxsize=16) if threaded else None
        self.thread: threading.Thread | None = None
        if self.q is not None:
            # in the caller's context: progress callbacks (e.g. Gradio's) find their request there
            self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                           name="clip-writer", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        assert self.q is not None
        while True:
            item = self.q.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the producer
                    self.error = exc

    def _write(self, fr: _Frame, faces: list[Image.Image]) -> None:
        check_stop(self.should_stop)
        t0 = time.perf_counter()
        out = fr.image
        for f, face in zip(fr.faces, faces, strict=True):
            tr = f.track
            shift = color_shift(face, f.aligned.image, size=_COLOUR_SIDE, reducing_gap=None)
            face = apply_color_shift(face, tr.colour(fr.t, torch.from_numpy(shift)))
            out = paste_back(out, f.aligned, face)
            tr.frames += 1
            if self.records is not None:
                self.records.append(FaceFrame(frame=fr.index, face=tr.id, raw=f.raw, smooth=f.smooth,
                                              matrix=f.aligned.matrix.copy(), align_size=f.aligned.output_size,
                                              box=f.box, code=None if f.code is None else f.code.float().cpu(),
                                              key=f.key))
        t1 = time.perf_counter()
        self.seconds["paste"] += t1 - t0
        assert self.writer is not None, "a frame after finish()"
        self.writer.write(out)
        self.seconds["write"] += time.perf_counter() - t1
        self.n += 1
        if self.progress is not None:
            self.progress(self.n, max(self.total, self.n))

    def put(self, fr: _Frame, faces: list[Image.Image]) -> None:
        if self.error is not None:
            raise self.error
        if self.q is None:
            self._write(fr, faces)
            return
        while True:
            try:
                self.q.put((fr, faces), timeout=0.05)
                return
            except queue.Full:
                if self.error is not None:
                    raise self.error from None

    def finish(self, ok: bool = True) -> None:
        """Wait for the frames put (``ok``) or drop them, and close the writer; raises a failure of the thread."""
        if self.thread is not None and self.q is not None:
            if not ok:
                self.error = self.error or JobCancelledError("stopped")
            self.q.put(_END)
            self.thread.join()
            self.thread = None
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                if ok and self.error is None:
                    raise
        if ok and self.error is not None:
            raise self.error


# --------------------------------------------------------------------------------------------- the job


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


@dataclass
class ClipResult:
    path: Path
    frames: int
    fps: Fraction
    duration: float
    size: tuple[int, int]
    audio: str  # "copied", "re-encoded (<codec> does not fit in MP4)", or "none"
    faces: dict[int, int]  # person number -> frames aged
    seconds: dict[str, float]  # per stage (time spent in it; stages overlap when they run in threads)
    trace: list[FaceFrame] = field(default_factory=list)
    wall: float = 0.0  # seconds from start to finish
    key_frames: int = 0  # frames whose faces went through the encoders

    @property
    def frames_per_second(self) -> float:
        total = self.wall or sum(self.seconds.values())
        return self.frames / total if total > 0 else 0.0


def _mux_audio(video: Path, source: ClipInfo, out: Path) -> str:
    """``video`` with ``source``'s audio stream into ``out``; returns what happened to the audio. Copied when MP4
    holds its codec; else AAC; else AAC downmixed to stereo (e.g. 16-channel PCM); if the sound still cannot be
    added the video is kept without it (a finished job is never lost) and the result says so."""
    if source.audio_codec is None:
        os.replace(video, out)
        return "none"
    base = [_ffmpeg(), "-y", "-v", "error", "-i", str(video), "-i", str(source.path), "-map", "0:v", "-map", "1:a:0?",
            "-c:v", "copy"]
    tail = ["-movflags", "+faststart", "-f", "mp4", str(out)]
    if source.audio_codec.lower() in MP4_AUDIO:
        done = subprocess.run(base + ["-c:a", "copy"] + tail, capture_output=True)
        if done.returncode == 0:
            return "copied"
    done = subprocess.run(base + ["-c:a", "aac", "-b:a", "192k"] + tail, capture_output=True)
    if done.returncode == 0:
        return f"re-encoded to AAC ({source.audio_codec} does not fit in MP4)"
    done = subprocess.run(base + ["-c:a", "aac", "-b:a", "192k", "-ac", "2"] + tail, capture_output=True)
    if done.returncode == 0:
        return f"downmixed to stereo AAC ({source.audio_codec} in that channel layout does not fit in MP4)"
    os.replace(video, out)
    return f"none: the sound ({source.audio_codec}) could not be added, the video is kept without it"


def _render_side(requested: int, face_side: float, full: int) -> int:
    """The side a face is rendered at: the requested one, or for a face smaller than that in the frame the
    smallest power of two at least the face's side, never below 256 (nor the request, when that is smaller)."""
    if requested <= 256:
        return requested
    need = 1 << max(0, math.ceil(face_side) - 1).bit_length()
    return int(min(requested, full, max(256, need)))


def age_clip(
    pipe: AgingPipeline,
    src: str | os.PathLike | ClipInfo,
    dst: str | os.PathLike,
    target_age: Any,
    *,
    faces: str = "largest",
    output_size: int = 256,
    start: float | None = None,
    end: float | None = None,
    preview: bool = False,
    max_side: int | None = None,
    smooth: bool = True,
    smooth_codes: bool = True,
    key_every: int = 5,
    key_frames: int | str = "auto",
    overlap: bool = True,
    batch: int | None = None,
    trace: bool = False,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> ClipResult:
    """Age every tracked face of the clip ``src`` to ``target_age`` and write ``dst`` (H.264 MP4, the input's
    frame count, rate, duration and sound).

    Args:
        faces: ``"largest"`` (one person, the best face) or ``"all"``.
        output_size: side the face is rendered at before paste-back (256 or 1024; capped at the model's). Above
            256, a face smaller than that in the frame is rendered at the smallest power of two >= its size.
        start, end: seconds: only frames in ``[start, end)`` are aged; the others are copied unchanged.
        preview: a quick pass: frames worked on with the long side at most :data:`PREVIEW_SIDE`, faces rendered
            at 256 px or less with the generator stopped early.
        max_side: frames with a longer side are scaled down to it (read, aged and written at that size).
        smooth, smooth_codes: the landmark filter and the code smoothing (off only to measure what they do).
        key_every: frames between detector runs.
        key_frames: ``"auto"`` or N: frames whose faces go through the encoders (:class:`KeyFrameCoder`; 1: all).
        overlap: decoding/tracking and paste-back/writing in threads of their own, alongside the networks.
        batch: faces per network pass (default: the pipeline's batch size on a GPU, 1 on a CPU).
        progress: ``progress(frames done, frames total)`` after each frame.
        should_stop: polled before each frame: :class:`~sam.pipeline.JobCancelledError`, nothing left behind.

    Raises:
        RequestError: not a readable video, no frames, bad ``start``/``end``, no frame between them.
        NoFaceError: no face anywhere in the aged span (nothing written).
    """
    t_all = time.perf_counter()
    info = src if isinstance(src, ClipInfo) else probe_clip(src)
    age = to_age(target_age)
    lo = 0.0 if start is None else float(start)
    hi = info.duration if end is None else float(end)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0:
        raise RequestError(f"start and end must be numbers of seconds, start not negative; got start={lo:g}, "
                           f"end={hi:g}")
    if lo >= info.duration:
        raise RequestError(f"start ({lo:g} s) is past the end of the video ({info.duration:.2f} s)")
    if hi <= lo:
        raise RequestError(f"the end ({hi:g} s) must come after the start ({lo:g} s)")
    size = info.size
    side = min(PREVIEW_SIDE if preview else math.inf, max_side or math.inf)
    if max(size) > side:
        k = side / max(size)
        size = (max(2, round(size[0] * k / 2) * 2), max(2, round(size[1] * k / 2) * 2))
    requested = min(int(output_size), pipe.output_size, 256 if preview else pipe.output_size)
    if requested < 8:
        raise RequestError(f"output size must be at least 8, got {output_size}")
    quick = preview or requested < pipe.output_size  # a video is a preview: the fast dtype where there is one
    tracker = FaceTracker(faces, key_every=key_every, smooth=smooth, code_tau=0.2 if smooth_codes else 0.0)
    if batch is None:
        batch = pipe.batch_size if pipe.device.type != "cpu" else 1
    coder = KeyFrameCoder(pipe, age, float(info.fps), key_frames, fast=quick, batch=batch)
    seconds = dict.fromkeys(("read", "detect", "align", "encode", "render", "paste", "write"), 0.0)
    records: list[FaceFrame] = []

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_video = dst.with_name(dst.stem + ".partial-video.mp4")
    tmp_out = dst.with_name(dst.stem + ".partial.mp4")
    frames: Iterator[_Frame] = _prepare(info, size, tracker, lo, hi, pipe.input_size, seconds)
    if overlap:
        frames = _ahead(frames, depth=coder.max_gap + 2)
    output = _Output(tmp_video, info.fps, info.frames, seconds, progress, should_stop, records if trace else None,
                     threaded=overlap)
    in_span = 0

    def render(done: list[_Frame]) -> None:
        t0 = time.perf_counter()
        todo = [(fr, f) for fr in done for f in fr.faces]
        faces_out: dict[int, Image.Image] = {}
        by_side: dict[int, list[_Face]] = {}
        for _, f in todo:
            by_side.setdefault(_render_side(requested, f.side, pipe.output_size), []).append(f)
        for s, group in by_side.items():
            codes = torch.cat([f.code for f in group])
            images = pipe.render(codes, size=s, fast=quick, early=quick or s < pipe.output_size,
                                 should_stop=should_stop)
            for f, im in zip(group, to_pil(images), strict=True):
                faces_out[id(f)] = im
        seconds["render"] += time.perf_counter() - t0
        for fr in done:
            output.put(fr, [faces_out[id(f)] for f in fr.faces])

    ok = False
    try:
        for fr in frames:
            check_stop(should_stop)
            in_span += fr.in_span
            render(coder.push(fr))
        render(coder.flush())
        ok = True
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # the ffmpeg reader ends on every way out (a cancel, a closed page, an error)
        try:
            output.finish(ok)
        finally:
            if not ok:
                tmp_video.unlink(missing_ok=True)
                tmp_out.unlink(missing_ok=True)
    try:
        n = output.n
        if n == 0:
            raise RequestError("the video has no frames")
        if not in_span:
            raise RequestError(f"no frame of the video lies between {lo:g} s and {hi:g} s (its last frame starts at "
                               f"{(n - 1) / float(info.fps):.2f} s); nothing was written")
        if not tracker.tracks:
            raise NoFaceError(f"no face found in the video{' between the chosen times' if start or end else ''}; "
                              "use a clip with a clearly visible, roughly frontal face at least about 40 pixels "
                              "wide (nothing was written)")
        check_stop(should_stop)
        t0 = time.perf_counter()
        audio = _mux_audio(tmp_video, info, tmp_out)
        os.replace(tmp_out, dst)
        seconds["write"] += time.perf_counter() - t0
    finally:
        tmp_video.unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)
    seconds["detect"] = tracker.detect_seconds
    seconds["align"] += tracker.landmark_seconds
    seconds["encode"] = coder.seconds
    wall = time.perf_counter() - t_all
    return ClipResult(path=dst, frames=n, fps=info.fps, duration=n / float(info.fps), size=size, audio=audio,
                      faces={tr.id: tr.frames for tr in tracker.tracks}, seconds=seconds, trace=records, wall=wall,
                      key_frames=coder.key_frames)


def _prepare(info: ClipInfo, size: tuple[int, int], tracker: FaceTracker, lo: float, hi: float, align_size: int,
             seconds: dict[str, float]) -> Iterator[_Frame]:
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
            faces: list[_Face] = []
            inside = lo <= t < hi
            if inside:
                for tr in tracker.step(image, t):
                    t0 = time.perf_counter()
                    crop, _, matrix, _ = ffhq_align(image, tr.smooth, align_size)
                    aligned = AlignedFace(image=crop, quad=np.zeros((4, 2)),
                                          face=Face(tuple(tr.box), 1.0, tr.smooth.copy()), source_size=image.size,
                                          output_size=align_size, transform_size=align_size, matrix=matrix)
                    faces.append(_Face(track=tr, aligned=aligned, sig=_signature(crop), cut=tr.cut,
                                       raw=tr.raw.copy(), smooth=tr.smooth.copy(), box=tr.box.copy()))
                    tr.cut = False
                    seconds["align"] += time.perf_counter() - t0
            yield _Frame(index=n, t=t, image=image, faces=faces, in_span=inside)
            n += 1
    finally:
        frames.close()


__all__ += ["FaceFrame", "JobCancelledError", "KeyFrameCoder", "NoFaceError", "KEY_MAX_SECONDS", "KEY_CHANGE"]
