"""A photo loaded safely and its faces, found once, best first (the start of every face session).

The working copy is at most :data:`WORKING_SIDE` pixels (only a decompression bomb is refused). Faces are found
twice when that helps a new photo's first preview: a quick look for the best face (a small copy, no upsampling),
then the full look for every face (:mod:`sam.faces.detect`).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sam.faces.align import AlignedFace, align_face
from sam.faces.detect import MIN_EXTRA_FACE_SCORE, Face, NoFaceError, box_iou, detect_faces
from sam.faces.image_io import ImageLoadError, load_image
from sam.requests import RequestError, read_number

__all__ = ["Photo", "WORKING_SIDE", "DETECT_SIDE", "QUICK_DETECT_SIDE", "MAX_FACES"]

WORKING_SIDE = 4096  # photos larger than this (long side) are worked on as a downscaled copy
DETECT_SIDE = 1024  # faces are looked for in a copy with this long side (landmarks on the working copy)
QUICK_DETECT_SIDE = 640  # the quick look for a new photo's best face: a smaller copy, no upsampling
MAX_FACES = 12
QUICK_MATCH_IOU = 0.5  # a quick-look face and a full-look face overlapping this much are the same face


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
        """Load a path, bytes, array or PIL image. :class:`~sam.faces.image_io.ImageLoadError` in words when it is not
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
