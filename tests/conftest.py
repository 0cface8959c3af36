"""Shared fixtures: tiny model configs for fast unit tests, and the full-size seed-0 synthetic checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SAM_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))

from sam.encoders import EncoderConfig  # noqa: E402
from sam.model import SAM, SAMConfig  # noqa: E402

TINY = SAMConfig(
    output_size=32,
    style_dim=16,
    n_mlp=2,
    channel_multiplier=1,
    channel_max=16,
    encoder=EncoderConfig(base_channels=8, units=(1, 2, 2, 1), input_size=64),
    pool_size=16,
)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and BatchNorm statistic non-trivial values (fresh modules have zero biases etc.)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("kernel"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith(".noise.weight") or name.endswith("bias") and "modulation" not in name:
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("modulation.bias"):
                t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
            elif t.ndim <= 1:  # BatchNorm / PReLU weights
                t.copy_(1 + 0.05 * torch.randn(t.shape, generator=g))
            elif name.startswith("decoder.") or name.endswith("linear.weight"):
                t.copy_(torch.randn(t.shape, generator=g))  # equalised-lr layers scale at run time
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
    if hasattr(model, "latent_avg"):
        model.latent_avg = 0.5 * torch.randn(model.latent_avg.shape, generator=g)
    return model


@pytest.fixture
def tiny_config() -> SAMConfig:
    return TINY


@pytest.fixture
def tiny_model() -> SAM:
    return randomize_(SAM(TINY)).eval()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "synthetic_weights.py").exists():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (set SAM_REFERENCE_DIR)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def seed0_checkpoint(reference_dir: Path, tmp_path_factory):
    """The full-size seed-0 synthetic checkpoint (2.3 GB, ~20 s), built once per test run."""
    sys.path.insert(0, str(reference_dir))
    try:
        import synthetic_weights
    finally:
        sys.path.remove(str(reference_dir))
    path = tmp_path_factory.mktemp("weights") / "sam_seed0.pt"
    torch.save(synthetic_weights.build(0), path)
    yield path
    path.unlink(missing_ok=True)  # 2.3 GB: do not leave it in pytest's kept temp folders
