"""ZeroGPU support (sam/serving/zerogpu.py): the app hands its pipeline the ZeroGPU door, and model calls go through
``spaces.GPU`` only on ZeroGPU hardware."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from sam.pipeline import AgingPipeline
from sam.serving import zerogpu


@pytest.fixture
def fake_spaces(monkeypatch):
    """A stand-in ``spaces`` package whose GPU decorator records each call (the real one forks a worker)."""
    calls: list[str] = []
    module = types.ModuleType("spaces")

    def gpu(fn, duration=None):
        def run(key, method, device, args, kwargs):
            assert isinstance(key, int) and not any(isinstance(a, torch.nn.Module) for a in args)  # no model crosses
            calls.append(method)
            return fn(key, method, device, args, kwargs)

        return run

    module.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", module)
    zerogpu._gpu_runner.cache_clear()
    yield calls
    zerogpu._gpu_runner.cache_clear()


def test_plain_call_off_zerogpu(fake_spaces, monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not zerogpu.active()
    assert zerogpu.call(torch.nn.Identity(), "forward", torch.ones(2), device="cpu").tolist() == [1.0, 1.0]
    assert fake_spaces == []


def test_no_spaces_package_means_off(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # import spaces -> ImportError
    assert not zerogpu.active()


def test_pipeline_model_calls_get_a_gpu_on_zerogpu(fake_spaces, monkeypatch, tiny_model):
    pipe = AgingPipeline(tiny_model)
    image = torch.rand(64, 64, 3).mul(255).byte().numpy()
    plain = pipe.render(pipe.latents(image, [20, 60]))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert zerogpu.active()
    zero = AgingPipeline(tiny_model, **zerogpu.pipeline_options())  # what the app does
    images = zero.render(zero.latents(image, [20, 60]))
    assert fake_spaces == ["encode_pretrained", "encode", "decoder", "decoder"]  # one GPU call each
    torch.testing.assert_close(images, plain)
    zero.latents(image, [20, 60])
    assert len(fake_spaces) == 4  # the codes stayed cached in this process


def test_random_styles_go_through_the_door_too(fake_spaces, monkeypatch, tiny_model):
    plain = AgingPipeline(tiny_model).random_styles(3, seed=5)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    zero = AgingPipeline(tiny_model, **zerogpu.pipeline_options()).random_styles(3, seed=5)
    assert fake_spaces == ["style"]
    torch.testing.assert_close(zero, plain)


def test_off_zerogpu_the_app_hands_its_pipeline_nothing(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert zerogpu.pipeline_options() == {} and zerogpu.default_device() is None
