"""Face sessions: one photo's whole flow, from the uploaded file to aged, pasted-back and measured results.

The layer between the :class:`~sam.pipeline.AgingPipeline` (which ages *aligned* faces, paper Sec. 3) and the two
front ends, the Gradio app and the CLI. Neither of them holds model flow of its own; both go through here:

* :class:`Photo`: a photo loaded safely (a working copy of at most :data:`WORKING_SIDE` pixels; only a
  decompression bomb is refused) and its faces, found once, best first;
* :class:`FaceSession`: one chosen face of a photo: aligned (FFHQ, Sec. 4), encoded once, then codes per age,
  interpolated and exact previews, renders, the lifespan video, style mixing (Sec. 4.4), paste-back into the
  photo, apparent age and identity (:class:`FaceMeasures`), and the key-age warm-up;
* :class:`GroupSession`: several faces of one photo aged together, each to its own age, pasted back into the one
  photo (previews, full resolution, the group lifespan video);
* :class:`SessionCache`: a small LRU of photos and sessions (the app's per-user caching);
* :func:`read_number` / :func:`read_flag` / :func:`read_size` / :func:`read_faces` / :func:`read_face_ages`:
  request values checked the same way for the page, the HTTP API and the CLI (NaN, infinities, strings,
  out-of-range values, unknown or repeated face numbers: a :class:`RequestError` in words).

Ages follow :func:`sam.ages.to_age` everywhere (round half up; every label shows the age rendered). Long work
takes ``progress(done, total)`` callbacks and ``should_stop()`` for cooperative cancellation (it raises
:class:`~sam.pipeline.JobCancelledError` within one image or frame). Nothing here imports Gradio.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .ages import KEY_AGES, AgeError, key_ages, to_age
from .align import (
    MIN_EXTRA_FACE_SCORE,
    AlignedFace,
    Face,
    NoFaceError,
    align_face,
    box_iou,
    detect_faces,
    paste_back,
    paste_faces,
)
from .image_io import ImageLoadError, load_image
from .lifespan import LifespanResult, draw_age_label, interpolate_codes, make_lifespan, write_lifespan
from .mixing import parse_latent_mask
from .pipeline import AgingPipeline, EncodedFace, JobCancelledError, Progress, ShouldStop, check_stop, to_pil
from .scheduler import BACKGROUND, priority, stopping

__all__ = [
    "WORKING_SIDE", "PREVIEW_SIZE", "MAX_FACES", "MAX_FRAMES_BETWEEN", "RequestError", "JobCancelledError", "Photo",
    "FaceSession", "GroupSession", "FaceMeasures", "SessionCache", "read_number", "read_flag", "read_size",
    "is_best", "read_faces", "read_face_ages", "warm_up", "stop_background_work",
]

log = logging.getLogger("sam.session")

WORKING_SIDE = 4096  # photos larger than this (long side) are worked on as a downscaled copy
DETECT_SIDE = 1024  # faces are looked for in a copy with this long side (landmarks on the working copy)
QUICK_DETECT_SIDE = 640  # the quick look for a new photo's best face: a smaller copy, no upsampling
PREVIEW_SIZE = 256  # slider previews, the ages strip and videos by default: the generator stopped at 256 px
MAX_FACES = 12
MAX_FRAMES_BETWEEN = 60
MIN_SIZE = 8
QUICK_MATCH_IOU = 0.5  # a quick-look face and a full-look face overlapping this much are the same face
GROUP_VIDEO_SIDE = 1280  # a group lifespan video shows the whole photo with at most this long side
BEST, ALL = "best", "all"  # the words of ``faces`` (read_faces)


class RequestError(ValueError):
    """A request value that cannot be used; the message says why, in words for a person."""


# Background work (the key-age warm-up) stops when the process exits: a thread killed inside a torch call at
# interpreter shutdown aborts the process ("terminate called without an active exception").
_BACKGROUND: set[threading.Thread] = set()


@atexit.register
def stop_background_work(timeout: float = 10.0) -> None:
    """Stop the warm-ups (and every job: :data:`sam.scheduler.stopping`) and wait for them, within ``timeout``."""
    stopping.set()
    deadline = time.monotonic() + timeout
    for thread in list(_BACKGROUND):
        thread.join(max(0.0, deadline - time.monotonic()))


def warm_up(pipe: AgingPipeline, measures: FaceMeasures | None = None) -> None:
    """Run the networks of a photo's first preview once on a plain grey face, at background priority, and load the
    face detector, the landmark model and the measures' models: first calls pay one-off costs (kernel set-up, the
    bfloat16 copies, model files; about 2 s on a 2-core CPU) that the first visitor should not wait for."""
    _BACKGROUND.add(threading.current_thread())
    began = time.monotonic()
    try:
        with priority(BACKGROUND):
            grey = Image.new("RGB", (pipe.input_size, pipe.input_size), (128, 128, 128))
            detect_faces(grey.resize((64, 64)))  # loads dlib's detector and landmark model
            for step in (lambda: pipe.first_look(grey, [50]),
                         lambda: pipe.render(pipe.latents(pipe.encode(grey, cache=False), [50], fast=True),
                                             size=min(PREVIEW_SIZE, pipe.output_size), fast=True),
                         lambda: measures and (measures.age(grey), measures.descriptor(grey))):
                check_stop(None)
                step()
        log.info("warm-up done in %.1f s", time.monotonic() - began)
    except JobCancelledError:
        pass
    except Exception as exc:  # noqa: BLE001 - a nicety: never disturb the server
        log.warning("warm-up skipped: %s: %s", type(exc).__name__, exc)
    finally:
        _BACKGROUND.discard(threading.current_thread())


# --------------------------------------------------------------------------------------------- request values


def read_number(value: Any, name: str, lo: float, hi: float = math.inf, *, integer: bool = False,
                default: float | None = None) -> float:
    """``value`` as a finite number in ``[lo, hi]`` (an ``int`` when ``integer``; must be whole then).

    ``None`` or ``""`` give ``default`` when there is one. Anything else (NaN, infinities, text, booleans,
    fractions where a count is asked) is a :class:`RequestError` naming the parameter.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise RequestError(f"{name} is missing")
        value = default
    if isinstance(value, bool):
        raise RequestError(f"{name} must be a number, got {value}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    span = f"between {lo:g} and {hi:g}" if math.isfinite(hi) else f"{lo:g} or more"
    if not math.isfinite(x):
        raise RequestError(f"{name} must be a number {span}, got {x}")
    if not lo <= x <= hi:
        raise RequestError(f"{name} must be {span}, got {x:g}")
    if integer:
        if x != int(x):
            raise RequestError(f"{name} must be a whole number, got {x:g}")
        return int(x)
    return x


def read_flag(value: Any, name: str) -> bool:
    """A yes/no parameter: booleans, 0/1 and "true"/"false" (any case); anything else is a :class:`RequestError`."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise RequestError(f"{name} must be true or false, got {str(value)[:40]!r}")


def read_size(value: Any, full: int, default: int | None = None) -> int:
    """An output side in pixels: ``MIN_SIZE`` to ``full`` (a larger request is capped at ``full``)."""
    s = read_number(value, "size", MIN_SIZE, integer=True, default=default or full)
    return min(int(s), full)


def _items(value: Any) -> list[Any]:
    """A list from ``"1, 3"``, ``[1, 3]``, ``(1, 3)`` or a single value (blank entries of a text kept as ``""``)."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return [] if not text else [part.strip() for part in text.replace(";", ",").split(",")]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def is_best(faces: Any) -> bool:
    """Whether ``faces`` asks for the single-face flow (``"best"``, ``None`` or ``""``; see :func:`read_faces`)."""
    return faces is None or (isinstance(faces, str) and faces.strip().lower() in ("", BEST))


def read_faces(value: Any, count: int | None = None) -> list[int] | None:
    """Which faces of a photo to age, by the face numbers of :attr:`Photo.faces` (best first, 0 = the best).

    ``"best"``, ``None`` or ``""``: ``None``, meaning the one face of the single-face flow (``face_index``);
    ``"all"`` (or ``"everyone"``): every face found (``count`` of them); ``"1,3"``, ``[1, 3]`` or ``2``: those
    faces, in that order. With ``count`` the numbers are checked against it. Unknown, repeated, negative or
    fractional numbers and other words are a :class:`RequestError` in words.
    """
    if is_best(value):
        return None
    if isinstance(value, str) and value.strip().lower() in (ALL, "everyone", "every face"):
        if count is None:
            raise RequestError("\"all\" faces needs the photo's faces to be found first")
        return list(range(count))
    chosen: list[int] = []
    for item in _items(value):
        if isinstance(item, str) and not item:
            continue
        if isinstance(item, str):
            try:
                item = int(item) if item.lstrip("+-").isdigit() else float(item)
            except ValueError:
                pass
        if isinstance(item, (str, bool)):
            raise RequestError(f"faces must be \"best\", \"all\" or face numbers such as \"1,3\", got "
                               f"{str(value)[:40]!r}")
        n = read_number(item, "a face number", -math.inf, integer=True)
        if n < 0:
            raise RequestError(f"face numbers start at 0 (the best face), got {n}")
        if n in chosen:
            raise RequestError(f"face {n} is listed twice in faces={str(value)[:40]!r}")
        chosen.append(int(n))
    if not chosen:
        raise RequestError("choose at least one face (\"all\", or face numbers such as \"1,3\")")
    if count is not None:
        unknown = [n for n in chosen if n >= count]
        if unknown:
            raise RequestError(f"face {unknown[0]} was asked for, but the photo has {count} face(s) "
                               f"(numbered 0 to {count - 1}, best first)")
    return chosen


def read_face_ages(ages: Any, faces: Sequence[int], target_age: Any = None) -> list[int]:
    """One age per chosen face (``faces``: their numbers): ``target_age`` for every face, or a per-face list
    (``"60,25"``, ``[60, 25]``) in the order of ``faces``; a blank entry or a shorter list leaves the remaining
    faces at ``target_age``.

    More ages than faces, or an age that is not a number from 0 to 100 (NaN, text), is a :class:`RequestError`.
    """
    n_faces = len(faces)
    listed = _items(ages) if ages is not None else []
    if len(listed) > n_faces:
        raise RequestError(f"{len(listed)} ages were given for {n_faces} face(s): give at most one age per face")
    out = []
    for i in range(n_faces):
        value = listed[i] if i < len(listed) else None
        blank = value is None or (isinstance(value, str) and not value.strip())
        try:
            if blank:
                if target_age is None or (isinstance(target_age, str) and not target_age.strip()):
                    raise RequestError(f"no age for face {faces[i]}: give a target age")
                out.append(to_age(target_age))
            else:
                out.append(to_age(value, f"the age of face {faces[i]}"))
        except AgeError as exc:
            raise RequestError(str(exc)) from None
    return out


# --------------------------------------------------------------------------------------------- photos


@dataclass(eq=False)
class Photo:
    """A photo loaded safely (EXIF applied, RGB, a working copy of at most ``WORKING_SIDE`` pixels) and its faces."""

    image: Image.Image
    key: str  # content hash: equal files give equal keys
    _faces: list[Face] | None = field(default=None, repr=False)
    _quick: Face | None = field(default=None, repr=False)  # the best face of the quick look (first preview)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def load(cls, src: Any, what: str = "photo") -> Photo:
        """Load a path, bytes, array or PIL image. :class:`~sam.image_io.ImageLoadError` in words when it is not
        a usable image (the message never names a server path)."""
        if src is None or (isinstance(src, str) and not src.strip()):
            raise RequestError(f"add a {what} first (upload, webcam, paste, or pick an example)")
        if isinstance(src, dict):  # FileData-like, from some API clients
            src = src.get("path") or src.get("url")
        try:
            image = load_image(src, max_side=WORKING_SIDE)
        except ImageLoadError as exc:
            raise ImageLoadError(_without_paths(str(exc), src, what)) from None
        key = hashlib.sha1(image.tobytes()).hexdigest() + f"-{image.width}x{image.height}"
        return cls(image, key)

    @property
    def faces(self) -> list[Face]:
        """Faces found in the photo, best first (at most ``MAX_FACES``; doubtful extra detections left out).

        The full look (dlib upsampling once: faces down to about 40 px in the detection copy). When
        :meth:`best_face` looked quickly before, its face object takes the place of the same face here (same
        landmarks, so the same aligned crop and cached codes)."""
        with self._lock:
            if self._faces is None:
                found = detect_faces(self.image, max_side=DETECT_SIDE)
                found = (found[:1] + [f for f in found[1:] if f.score >= MIN_EXTRA_FACE_SCORE])[:MAX_FACES]
                if self._quick is not None:
                    overlaps = [box_iou(f.box, self._quick.box) for f in found]
                    if overlaps and max(overlaps) >= QUICK_MATCH_IOU:
                        found[overlaps.index(max(overlaps))] = self._quick
                self._faces = found
            return self._faces

    @property
    def faces_known(self) -> bool:
        """Whether the full look (:attr:`faces`) has been done."""
        with self._lock:
            return self._faces is not None

    def best_face(self, what: str = "photo") -> Face:
        """The best face, as soon as possible (for a new photo's first preview): face 0 of :attr:`faces` once that
        is known; before, the best face of a quick look in a smaller copy (:data:`QUICK_DETECT_SIDE`) without dlib's
        upsampling (about 8x cheaper; it finds faces from about 80 px in that copy, i.e. an eighth of the photo's
        long side, so the best face of nearly every photo; retried at twice the size when it finds none).
        :attr:`faces` then confirms it (:meth:`best_face_confirmed`); when the quick look finds nothing, the full
        look is done."""
        with self._lock:
            if self._faces is None and self._quick is None:
                found = detect_faces(self.image, upsample=0, max_side=QUICK_DETECT_SIDE)
                self._quick = found[0] if found else None
            if self._faces is None and self._quick is not None:
                return self._quick
        return self.face(0, what)

    def best_face_confirmed(self) -> bool:
        """After the full look: whether its best face is the one :meth:`best_face` gave before it (usually)."""
        found = self.faces
        with self._lock:
            return self._quick is None or (bool(found) and found[0] is self._quick)

    def face(self, index: Any, what: str = "photo") -> Face:
        """The face at ``index`` (0 = the best); :class:`NoFaceError` / :class:`RequestError` in words."""
        found = self.faces
        if not found:
            raise NoFaceError(
                f"no face found in the {what} ({self.image.width}x{self.image.height}); use a photo with a clearly "
                "visible, roughly frontal face at least about 40 pixels wide. If it is already an aligned face "
                "crop, tick \"already aligned\""
            )
        i = read_number(index, "face index", 0, integer=True, default=0)
        if i >= len(found):
            raise RequestError(f"face number {i} was asked for, but the {what} has {len(found)} face(s) "
                               f"(numbered 0 to {len(found) - 1})")
        return found[i]

    def align(self, index: Any = 0, size: int = 256) -> AlignedFace:
        """FFHQ-align the face at ``index`` to ``size`` pixels."""
        return align_face(self.image, output_size=size, face=self.face(index))

    def thumbnails(self, size: int = 128, numbered: bool = True) -> list[Image.Image]:
        """One uncropped thumbnail per face (the face box with a margin), for a face picker; ``numbered``: each with
        its face number (best first, 0 = the best: the numbers ``face_index`` and ``faces`` take) in a corner."""
        out = []
        for number, face in enumerate(self.faces):
            left, top, right, bottom = face.box
            m = 0.25 * max(right - left, bottom - top)
            box = (max(0, int(left - m)), max(0, int(top - m)),
                   min(self.image.width, int(right + m)), min(self.image.height, int(bottom + m)))
            crop = self.image.crop(box)
            crop.thumbnail((size, size))
            out.append(_numbered(crop, number) if numbered else crop)
        return out


def _numbered(image: Image.Image, number: int) -> Image.Image:
    """``image`` with ``number`` in white on a dark box in its top left corner."""
    from PIL import ImageDraw, ImageFont

    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.height // 5))
    left, top, right, bottom = draw.textbbox((0, 0), str(number), font=font)
    pad = max(2, (bottom - top) // 4)
    draw.rectangle([0, 0, right - left + 2 * pad, bottom - top + 2 * pad], fill=(0, 0, 0))
    draw.text((pad - left, pad - top), str(number), fill=(255, 255, 255), font=font)
    return image


def _without_paths(message: str, src: Any, what: str) -> str:
    """A loader message with any file path replaced by a plain word (server paths are not for the public)."""
    if isinstance(src, (str, os.PathLike)):
        for form in (repr(str(src)), str(src), repr(os.path.basename(str(src))), os.path.basename(str(src))):
            message = message.replace(f"image file {form}", f"the {what}").replace(form, f"the {what}")
    message = message.replace("image data", f"the {what}")
    return message[:1].upper() + message[1:]


# --------------------------------------------------------------------------------------------- measures


class FaceMeasures:
    """Apparent age and identity (:mod:`sam.metrics`) as optional extras: a missing model file or any failure
    leaves them out (logged once) and never breaks the flow."""

    def __init__(self, metrics: Any = None):
        self._metrics = metrics  # a FaceMetrics, None (made on first use) or False (turned off)
        self._problems: set[str] = set()
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._metrics is None:
                try:
                    from .metrics import default_metrics

                    self._metrics = default_metrics()
                except Exception as exc:  # noqa: BLE001 - an optional extra
                    self._failed("metrics", exc)
                    self._metrics = False
            return self._metrics or None

    def _failed(self, what: str, exc: BaseException) -> None:
        msg = f"{what} not shown: {type(exc).__name__}: {exc}"
        if msg not in self._problems:
            self._problems.add(msg)
            log.warning("%s", msg)

    def _try(self, what: str, fn: Callable[[Any], Any]) -> Any:
        m = self._get()
        if m is None:
            return None
        try:
            return fn(m)
        except Exception as exc:  # noqa: BLE001 - a metric must never break the flow
            self._failed(what, exc)
            return None

    def age(self, image: Image.Image) -> float | None:
        return self._try("estimated age", lambda m: float(m.age(image)))

    def ages(self, images: Sequence[Image.Image]) -> list[float] | None:
        out = self._try("estimated age", lambda m: m.ages(list(images))) if images else None
        return None if out is None else [float(a) for a in out]

    def descriptor(self, image: Image.Image) -> Any:
        return self._try("identity", lambda m: m.descriptors([image])[0])

    def identity(self, descriptor: Any, images: Sequence[Image.Image]) -> list[Any] | None:
        if descriptor is None or not images:
            return None
        return self._try("identity", lambda m: m.identity(descriptor, list(images)))


# --------------------------------------------------------------------------------------------- the session


class FaceSession:
    """One face of one photo, through the whole flow. Cheap to make; the work is done on first need and kept.

    >>> s = FaceSession(pipe, Photo.load("me.jpg"))
    >>> s.render(70, paste=True).save("me_at_70.png")
    """

    def __init__(self, pipe: AgingPipeline, photo: Photo, face_index: Any = 0, already_aligned: bool = False,
                 measures: FaceMeasures | None = None, what: str = "photo"):
        self.pipe = pipe
        self.photo = photo
        self.already_aligned = bool(already_aligned)
        self.measures = measures or FaceMeasures(False)
        self.face_index = 0 if already_aligned else int(read_number(face_index, "face index", 0, integer=True,
                                                                    default=0))
        self.aligned: AlignedFace | None = None
        self.face: Face | None = None  # the detected face (None for an aligned input)
        if self.already_aligned:
            self.face_image = photo.image
        else:
            self.face = photo.best_face(what) if self.face_index == 0 else photo.face(self.face_index, what)
            self.aligned = align_face(photo.image, output_size=pipe.input_size, face=self.face)
            self.face_image = self.aligned.image
        self._encoded: EncodedFace | None = None
        self._lock = threading.Lock()
        self._aged = self._described = False
        self._input_age: float | None = None
        self._descriptor: Any = None
        self._warm_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ codes

    @property
    def encoded(self) -> EncodedFace:
        """The age-independent encoder pass (run once)."""
        with self._lock:
            if self._encoded is None:
                self._encoded = self.pipe.encode(self.face_image)
            return self._encoded

    @property
    def preview_size(self) -> int:
        return min(PREVIEW_SIZE, self.pipe.output_size)

    def code(self, age: Any) -> torch.Tensor:
        """The exact W+ code at ``age`` (``1 x n_styles x style_dim``)."""
        return self.pipe.latents(self.encoded, [to_age(age)])

    def can_interpolate(self, age: Any) -> bool:
        """Whether a quick (interpolated) preview exists for ``age``: its exact code is not known yet, but codes
        on both sides are (after the key-age warm-up)."""
        a = to_age(age)
        known = self.pipe.cached_ages(self.encoded, fast=True)  # previews accept the fast (e.g. bf16) codes
        return a not in known and any(k < a for k in known) and any(k > a for k in known)

    def warm_key_ages(self, ages: Sequence[int] = KEY_AGES, should_stop: ShouldStop | None = None) -> None:
        """Compute the codes of the key ages, one at a time (each takes the model lock for one encoder pass only,
        so a request waits at most that long)."""
        for a in ages:
            check_stop(should_stop)
            if a not in self.pipe.cached_ages(self.encoded, fast=True):
                self.pipe.latents(self.encoded, [a], fast=True)  # for previews: the fast dtype (sam.precision)

    def start_warm_up(self, should_stop: ShouldStop | None = None) -> threading.Thread | None:
        """:meth:`warm_key_ages` in a background thread (at most one per session); ``None`` when nothing is left."""
        if all(a in self.pipe.cached_ages(self.encoded, fast=True) for a in KEY_AGES):
            return None
        with self._lock:
            if self._warm_thread is not None and self._warm_thread.is_alive():
                return None

            def stop() -> bool:
                return stopping.is_set() or (should_stop is not None and should_stop())

            def run() -> None:
                try:
                    with priority(BACKGROUND):  # after every request and video frame (sam.scheduler)
                        self.warm_key_ages(should_stop=stop)
                except JobCancelledError:
                    pass
                except Exception as exc:  # noqa: BLE001 - a background nicety: log, never disturb the page
                    log.warning("key-age codes not precomputed: %s: %s", type(exc).__name__, exc)
                finally:
                    _BACKGROUND.discard(threading.current_thread())

            self._warm_thread = threading.Thread(target=run, name="sam-key-ages", daemon=True)
            _BACKGROUND.add(self._warm_thread)
            self._warm_thread.start()
            return self._warm_thread

    # ------------------------------------------------------------------------------------------ images

    def finish(self, face: Image.Image, paste: bool = False) -> Image.Image:
        """The rendered face, or with ``paste`` the whole photo with the face put back (aligned inputs: the face)."""
        if paste and self.aligned is not None:
            return paste_back(self.photo.image, self.aligned, face)
        return face

    def render(self, age: Any, size: int | None = None, fast: bool = False, paste: bool = False) -> Image.Image:
        """The face at ``age`` (exact code), ``size`` px (default: the model's full resolution)."""
        return self.renders([age], size, fast, paste)[0]

    def renders(self, ages: Sequence[Any], size: int | None = None, fast: bool = False, paste: bool = False,
                progress: Progress | None = None, should_stop: ShouldStop | None = None) -> list[Image.Image]:
        """The face at each age (codes encoded in batches, images decoded as the device prefers). ``fast``: the
        generator stopped at ``size`` and the fast dtype of the pipeline's precision (previews, the strip)."""
        codes = self.pipe.latents(self.encoded, [to_age(a) for a in ages], should_stop=should_stop, fast=fast)
        images = to_pil(self.pipe.render(codes, size=size, fast=fast, progress=progress, should_stop=should_stop))
        return [self.finish(im, paste) for im in images]

    def preview(self, age: Any, paste: bool = False) -> Image.Image:
        """The exact slider preview: ``min(256, output)`` px, the generator stopped early."""
        return self.render(age, self.preview_size, fast=True, paste=paste)

    def first_preview(self, age: Any, paste: bool = False) -> Image.Image:
        """The quickest look at a new face: the slider preview with the frozen encoder in the fast dtype too
        (:meth:`AgingPipeline.first_look`, not cached) while the exact encoding is not done yet; call
        :meth:`preview` after it for the preview every later slider move is consistent with."""
        with self._lock:
            done = self._encoded is not None
        if done or self.pipe.precision.fast == self.pipe.precision.exact:
            return self.preview(age, paste)
        code = self.pipe.first_look(self.face_image, [to_age(age)])
        return self.finish(to_pil(self.pipe.render(code, size=self.preview_size, fast=True))[0], paste)

    @property
    def has_exact_encoding(self) -> bool:
        """Whether the frozen encoder's float32 code is known (after :attr:`encoded`)."""
        with self._lock:
            return self._encoded is not None

    def quick_preview(self, age: Any, paste: bool = False) -> Image.Image | None:
        """An interpolated preview (the generator only, no encoder pass) when :meth:`can_interpolate`, else None."""
        if not self.can_interpolate(age):
            return None
        code, _ = self.pipe.preview_latent(self.encoded, to_age(age), fast=True)
        return self.finish(to_pil(self.pipe.render(code, size=self.preview_size, fast=True))[0], paste)

    def preview_code(self, age: Any, quick: bool = False, first: bool = False) -> torch.Tensor | None:
        """The W+ code (``1 x n_styles x style_dim``) a preview of ``age`` is rendered from, for a caller that renders
        several faces together (:class:`GroupSession`). ``quick``: a known or interpolated code only (no encoder
        pass; ``None`` when there is none yet). ``first``: while the exact encoding is not done, the quick fast-dtype
        encoding of :meth:`first_preview`. Otherwise the exact preview code of :meth:`preview`."""
        a = to_age(age)
        if quick:
            if not self.has_exact_encoding:
                return None
            known = self.pipe.cached_ages(self.encoded, fast=True)
            if a in known or self.can_interpolate(a):
                return self.pipe.preview_latent(self.encoded, a, fast=True)[0]
            return None
        if first and not self.has_exact_encoding and self.pipe.precision.fast != self.pipe.precision.exact:
            return self.pipe.first_look(self.face_image, [a])
        return self.pipe.latents(self.encoded, [a], fast=True)

    def strip(self, ages: Sequence[Any], progress: Progress | None = None,
              should_stop: ShouldStop | None = None) -> list[tuple[int, Image.Image]]:
        """Previews at several ages (sorted, each once): ``[(age, image), ...]``."""
        wanted = sorted({to_age(a) for a in ages or []})
        if not wanted:
            raise RequestError("choose at least one age for the strip")
        images = self.renders(wanted, self.preview_size, fast=True, progress=progress, should_stop=should_stop)
        return list(zip(wanted, images))

    def mix(self, reference: FaceSession, age: Any, latent_mask: Any = "fine", alpha: Any = 1.0,
            size: int | None = None, fast: bool = False) -> tuple[Image.Image, Image.Image]:
        """``(mixed, unmixed)`` at ``age``: the W+ rows of ``latent_mask`` (a preset, ``"8-17"``, a list) taken from
        the reference face, blended with ``alpha`` (0..1)."""
        a = read_number(alpha, "mix strength", 0.0, 1.0, default=1.0)
        layers = parse_latent_mask(latent_mask, self.pipe.n_styles)
        mixed = self.pipe.mix_codes(self.encoded, to_age(age), reference.encoded, layers, a)
        images = to_pil(self.pipe.render(torch.cat([mixed, self.code(age)]), size=size, fast=fast))
        return images[0], images[1]

    def lifespan(self, mp4_path: str | os.PathLike, start_age: Any = 0, end_age: Any = 100,
                 frames_between: Any = 10, fps: Any = 20, size: Any = PREVIEW_SIZE, boomerang: bool = False,
                 label: bool = False, gif_path: str | os.PathLike | None = None, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None, keys: Sequence[Any] | None = None) -> LifespanResult:
        """The lifespan video from ``start_age`` to ``end_age`` (key ages every 10 years, or the given ``keys``;
        ``frames_between`` interpolated frames between them). A cancelled job leaves no file behind."""
        keys = [to_age(a) for a in keys] if keys else key_ages(start_age, end_age)
        n_between = read_number(frames_between, "frames between key ages", 0, MAX_FRAMES_BETWEEN, integer=True,
                                default=10)
        rate = read_number(fps, "fps", 1, 60, default=20)
        side = read_size(size, self.pipe.output_size, PREVIEW_SIZE)
        return make_lifespan(self.pipe, self.encoded, Path(mp4_path), key_ages=keys, frames_per_step=int(n_between),
                             fps=rate, size=side, boomerang=bool(boomerang), label=bool(label), gif_path=gif_path,
                             progress=progress, should_stop=should_stop)

    # ------------------------------------------------------------------------------------------ measures

    @property
    def input_age(self) -> float | None:
        """The input face's estimated apparent age (``None`` when the age model is unavailable)."""
        with self._lock:
            if not self._aged:
                self._input_age = self.measures.age(self.face_image)
                self._aged = True
            return self._input_age

    def _input_descriptor(self) -> Any:
        with self._lock:
            if not self._described:
                self._descriptor = self.measures.descriptor(self.face_image)
                self._described = True
            return self._descriptor

    def start_age(self, fallback: Any) -> int:
        """Where an age slider should start: the face's estimated age when known, else ``fallback``."""
        age = self.input_age
        return to_age(min(100.0, max(0.0, age))) if age is not None else to_age(fallback)

    def describe(self, images: Sequence[Image.Image]) -> list[str]:
        """One line per result image: its estimated age and identity similarity to the input ('' when none)."""
        ages = self.measures.ages(images)
        scores = self.measures.identity(self._input_descriptor(), images)
        lines = []
        for i in range(len(images)):
            parts = []
            if ages is not None:
                parts.append(f"reads as **{ages[i]:.0f}**")
            if scores is not None:
                sc = scores[i]
                parts.append(f"identity **{sc.similarity:.2f}** ({'same' if sc.same_person else 'different'} person)")
            lines.append(" · ".join(parts))
        return lines

    def caption(self, age: Any, image: Image.Image) -> str:
        """``Age N: reads as .. · identity ..`` for one result ('' when no measure is available)."""
        line = self.describe([image])[0]
        return f"Age {to_age(age)}: {line}" if line else ""

    def input_caption(self) -> str:
        age = self.input_age
        return "" if age is None else f"Estimated age of this face: **{age:.0f}**"


# --------------------------------------------------------------------------------------------- several faces


class GroupSession:
    """Several faces of one photo aged together, each to its own age, pasted back into the one photo
    (:func:`sam.align.paste_faces`: feathered, each face's colour matched, close faces handed over smoothly).

    >>> g = GroupSession(photo, [FaceSession(pipe, photo, i) for i in range(len(photo.faces))])
    >>> g.render(g.ages(70)).save("everyone_at_70.png")
    """

    def __init__(self, photo: Photo, sessions: Sequence[FaceSession]):
        if not sessions:
            raise RequestError("choose at least one face")
        if any(s.aligned is None for s in sessions):
            raise RequestError("an aligned face crop has one face: several faces need a photo (untick \"already "
                               "aligned\")")
        self.photo = photo
        self.sessions = list(sessions)
        self.pipe = self.sessions[0].pipe

    @property
    def faces(self) -> list[int]:
        """The face numbers (best first numbering of :attr:`Photo.faces`), in the order of :attr:`sessions`."""
        return [s.face_index for s in self.sessions]

    @property
    def preview_size(self) -> int:
        return min(PREVIEW_SIZE, self.pipe.output_size)

    def ages(self, target_age: Any, ages: Any = None) -> list[int]:
        """One age per face (:func:`read_face_ages`)."""
        return read_face_ages(ages, self.faces, target_age)

    def _ages(self, ages: Sequence[Any]) -> list[int]:
        if len(ages) != len(self.sessions):
            raise RequestError(f"{len(ages)} ages for {len(self.sessions)} faces")
        return [to_age(a) for a in ages]

    def paste(self, faces: Sequence[Image.Image], base: Image.Image | None = None) -> Image.Image:
        """The photo (or ``base``, the photo scaled) with each face of :attr:`sessions` replaced by ``faces``."""
        base = base if base is not None else self.photo.image
        sx, sy = base.width / self.photo.image.width, base.height / self.photo.image.height
        pairs = []
        for s, face in zip(self.sessions, faces, strict=True):
            aligned = s.aligned
            if (sx, sy) != (1.0, 1.0):
                matrix = np.diag([sx, sy]) @ aligned.matrix
                aligned = replace(aligned, matrix=matrix, source_size=base.size)
            pairs.append((aligned, face))
        return paste_faces(base, pairs, color_match=True)

    def preview(self, ages: Sequence[Any], quick: bool = False, first: bool = False) -> Image.Image | None:
        """The whole photo with every face at its age, from slider previews (``min(256, output)`` px, the generator
        stopped early, the fast dtype), the faces rendered in one batch. ``quick``: from known or interpolated codes
        only (no encoder pass), ``None`` while some face has none; ``first``: see :meth:`FaceSession.preview_code`."""
        wanted = self._ages(ages)
        codes = [s.preview_code(a, quick=quick, first=first) for s, a in zip(self.sessions, wanted)]
        if any(c is None for c in codes):
            return None
        images = to_pil(self.pipe.render(torch.cat(codes), size=self.preview_size, fast=True))
        return self.paste(images)

    def render(self, ages: Sequence[Any], size: int | None = None, progress: Progress | None = None,
               should_stop: ShouldStop | None = None) -> Image.Image:
        """The whole photo with every face at its age, each rendered from its exact code at ``size`` px (default:
        the model's full resolution) and pasted back."""
        wanted = self._ages(ages)
        codes = []
        for s, a in zip(self.sessions, wanted):
            check_stop(should_stop)
            codes.append(s.code(a))
        images = to_pil(self.pipe.render(torch.cat(codes), size=size, progress=progress, should_stop=should_stop))
        return self.paste(images)

    def start_warm_up(self, should_stop: ShouldStop | None = None) -> None:
        """The key-age codes of every face, in the background (interpolated previews for each)."""
        for s in self.sessions:
            s.start_warm_up(should_stop)

    def lifespan(self, mp4_path: str | os.PathLike, start_age: Any = 0, end_age: Any = 100,
                 frames_between: Any = 10, fps: Any = 20, size: Any = PREVIEW_SIZE, boomerang: bool = False,
                 label: bool = False, gif_path: str | os.PathLike | None = None, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None, keys: Sequence[Any] | None = None,
                 max_side: int = GROUP_VIDEO_SIDE) -> LifespanResult:
        """The group lifespan video: the whole photo (long side at most ``max_side``) with every face aging together
        from ``start_age`` to ``end_age`` (codes interpolated between key ages as in :meth:`FaceSession.lifespan`;
        faces rendered at ``size`` px). A cancelled job leaves no file behind."""
        keys = [to_age(a) for a in keys] if keys else key_ages(start_age, end_age)
        n_between = int(read_number(frames_between, "frames between key ages", 0, MAX_FRAMES_BETWEEN, integer=True,
                                    default=10))
        rate = read_number(fps, "fps", 1, 60, default=20)
        side = read_size(size, self.pipe.output_size, PREVIEW_SIZE)
        per_face = []
        for s in self.sessions:
            check_stop(should_stop)
            per_face.append(self.pipe.latents(s.encoded, keys, should_stop=should_stop, fast=True))
        codes = [interpolate_codes(c, keys, n_between)[0] for c in per_face]
        ages = interpolate_codes(per_face[0], keys, n_between)[1]
        base = _video_frame(self.photo.image, max_side)
        total = len(ages)

        def frames() -> Iterator[Image.Image]:
            for j in range(total):
                check_stop(should_stop)
                faces = to_pil(self.pipe.render(torch.stack([c[j] for c in codes]), size=side, fast=True,
                                                should_stop=should_stop))
                frame = self.paste(faces, base)
                if label:
                    frame = draw_age_label(frame, ages[j])
                if progress is not None:
                    progress(j + 1, total)
                yield frame

        return write_lifespan(frames(), ages, mp4_path, rate, bool(boomerang), gif_path, should_stop)


def _video_frame(image: Image.Image, max_side: int) -> Image.Image:
    """The photo as a video frame: long side at most ``max_side``, both sides multiples of 16 (H.264 macroblocks)."""
    k = min(1.0, max_side / max(image.size))
    w, h = (max(16, int(image.width * k) // 16 * 16), max(16, int(image.height * k) // 16 * 16))
    return image if (w, h) == image.size else image.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)


# --------------------------------------------------------------------------------------------- the cache


class SessionCache:
    """Recently used photos and face sessions (LRU, ``size`` entries each), shared by the app's requests."""

    def __init__(self, pipe: AgingPipeline | None, size: int = 8, measures: FaceMeasures | None = None):
        self.pipe = pipe
        self.size = size
        self.measures = measures or FaceMeasures()
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._sessions: OrderedDict[tuple[str, bool, int], FaceSession] = OrderedDict()
        self._lock = threading.Lock()

    def photo(self, src: Any, what: str = "photo") -> Photo:
        """The photo, decoded once: a file seen before (same bytes) is found by a hash of its bytes, without
        decoding it again (every slider move names the same upload)."""
        file_key = _file_key(src)
        with self._lock:
            cached = self._photos.get(file_key) if file_key else None
            if cached is not None:
                self._photos.move_to_end(file_key)
                return cached
        loaded = Photo.load(src, what)
        with self._lock:
            photo = self._photos.get(loaded.key, loaded)  # the same picture from another file or source
            for key in {loaded.key, file_key} - {None}:
                self._photos[key] = photo
                self._photos.move_to_end(key)
            _trim(self._photos, 2 * self.size)
            return photo

    def session(self, src: Any, already_aligned: Any = False, face_index: Any = 0,
                what: str = "photo") -> FaceSession:
        """The session of a photo's face (made once: alignment and encoding are not repeated)."""
        if self.pipe is None:
            raise RuntimeError("the model is not loaded")
        aligned = read_flag(already_aligned, "already_aligned")
        idx = 0 if aligned else int(read_number(face_index, "face index", 0, integer=True, default=0))
        photo = self.photo(src, what)
        key = (photo.key, aligned, idx)
        with self._lock:
            cached = self._sessions.get(key)
            if cached is not None and idx == 0 and cached.face is not None and photo.faces_known \
                    and cached.face is not photo.face(0, what):
                cached = None  # made from the quick look, whose best face the full look did not confirm
                del self._sessions[key]
            if cached is not None:
                self._sessions.move_to_end(key)
                return cached
        made = FaceSession(self.pipe, photo, idx, aligned, self.measures, what)
        with self._lock:
            made = self._sessions.setdefault(key, made)
            self._sessions.move_to_end(key)
            _trim(self._sessions, self.size)
            return made


    def group(self, src: Any, faces: Any, face_index: Any = 0, what: str = "photo") -> GroupSession:
        """The faces ``faces`` (:func:`read_faces`; ``"best"``: the one face ``face_index``) of a photo, aged together;
        each face's session comes from the cache."""
        photo = self.photo(src, what)
        photo.face(0, what)  # NoFaceError in words when there is none
        chosen = read_faces(faces, len(photo.faces))
        if chosen is None:
            chosen = [int(read_number(face_index, "face index", 0, integer=True, default=0))]
            photo.face(chosen[0], what)
        return GroupSession(photo, [self.session(src, False, i, what) for i in chosen])


def _file_key(src: Any) -> str | None:
    """A hash of a file's bytes (cheap next to decoding a large photo); ``None`` for anything but a readable file."""
    if not isinstance(src, (str, os.PathLike)):
        return None
    try:
        with open(src, "rb") as fh:
            return "file-" + hashlib.sha1(fh.read()).hexdigest()
    except OSError:
        return None  # Photo.load says what is wrong


def _trim(cache: OrderedDict, size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)
