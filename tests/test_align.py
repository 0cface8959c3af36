"""Tests of sam.faces.align: dlib detection, FFHQ alignment, multi-face handling and paste-back, on the astronaut photo
(NASA, public domain) and harder variants built from it (rotated, off-centre on a large canvas, downscaled,
mirrored, two faces side by side)."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from sam.faces import align, detect, paste
from sam.faces.align import AlignedFace
from sam.faces.detect import Face, NoFaceError

ASTRONAUT_PATH = Path(__file__).resolve().parent.parent / "assets" / "astronaut.png"

# FFHQ geometry at 256: eye distance = quad side / 4 = 64 px, centred, eyes ~0.1 * eye-to-mouth above the centre
EXPECTED_EYES_256 = np.array([[96.0, 122.0], [160.0, 122.0]])


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    with Image.open(ASTRONAUT_PATH) as img:
        return img.convert("RGB")


@pytest.fixture(scope="module")
def reference(astronaut: Image.Image) -> AlignedFace:
    return align.align_face(astronaut)


def _rotate(img: Image.Image, degrees: float) -> tuple[Image.Image, np.ndarray]:
    """Rotate about the centre onto an expanded white canvas; also return the 2x3 map source -> rotated
    (continuous pixel coordinates)."""
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])  # counter-clockwise on screen
    w, h = img.size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float) - [w / 2, h / 2]
    ext = np.abs(corners @ rot.T).max(axis=0) * 2
    out_w, out_h = math.ceil(ext[0]), math.ceil(ext[1])
    c_in, c_out = np.array([w / 2, h / 2]), np.array([out_w / 2, out_h / 2])
    inv = rot.T
    data = (*inv[0], *(c_in - inv @ c_out)[:1], *inv[1], *(c_in - inv @ c_out)[1:])
    rotated = img.transform(
        (out_w, out_h), Image.Transform.AFFINE, data, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255)
    )
    forward = np.concatenate([rot, (c_out - rot @ c_in)[:, None]], axis=1)
    return rotated, forward


def _face_region_diff(a: Image.Image, b: Image.Image, size: int = 64) -> float:
    """Mean absolute difference (0-255) of two aligned faces over the central face ellipse, at size x size."""
    arr_a = np.asarray(a.resize((size, size), Image.Resampling.BOX), np.float64)
    arr_b = np.asarray(b.resize((size, size), Image.Resampling.BOX), np.float64)
    c = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(c, c)
    inside = (u / 0.45) ** 2 + ((v - 0.05) / 0.55) ** 2 <= 1
    return float(np.abs(arr_a - arr_b)[inside].mean())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _box_slice(face: Face, shrink: float = 0.0) -> tuple[slice, slice]:
    left, top, right, bottom = face.box
    dx, dy = (right - left) * shrink, (bottom - top) * shrink
    return slice(int(top + dy), int(bottom - dy)), slice(int(left + dx), int(right - dx))


# ------------------------------------------------------------------------------------------- model files


def test_landmarks_model_is_found_and_explicit_paths_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(detect.LANDMARKS_ENV, raising=False)
    found = detect.find_landmarks_model()
    assert found.name == detect.LANDMARKS_FILENAME and found.stat().st_size > 50_000_000
    assert detect.find_landmarks_model(found.parent) == found  # a directory holding the file is fine
    with pytest.raises(FileNotFoundError, match="SAM_LANDMARKS_PATH"):
        detect.find_landmarks_model(tmp_path / "missing.dat")
    monkeypatch.setenv(detect.LANDMARKS_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not lead to"):
        detect.find_landmarks_model()
    monkeypatch.setenv(detect.LANDMARKS_ENV, str(found))
    assert detect.find_landmarks_model() == found


# ------------------------------------------------------------------------------------------- pure math


def test_face_rank_prefers_large_confident_faces() -> None:
    assert detect.face_rank(100 * 100, 1.2) > detect.face_rank(60 * 60, 2.5)  # confident: size decides
    assert detect.face_rank(90 * 90, 1.1) > detect.face_rank(90 * 90, 0.1)  # same size: score decides
    assert detect.face_rank(90 * 90, 1.0) > detect.face_rank(150 * 150, 0.0)  # big doubtful box loses
    assert detect.face_rank(90 * 90, 1.0) > detect.face_rank(40 * 40, 3.0)


def _synthetic_landmarks(eye_l: tuple[float, float], eye_r: tuple[float, float], mouth_l, mouth_r) -> np.ndarray:
    lm = np.zeros((68, 2))
    lm[36:42] = eye_l
    lm[42:48] = eye_r
    lm[48] = mouth_l
    lm[54] = mouth_r
    return lm


def test_ffhq_quad_geometry() -> None:
    lm = _synthetic_landmarks((100, 100), (160, 100), (110, 170), (150, 170))
    quad, qsize = align.ffhq_quad(lm)
    # eye_to_eye = 60, eye_to_mouth = 70: x = (60 + 70, 0) normalised * max(120, 126) -> half side 126
    assert qsize == pytest.approx(252.0)
    centre = np.array([130.0, 100.0 + 7.0])
    np.testing.assert_allclose(quad, centre + np.array([[-126, -126], [-126, 126], [126, 126], [126, -126]]))
    # a rotated face gives the rotated quad
    t = math.radians(25)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    quad_r, qsize_r = align.ffhq_quad(lm @ rot.T)
    np.testing.assert_allclose(quad_r, quad @ rot.T, atol=1e-9)
    assert qsize_r == pytest.approx(qsize)
    with pytest.raises(ValueError, match="68x2"):
        align.ffhq_quad(np.zeros((5, 2)))


def test_gaussian_filter_matches_direct_convolution() -> None:
    rng = np.random.default_rng(0)
    arr = rng.random((23, 31, 3)).astype(np.float32) * 255
    sigma = 2.3
    radius = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    expected = arr.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        p = np.pad(expected, pad, mode="symmetric")  # scipy's "reflect"
        n = expected.shape[axis]
        expected = sum(k[j] * np.take(p, np.arange(j, j + n), axis=axis) for j in range(2 * radius + 1))
    np.testing.assert_allclose(align.gaussian_filter(arr, sigma), expected, atol=2e-3)
    # a kernel wider than the image (repeated reflection) and the no-op case
    wide = align.gaussian_filter(arr, 9.0)
    assert wide.shape == arr.shape and np.all(np.isfinite(wide))
    np.testing.assert_array_equal(align.gaussian_filter(arr, 0.0), arr)


def test_paste_mask_shape() -> None:
    u = np.linspace(-1, 1, 201)
    m = paste.paste_mask(u, np.zeros_like(u))
    assert m[100] == 1.0 and m[0] == 0.0 and m[-1] == 0.0
    assert np.all(np.diff(m[:101]) >= 0) and np.all(np.diff(m[100:]) <= 0)


# ------------------------------------------------------------------------------------------- detection and alignment


def test_detects_her_face_not_the_mission_patch(astronaut: Image.Image) -> None:
    faces = detect.detect_faces(astronaut)
    assert faces, "no face detected in the astronaut photo"
    best = faces[0]
    assert best.landmarks.shape == (68, 2)
    # her face is in the upper middle; the patch (a face-like textured disc) is at bottom left
    cx, cy = (best.box[0] + best.box[2]) / 2, (best.box[1] + best.box[3]) / 2
    assert 190 < cx < 250 and 90 < cy < 150, best.box
    assert best.score > 0.5
    for other in faces[1:]:
        assert detect.face_rank(other.area, other.score) <= detect.face_rank(best.area, best.score)
    eye_dist = np.hypot(*(best.eye_right - best.eye_left))
    assert 35 < eye_dist < 55
    assert best.eye_left[0] < best.eye_right[0]


def test_aligned_astronaut_is_centred_and_upright(reference: AlignedFace) -> None:
    img = reference.image
    assert img.size == (256, 256) and img.mode == "RGB"
    assert reference.source_size == (512, 512)
    eyes = reference.to_aligned(np.stack([reference.face.eye_left, reference.face.eye_right]))
    np.testing.assert_allclose(eyes, EXPECTED_EYES_256, atol=2.5)
    # independent check: landmarks found again on the aligned output agree
    again = detect.detect_faces(img)
    assert again, "no face found in the aligned image"
    redetected = np.stack([again[0].eye_left, again[0].eye_right])
    np.testing.assert_allclose(redetected, eyes, atol=3.0)
    assert abs(redetected[0, 1] - redetected[1, 1]) < 2.0  # eyes level
    mouth = (again[0].landmarks[48] + again[0].landmarks[54]) / 2
    assert abs(mouth[0] - 128) < 4 and 165 < mouth[1] < 190


def test_matrix_round_trip_and_quad(reference: AlignedFace) -> None:
    pts = np.array([[0.0, 0.0], [255.0, 10.0], [37.5, 200.25]])
    np.testing.assert_allclose(reference.to_source(reference.to_aligned(pts)), pts, atol=1e-9)
    # no shrink here: aligned corner (-0.5, -0.5) (the pixel edge) is the quad's NW corner exactly
    assert reference.shrink == 1
    corners = reference.to_source(np.array([[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]]))
    np.testing.assert_allclose(corners, reference.quad, atol=1e-6)


def test_output_sizes(astronaut: Image.Image, reference: AlignedFace) -> None:
    face = reference.face
    big = align.align_face(astronaut, output_size=1024, face=face)
    assert big.image.size == (1024, 1024)
    np.testing.assert_allclose(big.quad, reference.quad)
    assert _face_region_diff(big.image, reference.image) < 1.5
    supersampled = align.align_face(astronaut, output_size=256, transform_size=1024, face=face)
    assert supersampled.image.size == (256, 256)
    assert _face_region_diff(supersampled.image, reference.image) < 2.0
    eyes = supersampled.to_aligned(np.stack([face.eye_left, face.eye_right]))
    np.testing.assert_allclose(eyes, EXPECTED_EYES_256, atol=2.5)
    with pytest.raises(ValueError, match="output_size"):
        align.align_face(astronaut, output_size=512, transform_size=256, face=face)


def test_input_kinds(astronaut: Image.Image, reference: AlignedFace) -> None:
    data = ASTRONAUT_PATH.read_bytes()
    for src in (
        str(ASTRONAUT_PATH),
        ASTRONAUT_PATH,
        data,
        io.BytesIO(data),
        np.asarray(astronaut),
        astronaut.convert("RGBA"),
    ):
        out = align.align_face(src)
        assert np.array_equal(np.asarray(out.image), np.asarray(reference.image))


@pytest.mark.parametrize("degrees", [12, -20, 30])
def test_rotation_equivariance(astronaut: Image.Image, reference: AlignedFace, degrees: float) -> None:
    rotated, forward = _rotate(astronaut, degrees)
    out = align.align_face(rotated)
    # the crop quad rotates with the photo (landmark noise: a few pixels on a ~175 px quad)
    expected_quad = (reference.quad + 0.5) @ forward[:, :2].T + forward[:, 2] - 0.5
    qsize = np.hypot(*(reference.quad[3] - reference.quad[0]))
    assert np.abs(out.quad - expected_quad).max() < 0.03 * qsize
    # ... so the aligned images nearly agree (a 1 px shift at 64 px gives about 3.5)
    assert _face_region_diff(out.image, reference.image) < 4.5
    eyes = out.to_aligned(np.stack([out.face.eye_left, out.face.eye_right]))
    np.testing.assert_allclose(eyes, EXPECTED_EYES_256, atol=2.5)


def test_off_centre_on_large_canvas(astronaut: Image.Image, reference: AlignedFace) -> None:
    canvas = Image.new("RGB", (2400, 1800), (128, 128, 128))
    canvas.paste(astronaut, (1700, 1150))  # detection runs on a downscaled copy; landmarks mapped back
    out = align.align_face(canvas)
    np.testing.assert_allclose(out.quad, reference.quad + [1700, 1150], atol=0.03 * 175)
    assert out.source_size == (2400, 1800)
    assert _face_region_diff(out.image, reference.image) < 3.0


def test_downscaled_to_300px(astronaut: Image.Image, reference: AlignedFace) -> None:
    small = astronaut.resize((300, 300), Image.Resampling.LANCZOS)
    out = align.align_face(small)
    np.testing.assert_allclose(out.quad * 512 / 300, reference.quad, atol=0.04 * 175)
    assert _face_region_diff(out.image, reference.image) < 5.0


def test_mirrored(astronaut: Image.Image, reference: AlignedFace) -> None:
    out = align.align_face(ImageOps.mirror(astronaut))
    assert _face_region_diff(out.image, ImageOps.mirror(reference.image)) < 3.0


def test_face_at_the_edge_uses_ffhq_padding(astronaut: Image.Image, reference: AlignedFace) -> None:
    edge = astronaut.crop((150, 50, 512, 512))  # her face 25 px from the left edge: the crop quad sticks out
    out = align.align_face(edge)
    assert out.padded
    np.testing.assert_allclose(out.quad, reference.quad - [150, 50], atol=0.03 * 175)
    assert _face_region_diff(out.image, reference.image) < 3.0
    # the part outside the photo is filled with blurred reflection fading to the median colour, not black
    arr = np.asarray(out.image, np.float64)

    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())

    outside = arr[:, :15]
    assert outside.mean() > 60 and roughness(outside) < 0.5 * roughness(arr[100:200, 80:180])


def test_two_faces_side_by_side(astronaut: Image.Image) -> None:
    pair = Image.new("RGB", (1024, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(ImageOps.mirror(astronaut), (512, 0))
    faces = detect.detect_faces(pair)
    assert len(faces) >= 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces[:2])
    assert 190 < centres[0] < 250 and 1024 - 250 < centres[1] < 1024 - 190  # the two faces, not the patches
    assert all(f.box[3] < 200 for f in faces[:2])
    every = align.align_all_faces(pair)
    assert len(every) == 2  # the two mission patches (dlib scores ~0.05-0.15) are left out
    assert len(align.align_all_faces(pair, min_score=-10)) == len(faces)
    assert _face_region_diff(every[0].image, ImageOps.mirror(every[1].image)) < 3.0
    chosen = align.align_face(pair, face_index=1)
    np.testing.assert_allclose(chosen.quad, every[1].quad)
    with pytest.raises(ValueError, match="out of range"):
        align.align_face(pair, face_index=len(faces))
    assert len(align.align_all_faces(pair, max_faces=2)) == 2

    # paste a visibly changed version of every face back: both faces change, the rest of the photo does not
    changed = [(a, Image.fromarray(np.uint8(np.clip(np.asarray(a.image, np.int16) + 60, 0, 255)))) for a in every[:2]]
    result = np.asarray(paste.paste_back_all(pair, changed), np.float64)
    before = np.asarray(pair, np.float64)
    for a, _ in changed:
        rows, cols = _box_slice(a.face, 0.2)
        assert (result[rows, cols] - before[rows, cols]).mean() > 40
    assert np.array_equal(result[470:, 480:544], before[470:, 480:544])


def test_no_face_gives_clear_error(astronaut: Image.Image) -> None:
    no_face = astronaut.crop((300, 220, 512, 512))  # wall, arm and flag; no face
    assert detect.detect_faces(no_face) == []
    with pytest.raises(NoFaceError, match="no face found in the image"):
        align.align_face(no_face)
    with pytest.raises(NoFaceError, match="no face found"):
        align.align_all_faces(no_face)
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    with pytest.raises(NoFaceError):
        align.align_face(gradient)
    with pytest.raises(NoFaceError):
        align.align_face(np.zeros((8, 8, 3), np.uint8))
    assert issubclass(NoFaceError, ValueError)


def test_bad_input_raises_image_load_error() -> None:
    from sam.faces.image_io import ImageLoadError

    with pytest.raises(ImageLoadError):
        align.align_face(b"definitely not an image")
    with pytest.raises(ImageLoadError):
        detect.detect_faces(np.zeros((4, 4, 7), np.uint8))
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, "PNG")
    truncated = Image.open(io.BytesIO(buf.getvalue()[:60]))  # lazily opened, fails when decoded
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        detect.detect_faces(truncated)


# ------------------------------------------------------------------------------------------- paste-back


def test_paste_back_of_the_aligned_face_reproduces_the_photo(astronaut: Image.Image, reference: AlignedFace) -> None:
    orig = np.asarray(astronaut, np.float64)
    rows, cols = _box_slice(reference.face)
    same = np.asarray(paste.paste_back(astronaut, reference, reference.image), np.float64)
    assert _psnr(same[rows, cols], orig[rows, cols]) > 35
    big = reference.image.resize((1024, 1024), Image.Resampling.LANCZOS)  # SAM's output size
    from_big = np.asarray(paste.paste_back(astronaut, reference, big), np.float64)
    assert _psnr(from_big[rows, cols], orig[rows, cols]) > 33
    # outside the aligned crop nothing changes
    corners = reference.to_source(np.array([[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]]))
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    assert np.array_equal(same[y1 + 1 :], orig[y1 + 1 :])
    assert np.array_equal(same[:, x1 + 1 :], orig[:, x1 + 1 :])


def test_paste_back_has_no_seam(astronaut: Image.Image, reference: AlignedFace) -> None:
    # paste a flat 200-grey face into a flat 100-grey photo: the result shows the blend weight itself
    flat = Image.new("RGB", astronaut.size, (100, 100, 100))
    out = np.asarray(paste.paste_back(flat, reference, Image.new("RGB", (1024, 1024), (200, 200, 200))), np.float64)
    weight = (out - 100.0).mean(axis=2) / 100.0
    rows, cols = _box_slice(reference.face)
    assert weight[rows, cols].min() > 0.99  # the face is fully replaced ...
    assert weight.min() >= 0.0 and weight[-40:].max() < 0.01  # ... the photo away from the crop is not ...
    # ... and the weight fades in over many pixels: a hard edge would jump by 1.0 between neighbouring pixels
    assert np.abs(np.diff(weight, axis=0)).max() < 0.12
    assert np.abs(np.diff(weight, axis=1)).max() < 0.12
    # on the real photo, a brightened face blends in with no step at the edge of the crop
    brighter = Image.fromarray(np.uint8(np.asarray(reference.image, np.int16).clip(0, 205) + 50))
    diff = np.asarray(paste.paste_back(astronaut, reference, brighter), np.float64) - np.asarray(astronaut)
    ring = (weight > 0.0) & (weight < 0.3)
    assert np.abs(diff.mean(axis=2))[ring].mean() < 0.3 * 50


def test_paste_back_colour_match(astronaut: Image.Image, reference: AlignedFace) -> None:
    cast = np.asarray(reference.image, np.int16) + [40, -20, -20]
    tinted = Image.fromarray(np.uint8(np.clip(cast, 0, 255)))
    rows, cols = _box_slice(reference.face, 0.25)
    orig_mean = np.asarray(astronaut, np.float64)[rows, cols].mean(axis=(0, 1))
    plain = np.asarray(paste.paste_back(astronaut, reference, tinted), np.float64)[rows, cols].mean(axis=(0, 1))
    matched = np.asarray(paste.paste_back(astronaut, reference, tinted, color_match=True), np.float64)
    matched_mean = matched[rows, cols].mean(axis=(0, 1))
    assert np.abs(plain - orig_mean).max() > 15
    assert np.abs(matched_mean - orig_mean).max() < 5


def _old_colour_shift(new_face: Image.Image, reference: Image.Image, size: int, **resize) -> np.ndarray:
    """The shift as match_color and sam.video.clip each computed it before they shared sam.faces.paste.color_shift."""
    ref = np.asarray(reference.resize((size, size), Image.Resampling.BILINEAR, **resize).convert("YCbCr"), np.float64)
    new = np.asarray(new_face.resize((size, size), Image.Resampling.BILINEAR, **resize).convert("YCbCr"), np.float64)
    c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    u, v = np.meshgrid(c, c)
    wts = ((u / 0.38) ** 2 + ((v - 0.08) / 0.45) ** 2 <= 1.0).astype(np.float64)[..., None]
    return ((ref - new) * wts).sum(axis=(0, 1)) / wts.sum()


def _old_apply(face: Image.Image, delta: np.ndarray) -> np.ndarray:
    arr = np.asarray(face.convert("YCbCr"), dtype=np.float32) + delta.astype(np.float32)
    return np.asarray(Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "YCbCr").convert("RGB"))


def test_color_shift_is_what_match_color_and_the_clip_computed_before(reference: AlignedFace) -> None:
    """One colour shift (sam.faces.paste.color_shift / apply_color_shift) for the photo (match_color, 128 px copies) and
    the video job (64 px copies, Pillow's default resize): bit-identical to the two copies it replaced."""
    noise = np.random.default_rng(0).normal(0, 6, (256, 256, 3))
    cast = np.asarray(reference.image, np.float64) * [0.85, 1.05, 0.9] + [12, -5, 20] + noise
    tinted = Image.fromarray(np.uint8(np.clip(cast, 0, 255)))
    photo_shift = paste.color_shift(tinted, reference.image)
    np.testing.assert_array_equal(photo_shift, _old_colour_shift(tinted, reference.image, 128, reducing_gap=2.0))
    assert np.abs(photo_shift).max() > 5  # a real shift, not zeros
    matched = np.asarray(paste.match_color(tinted, reference.image))
    np.testing.assert_array_equal(matched, _old_apply(tinted, photo_shift))
    assert np.abs(paste.color_shift(Image.fromarray(matched), reference.image)).max() < 1.5  # matched: no shift left

    clip_shift = paste.color_shift(tinted, reference.image, size=64, reducing_gap=None)
    np.testing.assert_array_equal(clip_shift, _old_colour_shift(tinted, reference.image, 64))
    assert not np.array_equal(clip_shift, photo_shift)  # the sizes are really different
    half = torch.from_numpy(clip_shift) * 0.5  # the clip adds a time-smoothed tensor
    np.testing.assert_array_equal(np.asarray(paste.apply_color_shift(tinted, half)), _old_apply(tinted, half.numpy()))
    assert paste.face_weights(64).sum() == pytest.approx(0.135 * 64 * 64, rel=0.01)


def test_box_iou() -> None:
    assert detect.box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert detect.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert detect.box_iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)  # one inside the other
    assert detect.box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching
    assert detect.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert detect.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty boxes
    a, b = np.array([1.5, 2.0, 9.0, 12.5]), np.array([3.0, 1.0, 11.0, 10.0])  # the tracker's numpy boxes
    assert detect.box_iou(a, b) == detect.box_iou(b, a) == pytest.approx(6.0 * 8.0 / (7.5 * 10.5 + 8 * 9 - 48))


