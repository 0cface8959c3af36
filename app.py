"""Gradio app: drop a photo, move the age slider, see the same person at that age.

Panels: the age slider (fast preview on release, full-resolution download, paste back into the photo, a strip of
ages side by side), reference style mixing, and lifespan video export. Named API endpoints for ``gradio_client``:
``/age``, ``/mix`` and ``/lifespan`` (see the README, "The app"). Thin: every model, alignment and video step is a
call into ``sam/``; this file only wires the page, caches per-photo work and turns errors into readable messages.

    python app.py [--checkpoint weights/sam_ffhq_aging.pt] [--host 0.0.0.0] [--port 7860] [--device cpu]
                  [--share] [--no-download]

Host and port default to ``$GRADIO_SERVER_NAME`` / ``$GRADIO_SERVER_PORT`` (else 127.0.0.1:7860). When the
checkpoint is missing, it is downloaded at start (see ``sam/weights.py``); offline, the page still loads and says
how to provide it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sam.align import AlignedFace, Face, NoFaceError, align_face, detect_faces, paste_back
from sam.image_io import ImageLoadError, load_image
from sam.metrics import default_metrics
from sam.mixing import LAYER_PRESETS as MIXING_PRESETS
from sam.mixing import layer_groups
from sam.mixing import parse_latent_mask as parse_layers
from sam.model import CheckpointError
from sam.pipeline import AgingPipeline, EncodedFace, resolve_checkpoint, to_pil
from sam.precision import PRECISIONS
from sam.video import key_ages, make_lifespan
from sam.weights import WeightsUnavailableError, ensure_checkpoint, how_to_provide

log = logging.getLogger("sam.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (ROOT / "assets").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
PREVIEW_SIZE = 256
STRIP_AGES = list(range(0, 101, 10))
VIDEO_SIZES = [128, 256, 512, 1024]
MAX_FRAMES_BETWEEN = 60
CACHE_ENTRIES = 8
MIN_EXTRA_FACE_SCORE = 0.3  # as sam.align.align_all_faces: the best face is always kept
MAX_FACES = 12
OUTPUT_MAX_AGE_S = 3600
DUPLICATE_WINDOW_S = 2.0
MAX_UPLOAD = "30mb"
KEY_AGES = tuple(range(0, 101, 10))  # codes computed in the background after a photo is shown
MODEL_QUEUE = "model"  # one concurrency group for every model call: parallel users wait instead of running out of RAM

# The mixing presets of sam.mixing, plus a UI-only choice for typed-in layers.
LAYER_PRESETS = {**MIXING_PRESETS, "custom layers": "custom"}


# --------------------------------------------------------------------------------------------------- helpers


def _readable(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, FileNotFoundError) and exc.filename and not text.startswith("["):
        return text
    return text or type(exc).__name__


def _as_page_error(exc: BaseException, where: str) -> gr.Error:
    """The readable message for a failure (never a traceback in the page)."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, NoFaceError):
        return gr.Error(f"{_readable(exc)}. If the photo is already an aligned face crop, tick \"already aligned\".")
    if isinstance(exc, (ImageLoadError, CheckpointError, ValueError, OSError)):
        return gr.Error(_readable(exc))
    log.error("unexpected error in %s", where, exc_info=exc)  # anything else: log it, tell the user, keep serving
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {str(exc)[:200]}). Please try again.")


