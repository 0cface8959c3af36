"""The aging pipeline on a tiny model: one encoder pass per photo, batched ages, sizes, mixing, bad ages."""

import numpy as np
import pytest
import torch
from PIL import Image

from sam.faces.image_io import ImageLoadError
from sam.network.model import add_age_channel
from sam.pipeline import AgingPipeline, to_pil, to_tensor

from .conftest import TINY


@pytest.fixture
def face() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))


@pytest.fixture
def pipe(tiny_model) -> AgingPipeline:
    return AgingPipeline(tiny_model, batch_size=2)


def test_to_tensor_and_back(face, tmp_path):
    t = to_tensor(face, 80)
    assert t.shape == (3, 80, 80) and t.min() >= -1 and t.max() <= 1
    assert np.array_equal(np.asarray(to_pil(t)[0]), np.asarray(face))  # exact 8-bit round trip
    face.save(tmp_path / "f.png")
    assert torch.equal(to_tensor(tmp_path / "f.png", 80), t)
    assert torch.equal(to_tensor(np.asarray(face), 80), t)
    assert to_tensor(face, 64).shape == (3, 64, 64)
    with pytest.raises(ImageLoadError, match="unsupported image input"):  # the safe loader's clear error
        to_tensor(42)


def test_pretrained_encoder_runs_once_per_photo(pipe, face, monkeypatch):
    calls = []
    enc = pipe.model.pretrained_encoder
    original = enc.forward
    monkeypatch.setattr(enc, "forward", lambda x: calls.append(x.shape[0]) or original(x))
    pipe(face, [0, 30, 60, 90, 100], size=TINY.output_size)
    pipe(face, [45], size=TINY.output_size)
    assert calls == [1]


def test_latents_match_the_model(pipe, face):
    ages = [0, 25, 50, 75, 100]
    codes = pipe.latents(face, ages)  # batch_size=2: three chunks
    rgb = to_tensor(face, 64)[None].expand(len(ages), -1, -1, -1)
    with torch.no_grad():
        want = pipe.model.encode(add_age_channel(rgb, ages))
    torch.testing.assert_close(codes, want)


def test_sizes_and_fast_previews(pipe, face):
    full = pipe(face, [40])
    assert full[0].size == (TINY.output_size, TINY.output_size)
    pooled = pipe(face, [40], size=16)[0]
    fast = pipe(face, [40], size=16, fast=True)[0]
    assert pooled.size == fast.size == (16, 16)
    # pooled = the published resize path
    x4 = add_age_channel(to_tensor(face, 64)[None], [40])
    with torch.no_grad():
        want = to_pil(pipe.model(x4, randomize_noise=False))[0]
    assert np.abs(np.asarray(pooled, int) - np.asarray(want, int)).max() <= 1
    # fast preview stops the generator early: same size, different pixels
    assert not np.array_equal(np.asarray(pooled), np.asarray(fast))
    with pytest.raises(ValueError, match="size"):
        pipe(face, [40], size=64)


def test_deterministic(pipe, face):
    a, b = pipe(face, [30]), pipe(face, [30])
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))


@pytest.mark.parametrize("age", [-1, 101, float("nan"), "old"])
def test_bad_ages(pipe, face, age):
    with pytest.raises(ValueError, match="age"):
        pipe(face, [age])


def test_mix_with_reference(pipe, face):
    ref = Image.fromarray(np.full((64, 64, 3), 200, np.uint8))
    plain = pipe.latents(face, [50])
    inject = pipe.reference_code(ref)
    mixed_img = pipe.mix(face, ref, 50, latent_mask=[6, 7], alpha=1.0)
    assert mixed_img.size == (TINY.output_size, TINY.output_size)
    codes = plain.clone()
    codes[:, [6, 7]] = inject[:, [6, 7]]
    want = to_pil(pipe.render(codes))[0]
    assert np.array_equal(np.asarray(mixed_img), np.asarray(want))


def test_progress_callback(pipe, face):
    seen = []
    pipe(face, [0, 20, 40], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]  # on CPU images are decoded one at a time


def test_missing_checkpoint_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_CHECKPOINT", str(tmp_path / "x.pt"))
    with pytest.raises(FileNotFoundError, match="not found at .*x.pt. Run `python -m sam weights`.*SAM_CHECKPOINT"):
        AgingPipeline.from_pretrained()  # downloads are off in tests (conftest)


def test_codes_are_cached_per_age(pipe, face, monkeypatch):
    calls = []
    enc = pipe.model.encoder
    original = enc.forward
    monkeypatch.setattr(enc, "forward", lambda x: calls.append(x.shape[0]) or original(x))
    a = pipe.latents(face, [10, 20, 10])
    b = pipe.latents(face, [20, 30])
    assert calls == [2, 1]  # 10 and 20, then only 30
    torch.testing.assert_close(a[1], b[0])
    torch.testing.assert_close(a[0], a[2])


def test_preview_latent_interpolates_between_cached_ages(pipe, face):
    keys = pipe.latents(face, [20, 40])
    code, exact = pipe.preview_latent(face, 25)
    assert not exact
    torch.testing.assert_close(code[0], torch.lerp(keys[0], keys[1], 0.25))
    code, exact = pipe.preview_latent(face, 40)
    assert exact and torch.equal(code[0], keys[1])
    code, exact = pipe.preview_latent(face, 70)  # outside the cached range: computed exactly
    assert exact
    torch.testing.assert_close(code, pipe.latents(face, [70]))