def test_paste_back_into_rotated_photo(astronaut: Image.Image) -> None:
    rotated, _ = _rotate(astronaut, 25)
    aligned = align.align_face(rotated)
    back = np.asarray(paste.paste_back(rotated, aligned, aligned.image), np.float64)
    rows, cols = _box_slice(aligned.face)
    assert _psnr(back[rows, cols], np.asarray(rotated, np.float64)[rows, cols]) > 33


def test_paste_back_checks_the_image_size(astronaut: Image.Image, reference: AlignedFace) -> None:
    with pytest.raises(ValueError, match="aligned from"):
        paste.paste_back(astronaut.resize((300, 300)), reference, reference.image)


# ------------------------------------------------------------------------------------------- large photo


def test_twelve_megapixel_photo(astronaut: Image.Image, reference: AlignedFace) -> None:
    canvas = Image.new("RGB", (4000, 3000), (90, 120, 150))
    canvas.paste(astronaut.resize((3000, 3000), Image.Resampling.BICUBIC), (700, 0))
    detect.detect_faces(astronaut)  # models loaded
    start = time.perf_counter()
    out = align.align_face(canvas)
    seconds = time.perf_counter() - start
    assert seconds < 15, f"detection + alignment of a 12 MP photo took {seconds:.1f} s"
    np.testing.assert_allclose(out.quad, reference.quad * 3000 / 512 + [700, 0], atol=0.03 * 175 * 3000 / 512)
    assert _face_region_diff(out.image, reference.image) < 4.0
    back = paste.paste_back(canvas, out, out.image.resize((1024, 1024), Image.Resampling.LANCZOS))
    assert back.size == canvas.size


@pytest.mark.slow
def test_small_face_in_a_large_photo_is_found_by_the_second_pass(astronaut: Image.Image) -> None:
    canvas = Image.new("RGB", (4000, 3000), (90, 120, 150))
    canvas.paste(astronaut.resize((400, 400), Image.Resampling.LANCZOS), (2900, 2200))  # face box ~70 px
    faces = detect.detect_faces(canvas)
    assert len(faces) >= 1
    left, top, right, bottom = faces[0].box
    assert 2900 + 120 < (left + right) / 2 < 2900 + 200 and 2200 + 60 < (top + bottom) / 2 < 2200 + 120
    assert align.align_face(canvas, face=faces[0]).image.size == (256, 256)
