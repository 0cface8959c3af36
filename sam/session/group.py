"""Several faces of one photo aged together, each to its own age, pasted back into the one photo:
:class:`GroupSession` (previews, full resolution, the group lifespan video)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam.ages import to_age
from sam.cancel import Progress, ShouldStop, check_stop
from sam.faces.paste import paste_faces
from sam.pipeline import to_pil
from sam.requests import RequestError, read_face_ages, read_number, read_size
from sam.session.face import PREVIEW_SIZE, FaceSession, lifespan_frames
from sam.session.photo import Photo
from sam.video.lifespan import LifespanResult, draw_age_label, interpolate_codes, write_lifespan

__all__ = ["GroupSession", "GROUP_VIDEO_SIDE"]

GROUP_VIDEO_SIDE = 1280  # a group lifespan video shows the whole photo with at most this long side


class GroupSession:
    """Several faces of one photo aged together, each to its own age, pasted back into the one photo
    (:func:`sam.faces.paste.paste_faces`: feathered, each face's colour matched, close faces handed over smoothly).

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

    def paste(self, faces: Sequence[Image.Image | None], base: Image.Image | None = None) -> Image.Image:
        """The photo (or ``base``, the photo scaled) with each face of :attr:`sessions` replaced by ``faces`` (a
        ``None`` face stays as in the photo)."""
        base = base if base is not None else self.photo.image
        sx, sy = base.width / self.photo.image.width, base.height / self.photo.image.height
        pairs = []
        for s, face in zip(self.sessions, faces, strict=True):
            if face is None:
                continue
            aligned = s.aligned
            if (sx, sy) != (1.0, 1.0):
                matrix = np.diag([sx, sy]) @ aligned.matrix
                aligned = replace(aligned, matrix=matrix, source_size=base.size)
            pairs.append((aligned, face))
        return paste_faces(base, pairs, color_match=True) if pairs else base.copy()

    def preview(self, ages: Sequence[Any], quick: bool = False, first: bool = False) -> Image.Image | None:
        """The whole photo with every face at its age, from slider previews (``min(256, output)`` px, the generator
        stopped early, the fast dtype). Each face's picture is rendered once per age
        (:meth:`FaceSession.preview_face`): when one face's age changes, only that face is rendered. ``quick``: from
        kept pictures and known or interpolated codes only (no encoder pass), ``None`` while some face has none;
        ``first``: see :meth:`FaceSession.preview_code`."""
        if quick:
            return self._quick_preview(self._ages(ages))
        *_, (_, _, picture) = self.previews(ages, first=first)
        return picture

    def previews(self, ages: Sequence[Any], first: bool = False) -> Iterator[tuple[int, int, Image.Image]]:
        """:meth:`preview` in steps: ``(done, total, picture)`` after each face that had to be rendered (``total``
        of them), the faces done so far aged and the others as in the photo; the last picture is the preview."""
        wanted = self._ages(ages)
        faces: list[Image.Image | None] = [s.kept_face(a) for s, a in zip(self.sessions, wanted)]
        todo = [i for i, face in enumerate(faces) if face is None]
        for done, i in enumerate(todo, 1):
            faces[i] = self.sessions[i].preview_face(wanted[i], first=first)
            if done < len(todo):
                yield done, len(todo), self.paste(faces)
        yield len(todo), len(todo), self.paste(faces)

    def _quick_preview(self, wanted: list[int]) -> Image.Image | None:
        faces: list[Image.Image | None] = [s.kept_face(a) for s, a in zip(self.sessions, wanted)]
        todo = [i for i, face in enumerate(faces) if face is None]
        codes = [self.sessions[i].preview_code(wanted[i], quick=True) for i in todo]
        if any(c is None for c in codes):
            return None
        if todo:
            images = to_pil(self.pipe.render(torch.cat(codes), size=self.preview_size, fast=True))
            for i, image in zip(todo, images):
                faces[i] = image
        return self.paste(faces)

    @property
    def pictures_rendered(self) -> int:
        """Preview pictures the faces' sessions rendered so far (interpolated ones not counted)."""
        return sum(s.pictures_rendered for s in self.sessions)

    def render(self, ages: Sequence[Any], size: int | None = None, progress: Progress | None = None,
               should_stop: ShouldStop | None = None) -> Image.Image:
        """The whole photo with every face at its age, each rendered from its exact code at ``size`` px (default:
        the model's full resolution) and pasted back. ``progress(done, total, note)``: one step per face's code
        (an encoder pass when that age is new) and one per face rendered."""
        wanted = self._ages(ages)
        n = len(wanted)
        codes = []
        for j, (s, a) in enumerate(zip(self.sessions, wanted)):
            check_stop(should_stop)
            codes.append(s.code(a))
            if progress is not None:
                progress(j + 1, 2 * n, f"face {j + 1} of {n}: its code")

        def rendered(done: int, total: int) -> None:
            if progress is not None:
                progress(n + done, 2 * n, f"face {done} of {n}: rendered")

        images = to_pil(self.pipe.render(torch.cat(codes), size=size, progress=rendered, should_stop=should_stop))
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
        keys, n_between, _ = lifespan_frames(start_age, end_age, frames_between, keys)
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
