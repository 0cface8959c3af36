"""One face of one photo through the whole flow: :class:`FaceSession`.

The layer between the :class:`~sam.pipeline.AgingPipeline` (which ages *aligned* faces, paper Sec. 3) and the front
ends (the web page and the command line): the face aligned (FFHQ, Sec. 4), encoded once, then codes per age,
interpolated and exact previews, renders, the lifespan video, style mixing (Sec. 4.4), paste-back into the photo,
apparent age and identity (:class:`~sam.session.measures.FaceMeasures`), and the key-age warm-up in the background.

Ages follow :func:`sam.ages.to_age` everywhere (round half up; every label shows the age rendered). Long work takes
``progress(done, total)`` callbacks and ``should_stop()`` for cooperative cancellation (it raises
:class:`~sam.cancel.JobCancelledError` within one image or frame). Nothing here imports Gradio.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sam.ages import KEY_AGES, key_ages, to_age
from sam.cancel import Progress, ShouldStop, check_stop
from sam.faces.align import AlignedFace, align_face
from sam.faces.detect import Face
from sam.faces.paste import paste_back
from sam.network.mixing import parse_latent_mask
from sam.pipeline import AgingPipeline, EncodedFace, to_pil
from sam.requests import RequestError, read_number, read_size
from sam.session.background import Background
from sam.session.measures import FaceMeasures
from sam.session.photo import Photo
from sam.video.lifespan import LifespanResult, make_lifespan

__all__ = ["FaceSession", "FIRST_LOOK_SIZE", "PREVIEW_SIZE", "MAX_FRAMES_BETWEEN", "lifespan_frames"]

PICTURES_KEPT = 24  # a face's slider pictures kept per session (the group previews and a slider back and forth)
PREVIEW_SIZE = 256  # slider previews, the ages strip and videos by default: the generator stopped at 256 px
FIRST_LOOK_SIZE = 64  # a new face's very first picture: the generator stopped at 64 px, scaled up
MAX_FRAMES_BETWEEN = 60


def lifespan_frames(start_age: Any, end_age: Any, frames_between: Any, keys: Sequence[Any] | None = None
                    ) -> tuple[list[int], int, int]:
    """A lifespan video's key ages (every 10 years from ``start_age`` to ``end_age``, or the given ``keys``), the
    frames between two of them (checked: 0 to :data:`MAX_FRAMES_BETWEEN`) and the frames in all: the one rule for
    one face and for several, and for the estimate of a job that waits for its turn."""
    keys = [to_age(a) for a in keys] if keys else key_ages(start_age, end_age)
    between = int(read_number(frames_between, "frames between key ages", 0, MAX_FRAMES_BETWEEN, integer=True,
                              default=10))
    return keys, between, (len(keys) - 1) * (between + 1) + 1


class FaceSession:
    """One face of one photo, through the whole flow. Cheap to make; the work is done on first need and kept.

    >>> s = FaceSession(pipe, Photo.load("me.jpg"))
    >>> s.render(70, paste=True).save("me_at_70.png")
    """

    def __init__(self, pipe: AgingPipeline, photo: Photo, face_index: Any = 0, already_aligned: bool = False,
                 measures: FaceMeasures | None = None, what: str = "photo", background: Background | None = None):
        self.pipe = pipe
        self.background = background or Background()  # where the key-age warm-up runs (the app's: low priority)
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
        self._pictures: OrderedDict[int, Image.Image] = OrderedDict()  # age -> the exact preview picture
        self.pictures_rendered = 0  # preview pictures this session rendered (the rest came from the cache)

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
                self.pipe.latents(self.encoded, [a], fast=True)  # for previews: the fast dtype (sam.network.precision)

    def start_warm_up(self, should_stop: ShouldStop | None = None) -> threading.Thread | None:
        """:meth:`warm_key_ages` as background work (:attr:`background`; at most one per session); ``None`` when
        nothing is left to do."""
        if all(a in self.pipe.cached_ages(self.encoded, fast=True) for a in KEY_AGES):
            return None
        with self._lock:
            if self._warm_thread is not None and self._warm_thread.is_alive():
                return None

            def task(stop: ShouldStop) -> None:
                self.warm_key_ages(should_stop=lambda: stop() or (should_stop is not None and should_stop()))

            self._warm_thread = self.background.start("sam-key-ages", task, "key-age codes not precomputed")
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
        """The exact slider preview: ``min(256, output)`` px, the generator stopped early (:meth:`preview_face`)."""
        return self.finish(self.preview_face(age), paste)

    def preview_face(self, age: Any, first: bool = False) -> Image.Image:
        """The face of :meth:`preview` (not pasted back), rendered once per age: the last :data:`PICTURES_KEPT` are
        kept. ``first``: while the exact encoding is not done, :meth:`first_previews`' quicker picture (not kept)."""
        a = to_age(age)
        with self._lock:
            kept = self._pictures.get(a)
            if kept is not None:
                self._pictures.move_to_end(a)
                return kept
        exact = not (first and not self.has_exact_encoding and self.pipe.precision.fast != self.pipe.precision.exact)
        picture = to_pil(self.pipe.render(self.preview_code(a, first=not exact), size=self.preview_size,
                                          fast=True))[0]
        with self._lock:
            self.pictures_rendered += 1
            if exact:
                self._pictures[a] = picture
                while len(self._pictures) > PICTURES_KEPT:
                    self._pictures.popitem(last=False)
        return picture

    def kept_face(self, age: Any) -> Image.Image | None:
        """The preview face at ``age`` when it was rendered before (:meth:`preview_face`), else None."""
        with self._lock:
            return self._pictures.get(to_age(age))

    def first_previews(self, age: Any, paste: bool = False, quick_size: int = FIRST_LOOK_SIZE
                       ) -> Iterator[tuple[Image.Image, bool]]:
        """A new face's first look in steps, from one code (:meth:`preview_code` with ``first``): ``(picture,
        final)``: a picture as soon as it exists (the generator stopped at ``quick_size`` px and scaled up to the
        preview's size) when that is smaller than the preview, then the preview's size (``final``): the frozen encoder
        in the fast dtype too (:meth:`AgingPipeline.first_look`, not cached) while the exact encoding is not done;
        call :meth:`preview` after it for the preview every later slider move is consistent with."""
        code = self.preview_code(age, first=True)
        side = self.preview_size
        if quick_size < side:
            small = to_pil(self.pipe.render(code, size=quick_size, fast=True))[0]
            yield self.finish(small.resize((side, side), Image.Resampling.BICUBIC), paste), False
        yield self.finish(to_pil(self.pipe.render(code, size=side, fast=True))[0], paste), True

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
        encoding of :meth:`first_previews`. Otherwise the exact preview code of :meth:`preview`."""
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
        the reference face, blended with ``alpha`` (0..1; ``None``: replaced)."""
        mixed, plain = self.mixes(reference, age, latent_mask, alpha, size, fast)
        return mixed[0], plain

    def mixes(self, inject: FaceSession | Sequence[FaceSession] | torch.Tensor, age: Any, latent_mask: Any = "fine",
              alpha: Any = 1.0, size: int | None = None, fast: bool = False) -> tuple[list[Image.Image], Image.Image]:
        """Style mixing (paper Sec. 4.4) with one or several injected codes: ``([mixed, ...], unmixed)`` at ``age``.
        ``inject``: reference faces (their unaged codes) or ``K x n_styles x style_dim`` codes (e.g. the pipeline's
        :meth:`~sam.pipeline.AgingPipeline.random_styles`); one mixed image per code. ``alpha`` ``None``: the rows
        are replaced, else blended (0..1)."""
        a = None if alpha is None else read_number(alpha, "mix strength", 0.0, 1.0, default=1.0)
        layers = parse_latent_mask(latent_mask, self.pipe.n_styles)
        if isinstance(inject, FaceSession):
            inject = [inject]
        if not isinstance(inject, torch.Tensor):
            inject = torch.cat([self.pipe.reference_code(r.encoded) for r in inject])
        plain = self.code(age)
        mixed = self.pipe.mix_codes(self.encoded, to_age(age), inject, layers, a) if layers else plain[:0]
        images = to_pil(self.pipe.render(torch.cat([mixed, plain]), size=size, fast=fast))
        return images[:-1], images[-1]

    def lifespan(self, mp4_path: str | os.PathLike, start_age: Any = 0, end_age: Any = 100,
                 frames_between: Any = 10, fps: Any = 20, size: Any = PREVIEW_SIZE, boomerang: bool = False,
                 label: bool = False, gif_path: str | os.PathLike | None = None, progress: Progress | None = None,
                 should_stop: ShouldStop | None = None, keys: Sequence[Any] | None = None) -> LifespanResult:
        """The lifespan video from ``start_age`` to ``end_age`` (key ages every 10 years, or the given ``keys``;
        ``frames_between`` interpolated frames between them). A cancelled job leaves no file behind."""
        keys, n_between, _ = lifespan_frames(start_age, end_age, frames_between, keys)
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