def friendly_errors(fn: Callable) -> Callable:
    """Turn every failure into a ``gr.Error`` with a readable message; works for streaming (generator) callbacks."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - mapped to a page message
                raise _as_page_error(exc, fn.__name__) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to a page message
            raise _as_page_error(exc, fn.__name__) from None

    return wrapper


def _progress_cb(progress: gr.Progress | None, desc: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None

    def cb(done: int, total: int) -> None:
        progress((done, total), desc=desc)

    return cb


def _thumbnail(img: Image.Image, face: Face, size: int = 128) -> Image.Image:
    left, top, right, bottom = face.box
    m = 0.25 * max(right - left, bottom - top)
    box = (max(0, int(left - m)), max(0, int(top - m)),
           min(img.width, int(right + m)), min(img.height, int(bottom + m)))
    crop = img.crop(box)
    crop.thumbnail((size, size))
    return crop


@dataclass
class Prepared:
    """The age-independent work for one photo and face: the alignment and the encoder pass."""

    original: Image.Image
    aligned: AlignedFace | None  # None when the photo was used as an aligned face
    face_image: Image.Image
    encoded: EncodedFace
    measured: bool = False  # input_age / descriptor computed (each None when its metric is unavailable)
    input_age: float | None = None
    descriptor: Any = None


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


# --------------------------------------------------------------------------------------------------- the app


class AgeApp:
    """The endpoint functions, over one pipeline, with per-photo caches (alignment + encoding)."""

    def __init__(self, pipe: AgingPipeline | None, problem: str = "", workdir: str | os.PathLike | None = None):
        self.pipe = pipe
        self.problem = problem
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sam-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._photos = _LRU(CACHE_ENTRIES)  # content hash -> (image, faces or None)
        self._prepared = _LRU(CACHE_ENTRIES)  # (hash, aligned, face index) -> Prepared
        self._last_photo: OrderedDict[str, tuple[tuple[str, bool], float]] = OrderedDict()  # session -> last photo
        self.metrics: Any = None  # sam.metrics.FaceMetrics, made on first use; False turns the metrics off
        self._metric_problems: set[str] = set()
        self._warming: set[int] = set()  # ids of encoded faces whose key-age codes are being computed

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, device: str | None = None,
             problem: str | None = None, int8_style_heads: bool = False, precision: str = "auto") -> AgeApp:
        path = resolve_checkpoint(checkpoint)
        if problem:
            return cls(None, f"The model is not loaded. {problem}")
        try:
            pipe = AgingPipeline.from_pretrained(path, device=device, int8_style_heads=int8_style_heads,
                                                 precision=precision)
            log.info("precision: %s (%s)", pipe.precision.name, pipe.precision.reason)
        except FileNotFoundError:
            return cls(None, f"The model is not loaded: no checkpoint at {path}. {how_to_provide(path)}")
        except CheckpointError as exc:
            return cls(None, f"The model is not loaded: {exc}. {how_to_provide(path)}")
        except ValueError as exc:  # e.g. int8 style heads asked for on a GPU
            return cls(None, f"The model is not loaded: {exc}.")
        return cls(pipe)

    # ------------------------------------------------------------------------------------------ sizes, model

    def _model(self) -> AgingPipeline:
        if self.pipe is None:
            raise gr.Error(self.problem, duration=None)
        return self.pipe

    @property
    def preview_size(self) -> int:
        return min(PREVIEW_SIZE, self._model().output_size)

    def _size(self, size: Any, default: int | None = None) -> int:
        full = self._model().output_size
        if size is None or size == "":
            return default or full
        try:
            s = int(float(size))
        except (TypeError, ValueError):
            raise ValueError(f"size must be a number of pixels, got {size!r}") from None
        if s < 8:
            raise ValueError(f"size must be at least 8 pixels, got {s}")
        return min(s, full)

    def _new_path(self, suffix: str) -> Path:
        cutoff = time.time() - OUTPUT_MAX_AGE_S  # gradio serves copies from its own cache; drop our old files
        for old in self.workdir.glob("sam-*"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except OSError:
                pass
        return self.workdir / f"sam-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}{suffix}"

    # ------------------------------------------------------------------------------------------ per-photo work

    @staticmethod
    def _source(image: Any) -> Any:
        if image is None or (isinstance(image, str) and not image.strip()):
            raise gr.Error("Add a photo first (upload, webcam, paste, or pick an example).")
        if isinstance(image, dict):  # FileData-like from some clients
            image = image.get("path") or image.get("url")
        return image

    def photo(self, image: Any) -> tuple[str, Image.Image]:
        """Load a photo safely; return its content hash and RGB image (cached)."""
        key, entry = self._photo_entry(image)
        return key, entry[0]

    def _photo_entry(self, image: Any) -> tuple[str, list]:
        src = self._source(image)
        if isinstance(src, (str, os.PathLike)):
            try:
                data = Path(src).read_bytes()
            except OSError as exc:
                raise ImageLoadError(f"cannot read the photo: {exc.strerror or exc}") from None
            key = hashlib.sha1(data).hexdigest()
        else:
            img = load_image(src)
            key = hashlib.sha1(img.tobytes()).hexdigest() + f"{img.size}"
            data = img
        with self._lock:
            return key, self._photos.get_or(key, lambda: [load_image(data), None])

    def faces(self, image: Any) -> tuple[str, Image.Image, list[Face]]:
        """The photo's faces, best first (cached with the photo)."""
        key, entry = self._photo_entry(image)
        img = entry[0]
        with self._lock:
            if entry[1] is None:
                found = detect_faces(img)  # best first; doubtful extra detections (a patch on a shirt) dropped,
                entry[1] = (found[:1] + [f for f in found[1:] if f.score >= MIN_EXTRA_FACE_SCORE])[:MAX_FACES]
        return key, img, entry[1]

    def prepare(self, image: Any, already_aligned: bool = False, face_index: Any = 0,
                what: str = "photo") -> Prepared:
        """Align (unless already aligned) and encode once per photo and face; cached."""
        pipe = self._model()
        idx = int(face_index or 0)
        if already_aligned:
            key, img = self.photo(image)
        else:
            key, img, found = self.faces(image)
            if not found:
                raise NoFaceError(f"no face found in the {what} ({img.width}x{img.height}); use a photo with a "
                                  "clearly visible, roughly frontal face at least about 40 pixels wide")
            if not 0 <= idx < len(found):
                raise ValueError(f"face {idx + 1} was asked for, but the {what} has {len(found)} face(s)")

        def make() -> Prepared:
            if already_aligned:
                return Prepared(img, None, img, pipe.encode(img))
            aligned = align_face(img, output_size=pipe.input_size, face=found[idx])
            return Prepared(img, aligned, aligned.image, pipe.encode(aligned.image))

        with self._lock:
            return self._prepared.get_or((key, bool(already_aligned), idx), make)

    def _finish(self, prep: Prepared, out: Image.Image, paste: bool) -> Image.Image:
        if paste and prep.aligned is not None:
            return paste_back(prep.original, prep.aligned, out)
        return out

    # ------------------------------------------------------------------------------------------ age / identity
    # Apparent age and identity (sam.metrics) are extras: a missing model file or any failure leaves them out (logged
    # once) and everything else works as before.

    def _face_metrics(self) -> Any:
        if self.metrics is None:
            try:
                self.metrics = default_metrics()
            except Exception as exc:  # noqa: BLE001
                self._metric_failed("metrics", exc)
                self.metrics = False
        return self.metrics or None

    def _metric_failed(self, what: str, exc: BaseException) -> None:
        msg = f"{what} not shown: {type(exc).__name__}: {exc}"
        if msg not in self._metric_problems:
            self._metric_problems.add(msg)
            log.warning("%s", msg)

    def _try(self, what: str, fn: Callable[[Any], Any]) -> Any:
        m = self._face_metrics()
        if m is None:
            return None
        try:
            return fn(m)
        except Exception as exc:  # noqa: BLE001 - a metric must never break the page
            self._metric_failed(what, exc)
            return None

    def measure_input(self, prep: Prepared) -> float | None:
        """Estimated age of the input face (cached with the prepared face; ``None`` when unavailable)."""
        if not prep.measured:
            face = prep.face_image
            prep.input_age = self._try("estimated age", lambda m: float(m.age(face)))
            prep.descriptor = self._try("identity", lambda m: m.descriptors([face])[0])
            prep.measured = True
        return prep.input_age

    def measure_results(self, prep: Prepared, images: list[Image.Image]) -> list[str]:
        """One short line per result: its estimated age and its identity similarity to the input ('' if none)."""
        self.measure_input(prep)
        ages = self._try("estimated age", lambda m: m.ages(images)) if images else None
        scores = None
        if prep.descriptor is not None and images:
            scores = self._try("identity", lambda m: m.identity(prep.descriptor, list(images)))
        lines = []
        for i in range(len(images)):
            parts = []
            if ages is not None:
                parts.append(f"reads as **{float(ages[i]):.0f}**")
            if scores is not None:
                sc = scores[i]
                same = "same person" if sc.same_person else "different person"
                parts.append(f"identity **{sc.similarity:.2f}** ({same})")
            lines.append(" · ".join(parts))
        return lines

    def input_text(self, prep: Prepared) -> str:
        age = self.measure_input(prep)
        return "" if age is None else f"Estimated age of this face: **{age:.0f}**"

    def result_text(self, prep: Prepared, image: Image.Image, target_age: float) -> str:
        line = self.measure_results(prep, [image])[0]
        return f"Age {int(round(float(target_age)))}: {line}" if line else ""

    # ------------------------------------------------------------------------------------------ endpoints

    def age(self, image: Any, target_age: float, size: Any = None, already_aligned: bool = False,
            face_index: Any = 0, paste: bool = False, fast: bool = False) -> Image.Image:
        """One aged image (full resolution unless ``size``)."""
        prep = self.prepare(image, already_aligned, face_index)
        pipe = self._model()
        out = pipe(prep.encoded, [target_age], size=self._size(size), fast=fast)[0]
        return self._finish(prep, out, paste)

    def preview(self, image: Any, target_age: float, already_aligned: bool = False, face_index: Any = 0,
                paste: bool = False) -> Image.Image:
        """The fast slider preview (``min(256, output)`` px, generator stopped early)."""
        return self.age(image, target_age, self.preview_size, already_aligned, face_index, paste, fast=True)

    def strip(self, image: Any, ages: Any, already_aligned: bool = False, face_index: Any = 0,
              progress: gr.Progress | None = None) -> list[tuple[Image.Image, str]]:
        ages_list = sorted({int(float(a)) for a in (ages or [])})
        if not ages_list:
            raise ValueError("choose at least one age for the strip")
        prep = self.prepare(image, already_aligned, face_index)
        imgs = self._model()(prep.encoded, ages_list, size=self.preview_size, fast=True,
                             progress=_progress_cb(progress, "rendering ages"))
        return [(im, f"age {a}") for im, a in zip(imgs, ages_list)]

    def mix(self, image: Any, reference: Any, target_age: float, latent_mask: Any = "fine", alpha: Any = 1.0,
            size: Any = None, already_aligned: bool = False, face_index: Any = 0,
            reference_aligned: bool = False, fast: bool = False) -> tuple[Image.Image, Image.Image]:
        """(mixed, unmixed) at ``target_age``, W+ rows ``latent_mask`` taken from the reference face."""
        pipe = self._model()
        if reference is None or (isinstance(reference, str) and not reference.strip()):
            raise gr.Error("Add a reference photo for style mixing.")
        a = float(alpha if alpha is not None else 1.0)
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"mix strength must be between 0 and 1, got {alpha}")
        layers = parse_layers(latent_mask, pipe.model.config.n_styles)
        prep = self.prepare(image, already_aligned, face_index)
        ref = self.prepare(reference, reference_aligned, 0, what="reference photo")
        s = self._size(size)
        mixed = pipe.mix(prep.encoded, ref.encoded, target_age, latent_mask=layers, alpha=a, size=s, fast=fast)
        plain = pipe(prep.encoded, [target_age], size=s, fast=fast)[0]
        return mixed, plain

    def lifespan(self, image: Any, start_age: float = 0, end_age: float = 100, frames_between: Any = 10,
                 fps: Any = 20, size: Any = 256, boomerang: bool = False, gif: bool = False, label: bool = False,
                 already_aligned: bool = False, face_index: Any = 0,
                 progress: gr.Progress | None = None) -> tuple[str, str | None]:
        """Render the lifespan MP4 (and GIF); return their paths."""
        pipe = self._model()
        keys = key_ages(start_age, end_age)
        n_between = int(float(frames_between))
        if not 0 <= n_between <= MAX_FRAMES_BETWEEN:
            raise ValueError(f"frames between key ages must be between 0 and {MAX_FRAMES_BETWEEN}, got {n_between}")
        rate = float(fps)
        if not 1 <= rate <= 60:
            raise ValueError(f"fps must be between 1 and 60, got {fps}")
        prep = self.prepare(image, already_aligned, face_index)
        mp4 = self._new_path(".mp4")
        gif_path = mp4.with_suffix(".gif") if gif else None
        res = make_lifespan(pipe, prep.encoded, mp4, key_ages=keys, frames_per_step=n_between, fps=rate,
                            size=self._size(size, PREVIEW_SIZE), boomerang=bool(boomerang), label=bool(label),
                            gif_path=gif_path, progress=_progress_cb(progress, "rendering frames"))
        return str(res.mp4), (str(res.gif) if res.gif else None)

    # ------------------------------------------------------------------------------------------ UI callbacks

    def ui_photo(self, image: Any, already_aligned: bool, target_age: float, paste: bool,
                 request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
        """A new photo (or toggle): detect faces, show the picker if several, align, encode, preview.

        The browser sends ``change`` twice when one photo replaces another; the repeat is skipped (per session).
        """
        session = getattr(request, "session_hash", None)
        sig = (str(image), bool(already_aligned))
        if session is not None:
            with self._lock:
                last = self._last_photo.get(session)
            if last is not None and last[0] == sig and time.monotonic() - last[1] < DUPLICATE_WINDOW_S:
                return (gr.skip(),) * 7
        try:
            return self._ui_photo(image, already_aligned, target_age, paste, progress)
        finally:
            if session is not None:
                with self._lock:
                    self._last_photo[session] = (sig, time.monotonic())
                    while len(self._last_photo) > 1024:
                        self._last_photo.popitem(last=False)

    def _ui_photo(self, image: Any, already_aligned: bool, target_age: float, paste: bool,
                  progress: gr.Progress) -> tuple:
        if image is None:
            return gr.update(value=None, visible=False), 0, None, None, gr.skip(), "", ""
        gallery = gr.update(value=None, visible=False)
        if not already_aligned:
            progress(0.1, desc="finding faces")
            _, img, found = self.faces(image)
            if len(found) > 1:
                gallery = gr.update(value=[(_thumbnail(img, f), f"face {i + 1}") for i, f in enumerate(found)],
                                    visible=True, selected_index=0)
                gr.Info(f"{len(found)} faces found; showing the largest. Click a face to switch.")
        if self.pipe is None:
            gr.Warning(self.problem)
            return gallery, 0, None, None, gr.skip(), "", ""
        progress(0.4, desc="aligning and encoding")
        return (gallery, 0, *self._show_face(image, already_aligned, 0, target_age, paste, progress))

    def _show_face(self, image: Any, already_aligned: bool, idx: int, target_age: float, paste: bool,
                   progress: gr.Progress | None = None) -> tuple:
        """(aligned face, preview, slider, input age text, result text): the slider starts at the face's
        estimated age when it is known."""
        prep = self.prepare(image, already_aligned, idx)
        if progress is not None:
            progress(0.7, desc="estimating age")
        age = self.measure_input(prep)
        start = int(min(100, max(0, round(age)))) if age is not None else target_age
        if progress is not None:
            progress(0.8, desc="rendering preview")
        preview, text = self.ui_preview(image, start, already_aligned, idx, paste)
        self.warm_key_ages(prep)
        slider = gr.update(value=start) if age is not None else gr.skip()
        return prep.face_image, preview, slider, self.input_text(prep), text

    def ui_pick(self, image: Any, already_aligned: bool, target_age: float, paste: bool,
                evt: gr.SelectData) -> tuple:
        idx = int(evt.index) if evt is not None and evt.index is not None else 0
        return (idx, *self._show_face(image, already_aligned, idx, target_age, paste))

    def ui_preview(self, image: Any, target_age: float, already_aligned: bool = False, face_index: Any = 0,
                   paste: bool = False) -> tuple[Image.Image, str]:
        """The slider preview and, under it, its estimated age and identity similarity to the input."""
        prep = self.prepare(image, already_aligned, face_index)
        out = self._model()(prep.encoded, [target_age], size=self.preview_size, fast=True)[0]
        return self._finish(prep, out, paste), self.result_text(prep, out, target_age)

    def warm_key_ages(self, prep: Prepared) -> threading.Thread | None:
        """Compute the W+ codes of the key ages (every 10 years) in the background, one age at a time, so that a
        slider move between them can show an interpolated preview at once (generator only, no encoder pass)."""
        pipe = self.pipe
        enc = prep.encoded
        if pipe is None or all(a in enc.age_codes for a in KEY_AGES):
            return None
        with self._lock:
            if id(enc) in self._warming:
                return None
            self._warming.add(id(enc))

        def run() -> None:
            try:
                for a in KEY_AGES:
                    if a not in enc.age_codes:
                        pipe.latents(enc, [a])
            except Exception as exc:  # noqa: BLE001 - a background nicety: log, never disturb the page
                log.warning("key-age codes not precomputed: %s: %s", type(exc).__name__, exc)
            finally:
                with self._lock:
                    self._warming.discard(id(enc))

        thread = threading.Thread(target=run, name="sam-key-ages", daemon=True)
        thread.start()
        return thread

    def ui_preview_stream(self, image: Any, target_age: float, already_aligned: bool = False,
                          face_index: Any = 0, paste: bool = False):
        """Slider release: an interpolated preview first when the neighbouring key ages are known (fast), then
        the exact result; just the exact result otherwise."""
        prep = self.prepare(image, already_aligned, face_index)
        pipe = self._model()
        a = int(float(target_age))
        codes = prep.encoded.age_codes
        if a not in codes and any(k < a for k in codes) and any(k > a for k in codes):
            code, _ = pipe.preview_latent(prep.encoded, a)
            quick = to_pil(pipe.render(code, size=self.preview_size, fast=True))[0]
            yield self._finish(prep, quick, paste), f"Age {a}: interpolated preview; the exact result follows..."
        yield self.ui_preview(image, target_age, already_aligned, face_index, paste)

    def ui_full(self, image: Any, target_age: float, already_aligned: bool, face_index: Any, paste: bool,
                progress: gr.Progress = gr.Progress()) -> dict:
        progress(0.2, desc=f"rendering {self._model().output_size} px")
        out = self.age(image, target_age, None, already_aligned, face_index, paste)
        path = self._new_path(f"-age{int(float(target_age))}.png")
        out.save(path)
        return gr.update(value=str(path), visible=True)

    def ui_strip(self, image: Any, ages: Any, already_aligned: bool, face_index: Any,
                 progress: gr.Progress = gr.Progress()) -> list:
        return self.strip(image, ages, already_aligned, face_index, progress)

    def ui_strip_measured(self, image: Any, ages: Any, already_aligned: bool, face_index: Any,
                          progress: gr.Progress = gr.Progress()) -> tuple[list, str]:
        """The strip, and a table of each age's estimated age and identity similarity ('' when unavailable)."""
        strip = self.strip(image, ages, already_aligned, face_index, progress)
        prep = self.prepare(image, already_aligned, face_index)
        lines = self.measure_results(prep, [im for im, _ in strip])
        if not any(lines):
            return strip, ""
        rows = [f"| {label} | {line} |" for (_, label), line in zip(strip, lines, strict=True)]
        head = f"{self.input_text(prep)}\n\n" if prep.input_age is not None else ""
        return strip, head + "| target | measured |\n|---|---|\n" + "\n".join(rows)

    def ui_mix(self, image: Any, reference: Any, target_age: float, preset: str, custom: str, alpha: float,
               already_aligned: bool, face_index: Any, reference_aligned: bool,
               progress: gr.Progress = gr.Progress()) -> tuple:
        progress(0.2, desc="mixing")
        spec = custom if LAYER_PRESETS.get(preset, preset) == "custom" else preset
        return self.mix(image, reference, target_age, spec, alpha, self.preview_size, already_aligned,
                        face_index, reference_aligned, fast=True)

    def ui_mix_measured(self, image: Any, reference: Any, target_age: float, preset: str, custom: str, alpha: float,
                        already_aligned: bool, face_index: Any, reference_aligned: bool,
                        progress: gr.Progress = gr.Progress()) -> tuple:
        """:meth:`ui_mix` plus each image's estimated age and identity similarity to the input ('' if unavailable)."""
        mixed, plain = self.ui_mix(image, reference, target_age, preset, custom, alpha, already_aligned, face_index,
                                   reference_aligned, progress)
        prep = self.prepare(image, already_aligned, face_index)
        lines = self.measure_results(prep, [mixed, plain])
        return mixed, plain, *(f"Age {int(round(float(target_age)))}: {t}" if t else "" for t in lines)

    def ui_lifespan(self, image: Any, start_age: float, end_age: float, frames_between: float, fps: float,
                    size: Any, boomerang: bool, gif: bool, label: bool, already_aligned: bool, face_index: Any,
                    progress: gr.Progress = gr.Progress()) -> tuple:
        mp4, gif_path = self.lifespan(image, start_age, end_age, frames_between, fps, size, boomerang, gif, label,
                                      already_aligned, face_index, progress)
        return mp4, [p for p in (mp4, gif_path) if p]

    # ------------------------------------------------------------------------------------------ API wrappers
    # (named parameters become the gradio_client parameter names)

    def api_age(self, image: str, target_age: float, size: float = 1024, already_aligned: bool = False,
                face_index: float = 0, paste_back: bool = False) -> Image.Image:
        return self.age(image, target_age, size, already_aligned, face_index, paste_back)

    def api_mix(self, image: str, reference: str, target_age: float, latent_mask: str = "fine",
                alpha: float = 1.0, size: float = 1024, already_aligned: bool = False,
                reference_aligned: bool = False) -> Image.Image:
        return self.mix(image, reference, target_age, latent_mask, alpha, size, already_aligned, 0,
                        reference_aligned)[0]

    def api_lifespan(self, image: str, start_age: float = 0, end_age: float = 100, frames_between: float = 10,
                     fps: float = 20, size: float = 256, boomerang: bool = False, already_aligned: bool = False,
                     face_index: float = 0, progress: gr.Progress = gr.Progress()) -> str:
        return self.lifespan(image, start_age, end_age, frames_between, fps, size, boomerang, False, False,
                             already_aligned, face_index, progress)[0]


# --------------------------------------------------------------------------------------------------- the page


def _wrap(fn: Callable) -> Callable:
    return friendly_errors(fn)


def build_demo(checkpoint: str | os.PathLike | None = None, device: str | None = None, *,
               problem: str | None = None, app: AgeApp | None = None, int8_style_heads: bool = False,
               precision: str = "auto") -> gr.Blocks:
    """The Blocks page. Loads the model from ``checkpoint`` (never downloads; ``main`` does that first);
    without it the page still loads and says how to provide the weights."""
    app = app or AgeApp.load(checkpoint, device, problem, int8_style_heads=int8_style_heads, precision=precision)
    n_styles = app.pipe.model.config.n_styles if app.pipe else 18
    full = app.pipe.output_size if app.pipe else 1024
    groups = layer_groups(n_styles)
    preset_labels = []
    for name, group in LAYER_PRESETS.items():
        idx = groups.get(group)
        shown = f"{name} ({idx[0]}-{idx[-1]})" if idx else name
        if group == "custom" or idx:
            preset_labels.append((shown, name))
    sizes = [s for s in VIDEO_SIZES if s <= full] or [full]
    q = {"concurrency_limit": 1, "concurrency_id": MODEL_QUEUE}
    hidden = {"api_visibility": "undocumented"}

    with gr.Blocks(title="SAM age transformation") as demo:
        demo.sam_app = app  # for tests and embedding
        gr.Markdown(
            "# SAM: see a face at any age\n"
            "Drop a photo, move the slider. Re-implementation of *Only a Matter of Style* (Alaluf et al., "
            "SIGGRAPH 2021). Photos are processed on this server and not stored beyond the session cache."
        )
        if app.problem:
            gr.Markdown(f"⚠️ **{app.problem}**", elem_id="weights-problem")
        face_index = gr.Number(value=0, precision=0, visible=False, label="face index")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Your photo",
                                 height=320)
                already = gr.Checkbox(False, label="already aligned (an FFHQ-style face crop: skip face detection)")
                picker = gr.Gallery(label="Faces found: click the one to age", visible=False, columns=4,
                                    height=150, allow_preview=False, format="png", object_fit="contain",
                                    elem_id="face-picker")
                if EXAMPLES:
                    gr.Examples(EXAMPLES, inputs=photo, label="Examples")
            with gr.Column(scale=1):
                aligned_view = gr.Image(label="Aligned face (what the model sees)", format="png", interactive=False,
                                        elem_id="aligned",
                                        height=320)
                input_info = gr.Markdown("", elem_id="input-age")
            with gr.Column(scale=1):
                result = gr.Image(label="Result (preview)", format="png", interactive=False, height=320,
                                  elem_id="result")
                result_info = gr.Markdown("", elem_id="result-metrics")
                age = gr.Slider(0, 100, value=60, step=1, label="Target age (updates when you let go)")
                paste = gr.Checkbox(False, label="paste back into my photo")
                with gr.Row():
                    full_btn = gr.Button(f"Full resolution ({full} px)")
                full_file = gr.File(label="Download", interactive=False, visible=False)
        with gr.Tab("Ages side by side"):
            strip_ages = gr.CheckboxGroup([str(a) for a in STRIP_AGES], value=[str(a) for a in STRIP_AGES],
                                          label="Ages")
            strip_btn = gr.Button("Render the strip")
            strip = gr.Gallery(label="Ages side by side", columns=6, format="png", height="auto")
            strip_info = gr.Markdown("", elem_id="strip-metrics")
        with gr.Tab("Reference style mixing"):
            gr.Markdown("Take the look of another face (colour and lighting, hair and texture, or face shape) "
                        "and apply it to the aged result.")
            with gr.Row():
                with gr.Column():
                    reference = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Reference photo",
                                         height=260)
                    ref_aligned = gr.Checkbox(False, label="reference already aligned")
                with gr.Column():
                    preset = gr.Radio(preset_labels, value=preset_labels[0][1], label="What to take from it")
                    custom = gr.Textbox(value=f"{min(8, n_styles - 1)}-{n_styles - 1}",
                                        label=f"Custom layers (0-{n_styles - 1}, e.g. 8-17 or 0,2,5)")
                    alpha = gr.Slider(0, 1, value=0.7, step=0.05, label="Mix strength")
                    mix_age = gr.Slider(0, 100, value=60, step=1, label="Target age")
                    mix_btn = gr.Button("Mix", variant="primary")
            with gr.Row():
                with gr.Column():
                    mixed_out = gr.Image(label="Mixed", format="png", interactive=False)
                    mixed_info = gr.Markdown("", elem_id="mixed-metrics")
                with gr.Column():
                    plain_out = gr.Image(label="Without mixing", format="png", interactive=False)
                    plain_info = gr.Markdown("", elem_id="plain-metrics")
        with gr.Tab("Lifespan video"):
            with gr.Row():
                with gr.Column():
                    v_start = gr.Slider(0, 100, value=0, step=1, label="From age")
                    v_end = gr.Slider(0, 100, value=100, step=1, label="To age")
                    v_between = gr.Slider(0, 30, value=8, step=1,
                                          label="Smoothness (frames between key ages, every 10 years)")
                    v_fps = gr.Slider(5, 60, value=20, step=1, label="Frames per second")
                    v_size = gr.Dropdown(sizes, value=min(256, sizes[-1]), label="Resolution (px)")
                    with gr.Row():
                        v_boom = gr.Checkbox(False, label="boomerang (forward then back)")
                        v_gif = gr.Checkbox(False, label="also make a GIF")
                        v_label = gr.Checkbox(True, label="show the age")
                    v_btn = gr.Button("Render video", variant="primary")
                with gr.Column():
                    video = gr.Video(label="Lifespan", autoplay=True, loop=True, elem_id="lifespan-video")
                    v_files = gr.File(label="Downloads", file_count="multiple", interactive=False)

        # ---- UI events (undocumented endpoints; the named API is below)
        photo_inputs = [photo, already, age, paste]
        photo_outputs = [picker, face_index, aligned_view, result, age, input_info, result_info]
        photo.change(_wrap(app.ui_photo), photo_inputs, photo_outputs, **q, **hidden)
        already.change(_wrap(app.ui_photo), photo_inputs, photo_outputs, **q, **hidden)
        picker.select(_wrap(app.ui_pick), photo_inputs, [face_index, aligned_view, result, age, input_info,
                                                         result_info], **q, **hidden)
        sel = [photo, age, already, face_index, paste]
        age.release(_wrap(app.ui_preview_stream), sel, [result, result_info], trigger_mode="always_last", **q,
                    **hidden)
        paste.change(_wrap(app.ui_preview), sel, [result, result_info], **q, **hidden)
        full_btn.click(_wrap(app.ui_full), sel, full_file, **q, **hidden)
        strip_btn.click(_wrap(app.ui_strip_measured), [photo, strip_ages, already, face_index], [strip, strip_info],
                        **q, **hidden)
        mix_btn.click(_wrap(app.ui_mix_measured), [photo, reference, mix_age, preset, custom, alpha, already,
                                                   face_index, ref_aligned],
                      [mixed_out, plain_out, mixed_info, plain_info], **q, **hidden)
        v_btn.click(_wrap(app.ui_lifespan), [photo, v_start, v_end, v_between, v_fps, v_size, v_boom, v_gif,
                                             v_label, already, face_index], [video, v_files], **q, **hidden)

        # ---- named API endpoints for gradio_client: /age, /mix, /lifespan (inputs are files, decoded safely)
        with gr.Column(visible=False):
            a_img = gr.File(label="image", type="filepath")
            a_ref = gr.File(label="reference", type="filepath")
            a_age = gr.Number(60, label="target_age")
            a_size = gr.Number(full, label="size", precision=0)
            a_aligned = gr.Checkbox(False, label="already_aligned")
            a_ref_aligned = gr.Checkbox(False, label="reference_aligned")
            a_face = gr.Number(0, label="face_index", precision=0)
            a_paste = gr.Checkbox(False, label="paste_back")
            a_mask = gr.Textbox("fine", label="latent_mask")
            a_alpha = gr.Number(1.0, label="alpha")
            a_start = gr.Number(0, label="start_age")
            a_end = gr.Number(100, label="end_age")
            a_between = gr.Number(10, label="frames_between", precision=0)
            a_fps = gr.Number(20, label="fps")
            a_vsize = gr.Number(min(256, full), label="size", precision=0)
            a_boom = gr.Checkbox(False, label="boomerang")
            a_out = gr.Image(label="image", format="png", type="pil")
            a_video = gr.Video(label="video")
            a_btn = gr.Button("api")
        a_btn.click(_wrap(app.api_age), [a_img, a_age, a_size, a_aligned, a_face, a_paste], a_out,
                    api_name="age", api_description="Age the face in a photo: (image, target_age) -> image", **q)
        a_btn.click(_wrap(app.api_mix), [a_img, a_ref, a_age, a_mask, a_alpha, a_size, a_aligned, a_ref_aligned],
                    a_out, api_name="mix", api_description="Age a face and mix in a reference face's styles", **q)
        a_btn.click(_wrap(app.api_lifespan), [a_img, a_start, a_end, a_between, a_fps, a_vsize, a_boom, a_aligned,
                                              a_face], a_video,
                    api_name="lifespan", api_description="Lifespan MP4 from start_age to end_age", **q)
    return demo


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="SAM checkpoint (default: $SAM_CHECKPOINT or weights/)")
    ap.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--int8-style-heads", action="store_true",
                    help="approximate: int8 encoder style heads, faster on CPU, not exact (README: Speed on CPU)")
    ap.add_argument("--no-download", action="store_true", help="never download the checkpoint")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="auto (default): bfloat16 previews and videos on CPUs with native bfloat16, downloads exact "
                         "float32; fp32: exact everywhere; bf16 / fp16: everything reduced (README: Speed on CPU)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = None
    try:
        ensure_checkpoint(args.checkpoint, download=not args.no_download, validate=False)
    except (WeightsUnavailableError, CheckpointError) as exc:
        problem = str(exc)
        log.warning("%s", problem)
    demo = build_demo(args.checkpoint, args.device, problem=problem, int8_style_heads=args.int8_style_heads,
                      precision=args.precision)
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port,
                                                   share=args.share or None, show_error=True,
                                                   max_file_size=MAX_UPLOAD)


if __name__ == "__main__":
    main()
