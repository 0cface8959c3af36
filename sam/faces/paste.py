"""Paste-back: an aged face put back into its photo, alone or with the other faces of the photo.

:func:`paste_back` warps an edited face (any size, e.g. SAM's 1024 output) back through the alignment's map
(:attr:`sam.faces.align.AlignedFace.matrix`) and blends it in with a feathered mask, optionally matching the mean
colour of the original face; :func:`paste_faces` does it for several faces of one photo at once (masks that hand
over smoothly where faces are close, each face's colour matched, independent of the order the faces come in).
:func:`color_shift` / :func:`apply_color_shift` are the one colour match (photos and video frames alike). Pure
functions of their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from sam.faces.align import AlignedFace, apply_affine
from sam.faces.image_io import as_rgb, to_rgb

__all__ = ["apply_color_shift", "color_shift", "face_weights", "match_color", "paste_back", "paste_back_all",
           "paste_faces", "paste_mask"]


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
    ``size`` grid: where colour is compared (:func:`color_shift`) and, in :mod:`sam.video.clip`, how much a face
    changed."""
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
    face_img = as_rgb(new_face)
    if color_match:
        face_img = match_color(face_img, aligned.image)
    size = aligned.output_size
    matrix = aligned.matrix
    inverse = aligned.inverse_matrix

    corners = apply_affine(matrix, np.array([[0, 0], [0, size], [size, size], [size, 0]], dtype=np.float64))
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
    centre = apply_affine(matrix, np.array([[size / 2, size / 2]]))[0]
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
    base = as_rgb(original).copy()
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
    base = as_rgb(original).copy()
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
