"""Deterministic synthetic weights in the published checkpoint's layout: the seed-0 checkpoint of the fidelity test.

The published weights cannot be shipped or fetched in tests, so the reference outputs (``tests/data``) were made
from a checkpoint of pseudo-random values with every tensor of the published layout
(:func:`sam.network.checkpoint.published_layout`). This module rebuilds it exactly; each value depends only on
``(seed, tensor name, shape)`` and on torch's CPU generator:

* each tensor gets its own ``torch.Generator`` seeded with ``(seed * 1000003 + crc32(name)) mod 2**63`` and draws
  one ``randn`` of its shape (``running_var`` draws ``rand`` after it);
* the value is chosen by the tensor's role: BatchNorm ``running_var`` ``0.5 + U[0, 1)``, ``running_mean`` and
  noise strengths ``0.1 * N``, biases ``0.1 * N`` (modulation biases ``1 + 0.1 * N``), other 1-d weights
  ``1 + 0.05 * N`` (PReLU slopes ``0.25 + 0.05 * N``), generator and equalised-linear weights ``N`` (they scale at
  run time), other weights ``N / sqrt(fan_in)``; FIR kernels keep their fixed values, counters are zero;
* ``latent_avg`` is ``0.5 * N`` from the generator of the name ``"latent_avg"``.

    python -m sam.network.synthetic --out /tmp/sam_seed0.pt      # 2.3 GB, about 20 s
"""

from __future__ import annotations

import argparse
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sam.atomic import atomic_path
from sam.network.checkpoint import published_layout

__all__ = ["synthetic_tensor", "synthetic_latent_avg", "iter_tensors", "build", "save"]

_SEED_STRIDE = 1_000_003


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed((seed * _SEED_STRIDE + zlib.crc32(name.encode())) % 2**63)


def _is_prelu_slope(name: str) -> bool:
    """PReLU is module 2 of the encoders' ``input_layer`` and of every bottleneck's ``res_layer``."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[-1] == "weight" and parts[-2] == "2" and parts[-3] in ("input_layer", "res_layer")


def synthetic_tensor(seed: int, name: str, spec: dict[str, Any]) -> torch.Tensor:
    """The value of tensor ``name`` with layout entry ``spec`` (``shape``, ``dtype``, optional ``fixed``)."""
    shape = list(spec["shape"])
    if spec.get("fixed") is not None:
        return torch.tensor(spec["fixed"], dtype=getattr(torch, spec["dtype"]))
    if spec["dtype"] == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    gen = _generator(seed, name)
    normal = torch.randn(shape, generator=gen)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return torch.rand(shape, generator=gen) + 0.5
    if leaf == "running_mean" or ".noise.weight" in name:
        return normal * 0.1
    if leaf == "bias":
        return normal * 0.1 + 1.0 if "modulation" in name else normal * 0.1
    if len(shape) == 1:
        return normal * 0.05 + (0.25 if _is_prelu_slope(name) else 1.0)
    if name.startswith("decoder.") or name.endswith(".linear.weight"):
        return normal
    return normal / math.sqrt(math.prod(shape[1:]))


def iter_tensors(seed: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every state_dict entry in layout order, then ``("latent_avg", ...)``; one at a time,
    so comparing or hashing them needs little memory."""
    layout = published_layout()
    for name, spec in layout["state_dict"].items():
        yield name, synthetic_tensor(seed, name, spec)
    yield "latent_avg", synthetic_latent_avg(seed)


def synthetic_latent_avg(seed: int = 0) -> torch.Tensor:
    """``latent_avg``: ``0.5 * N`` drawn from the generator of the name ``"latent_avg"``."""
    shape = published_layout()["latent_avg"]["shape"]
    return torch.randn(shape, generator=_generator(seed, "latent_avg")) * 0.5


def build(seed: int = 0) -> dict[str, Any]:
    """The whole checkpoint dict (``state_dict``, ``latent_avg``, the published ``opts``): 2.3 GB in memory."""
    state = dict(iter_tensors(seed))
    latent_avg = state.pop("latent_avg")
    return {"state_dict": state, "latent_avg": latent_avg, "opts": dict(published_layout()["opts"])}


def save(path: str | Path, seed: int = 0) -> Path:
    """Write :func:`build` to ``path`` (through a temporary name, so an interrupted run leaves no checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(build(seed), tmp)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sam.network.synthetic",
        description="Write the deterministic synthetic checkpoint: the published layout and size (2.3 GB, 1024 px), "
                    "values from a seed, the weights the reference-fidelity test is checked with. To try the tools "
                    "without real weights, 'python -m sam random-checkpoint' is smaller and quicker.")
    ap.add_argument("--seed", type=int, default=0, help="the seed of the values (default 0: the reference's)")
    ap.add_argument("--out", required=True, help="the .pt file to write")
    args = ap.parse_args(argv)
    print(save(args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
