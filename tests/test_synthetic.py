"""The project's seed-0 builder (sam.network.synthetic) and its carried reference data agree with the published
reference tools (../shared/reference, where present), so the fidelity test means the same thing in a lone clone."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from sam.network import synthetic
from sam.network.checkpoint import published_layout

# Sums (float64) of the seed-0 values as published with the reference data.
CHECKSUMS = {
    "encoder.input_layer.0.weight": -9.029990327762334,
    "decoder.convs.0.conv.weight": 584.8766136523823,
    "pretrained_encoder.styles.17.linear.weight": -93.78198939165259,
    "decoder.noises.noise_3": -6.267819485859945,
}
LATENT_AVG_SUM = 58.88839763625765


def _reference_builder(shared_reference_dir):
    spec = importlib.util.spec_from_file_location("reference_synthetic_weights",
                                                  shared_reference_dir / "synthetic_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_of_each_role() -> list[str]:
    """A tensor name of every value rule (and a PReLU slope, a FIR kernel, a counter), for the quick comparison."""
    names = list(published_layout()["state_dict"])
    wanted = ["running_var", "running_mean", "num_batches_tracked", ".noise.weight", "modulation.bias", ".bias",
              "input_layer.2.weight", "res_layer.2.weight", "input_layer.1.weight", "blur.kernel", "decoder.convs.3",
              "linear.weight", "latlayer1.weight", "body.3.shortcut_layer.0.weight", "decoder.noises.noise_0"]
    return [next(n for n in names if w in n) for w in wanted]


def test_published_checksums():
    layout = published_layout()["state_dict"]
    for name, want in CHECKSUMS.items():
        got = synthetic.synthetic_tensor(0, name, layout[name]).double().sum().item()
        assert got == pytest.approx(want, abs=1e-6), name
    assert synthetic.synthetic_latent_avg(0).double().sum().item() == pytest.approx(LATENT_AVG_SUM, abs=1e-6)


def test_seeds_differ():
    spec = published_layout()["state_dict"]["decoder.convs.0.conv.weight"]
    a = synthetic.synthetic_tensor(0, "decoder.convs.0.conv.weight", spec)
    b = synthetic.synthetic_tensor(1, "decoder.convs.0.conv.weight", spec)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_packaged_layout_is_the_published_manifest(shared_reference_dir):
    manifest = json.loads((shared_reference_dir / "sam_ffhq_aging.manifest.json").read_text())
    assert published_layout() == manifest


def test_builder_matches_the_reference_tool_on_every_rule(shared_reference_dir):
    ref = _reference_builder(shared_reference_dir)
    layout = published_layout()["state_dict"]
    for name in _one_of_each_role():
        spec = layout[name]
        theirs = ref.synthetic_tensor(0, name, spec["shape"], spec["dtype"], spec.get("fixed"))
        ours = synthetic.synthetic_tensor(0, name, spec)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), name


@pytest.mark.slow
def test_builder_matches_the_reference_tool_on_every_tensor(shared_reference_dir):
    """All 1413 tensors and latent_avg, bit for bit, one at a time (about 40 s, little memory)."""
    ref = _reference_builder(shared_reference_dir)
    layout = published_layout()
    count = 0
    for name, ours in synthetic.iter_tensors(0):
        if name == "latent_avg":
            theirs = 0.5 * torch.randn(layout["latent_avg"]["shape"], generator=ref._gen(0, "latent_avg"))
        else:
            spec = layout["state_dict"][name]
            theirs = ref.synthetic_tensor(0, name, spec["shape"], spec["dtype"], spec.get("fixed"))
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), name
        count += 1
    assert count == len(layout["state_dict"]) + 1


def test_in_repo_reference_matches_the_published_one(reference_dir, shared_reference_dir):
    """tests/data holds the published reference values, less the full 1024 px image (6 MB)."""
    ours = torch.load(reference_dir / "seed0_reference.pt", weights_only=True)
    full = torch.load(shared_reference_dir / "sam_seed0_reference.pt", weights_only=True)
    assert list(ours["ages"]) == list(full["ages"])
    for key in ("input_rgb", "latents", "image_pooled256", "image_crop64"):
        assert torch.equal(ours[key], full[key]), key
