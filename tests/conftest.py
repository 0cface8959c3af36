"""Shared fixtures: tiny model configs for fast unit tests, and the full-size seed-0 synthetic checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("SAM_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))

from sam.model import SAM, TINY_CONFIG, SAMConfig, random_init_  # noqa: E402, F401

TINY = TINY_CONFIG


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial deterministic weights (see ``sam.model.random_init_``)."""
    return random_init_(model, seed)


@pytest.fixture
def tiny_config() -> SAMConfig:
    return TINY


@pytest.fixture
def tiny_model() -> SAM:
    return randomize_(SAM(TINY)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-weights checkpoint in the published layout, written once per test run."""
    path = tmp_path_factory.mktemp("tiny_weights") / "tiny.pt"
    randomize_(SAM(TINY)).save(path)
    return path


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
