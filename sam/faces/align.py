"""FFHQ alignment: the input SAM was trained on (paper Sec. 4), made from an ordinary photo.

SAM (like pSp and StyleGAN2-FFHQ) only works on faces aligned the way the FFHQ dataset was aligned.
:func:`align_face` / :func:`align_all_faces` apply the FFHQ procedure exactly as SAM's ``align_all_parallel``
script does (eyes from landmarks 36-41 / 42-47, mouth corners 48 / 54, oriented quad, shrink, crop with a border,
reflect padding with the blurred and median-filled feathering, quad transform with bilinear sampling, output and
transform size 256 by default). The result (:class:`AlignedFace`) keeps the exact affine map between aligned and
source pixels, which paste-back (:mod:`sam.faces.paste`) uses to put an aged face back.

Coordinates: landmarks and quads are in pixel-index coordinates (the centre of pixel ``(i, j)`` is ``(i, j)``);
``AlignedFace.matrix`` works in continuous coordinates (pixel ``i`` covers ``[i, i + 1)``), the convention of
``PIL.Image.transform``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from sam.faces.detect import MIN_EXTRA_FACE_SCORE, Face, NoFaceError, detect_faces
from sam.faces.image_io import as_rgb, to_rgb

__all__ = ["AlignedFace", "align_all_faces", "align_face", "apply_affine", "ffhq_align", "ffhq_quad",
           "gaussian_filter", "invert_affine"]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    lin = np.linalg.inv(matrix[:, :2])
    return np.concatenate([lin, (-lin @ matrix[:, 2])[:, None]], axis=1)


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
        return invert_affine(self.matrix)

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map Nx2 aligned pixel-index points to source pixel-index points."""
        return apply_affine(self.matrix, np.asarray(points, dtype=np.float64) + 0.5) - 0.5

    def to_aligned(self, points: np.ndarray) -> np.ndarray:
        """Map Nx2 source pixel-index points to aligned pixel-index points."""
        return apply_affine(self.inverse_matrix, np.asarray(points, dtype=np.float64) + 0.5) - 0.5


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


def _pad_feathered(img: Image.Image, pad: tuple[int, int, int, int], qsize: float
                   ) -> tuple[Image.Image, np.ndarray]:
    """The FFHQ script's padding: ``img`` reflect-padded by ``pad`` (left, top, right, bottom; at least 30 % of the
    quad), the padding blurred and faded to the median colour towards the outside. Returns the padded image and the
    padding used."""
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
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB"), pad


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
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1]))
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
    padded = enable_padding and max(pad) > border - 4
    if padded:
        img, pad = _pad_feathered(img, pad, qsize)
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
        img: PIL image (used as is) or anything :func:`sam.faces.image_io.load_image` accepts.
        output_size: side of the aligned image (SAM: 256; 1024 for FFHQ resolution).
        face_index: which face of :func:`detect_faces`'s best-first list to align.
        face: a face from :func:`detect_faces` on this same image (skips detection).
        transform_size: size of the quad transform before resizing to ``output_size`` (default: ``output_size``,
            as in SAM; the original FFHQ script used 4096 for 1024 output).

    Raises:
        NoFaceError: no face was found.
        ValueError: ``face_index`` is out of range.
    """
    pil = as_rgb(img)
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
    pil = as_rgb(img)
    faces = detect_faces(pil, upsample=upsample, predictor_path=predictor_path)
    if not faces:
        raise NoFaceError(f"no face found in the image ({pil.width}x{pil.height})")
    faces = faces[:1] + [f for f in faces[1:] if f.score >= min_score]
    if max_faces is not None:
        faces = faces[: max(int(max_faces), 0)]
    return [_align_detected(pil, f, output_size, transform_size, True) for f in faces]
