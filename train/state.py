"""The random state of one training process, captured for a checkpoint and restored on resume.

A step draws from: torch's CPU generator and the CUDA generator of the process' device (the generator's noise,
dropout), numpy's and Python's global generators (for any library that uses them), the target-age sampler
(a numpy ``Generator``) and the per-step no-aging draw (a ``random.Random``). :func:`capture` returns them as
tensors, ints and tuples, which ``torch.load(weights_only=True)`` reads back; :func:`restore` sets them again.
The data order is not here: it is a function of (seed, epoch, position), see :class:`train.data.EpochSampler`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture", "restore"]


def _numpy_global_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_global_state(s: dict[str, Any]) -> None:
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))


def capture(device: torch.device, age_rng: np.random.Generator, step_rng: random.Random) -> dict[str, Any]:
    """Every random stream a training step of this process may draw from."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": _numpy_global_state(),
        "python": random.getstate(),
        "age_sampler": age_rng.bit_generator.state,
        "step_rng": step_rng.getstate(),
    }


def _tuples(x: Any) -> Any:
    """``random.setstate`` needs the nested tuples back (a checkpoint may hold lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def restore(state: dict[str, Any], device: torch.device, age_rng: np.random.Generator,
            step_rng: random.Random) -> None:
    """Set the streams of :func:`capture` again (the CUDA one only when both runs use CUDA)."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    _set_numpy_global_state(state["numpy"])
    random.setstate(_tuples(state["python"]))
    age_rng.bit_generator.state = state["age_sampler"]
    step_rng.setstate(_tuples(state["step_rng"]))
