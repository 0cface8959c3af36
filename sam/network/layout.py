"""What a SAM checkpoint must hold: the published layout and the checks of a checkpoint's contents.

The published ``sam_ffhq_aging.pt`` is pinned in ``sam/network/data/sam_ffhq_aging.manifest.json`` (every tensor
name, shape and dtype, the fixed FIR kernels, ``latent_avg`` and the 1024 px ``opts``). :func:`config_from_opts`
validates every field of a checkpoint's ``opts`` the model reads; :func:`check_tensors` compares tensor names and
shapes with a model's; :func:`check_published` and :func:`check_finite` are the checks of a file accepted for the
first time. Every failure is a :class:`CheckpointError` with a one-line message. Where the file is, how it is
fetched and loaded: :mod:`sam.network.checkpoint`, the one door that uses these checks.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import torch

from sam.network.config import OPTS_FIELDS, SAMConfig

__all__ = ["CheckpointError", "check_finite", "check_published", "check_tensors", "config_from_opts",
           "describe_error", "published_layout"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, truncated, or not in the expected layout."""


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (at most 400 characters of message)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


@functools.cache
def published_layout() -> dict[str, Any]:
    """The published checkpoint's layout: ``state_dict`` (name -> shape, dtype, fixed values), ``latent_avg``,
    ``opts`` and ``param_counts`` (package data, a compact copy of the reference manifest)."""
    text = resources.files("sam.network").joinpath("data", "sam_ffhq_aging.manifest.json").read_text(encoding="utf-8")
    return json.loads(text)


def _int_field(value: Any, name: str, low: int, high: int, power_of_two: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"opts field '{name}' must be an integer, got {value!r}")
    if not low <= value <= high or (power_of_two and value & (value - 1)):
        kind = "a power of two" if power_of_two else "an integer"
        raise CheckpointError(f"opts field '{name}' must be {kind} from {low} to {high}, got {value!r}")
    return value


def _bool_field(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise CheckpointError(f"opts field '{name}' must be true or false, got {value!r}")
    return value


# Every integer the model reads from a checkpoint's opts or its ``model_config`` (encoder fields prefixed), with
# its allowed range and whether it must be a power of two.
_INT_RANGES: dict[str, tuple[int, int, bool]] = {
    "output_size": (8, 2048, True),
    "style_dim": (1, 4096, False),
    "n_mlp": (0, 32, False),
    "channel_multiplier": (1, 8, False),
    "channel_max": (1, 4096, False),
    "pool_size": (1, 2048, False),
    "encoder.base_channels": (1, 1024, False),
    "encoder.input_size": (64, 2048, True),
    "encoder.style_dim": (1, 4096, False),
}


def _check_fields(values: Mapping[str, Any], prefix: str, kind: str = "") -> None:
    """Validate the known fields of ``values``; ``prefix`` names them in messages, ``kind`` selects their rules."""
    for key, value in values.items():
        rule, name = kind + str(key), prefix + str(key)
        if rule == "encoder":
            if not isinstance(value, Mapping):
                raise CheckpointError(f"opts field '{name}' must be a mapping, got {value!r}")
            _check_fields(value, name + ".", "encoder.")
        elif rule == "encoder.units":
            if not isinstance(value, (list, tuple)) or len(value) != 4:
                raise CheckpointError(f"opts field '{name}' must be 4 integers, got {value!r}")
            for v in value:
                _int_field(v, name, 1, 64)
        elif rule == "input_nc":
            if value != 4 or isinstance(value, bool):
                raise CheckpointError(f"opts field '{name}' must be 4 (RGB + age), got {value!r}")
        elif rule in ("start_from_encoded_w_plus", "start_from_latent_avg"):
            _bool_field(value, name)
        elif rule in _INT_RANGES:
            low, high, pow2 = _INT_RANGES[rule]
            _int_field(value, name, low, high, pow2)


def config_from_opts(opts: Any) -> SAMConfig:
    """The model configuration a checkpoint's ``opts`` describe, with every field the model reads validated:
    a :class:`CheckpointError` names the first bad field."""
    if opts is None:
        opts = {}
    if not isinstance(opts, Mapping):
        raise CheckpointError(f"'opts' must be a dict of training options, got {type(opts).__name__}")
    model_config = opts.get("model_config")
    if model_config is not None:
        if not isinstance(model_config, Mapping):
            raise CheckpointError(f"opts field 'model_config' must be a mapping, got {model_config!r}")
        _check_fields(model_config, "model_config.")
    _check_fields({k: opts[k] for k in OPTS_FIELDS if opts.get(k) is not None}, "")
    try:
        return SAMConfig.from_opts(dict(opts))
    except (TypeError, ValueError) as exc:  # a combination no single-field rule catches
        raise CheckpointError(f"cannot read the model configuration from opts: {describe_error(exc)}") from None


def check_tensors(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Any], source: str) -> None:
    """One :class:`CheckpointError` listing missing, unexpected, mis-shaped and non-tensor entries, if any."""
    bad_types = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(got) - set(bad_types))
    unexpected = sorted(set(got) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(got) if tuple(expected[k]) != got[k])
    if not (missing or unexpected or mismatched or bad_types):
        return

    def listing(keys: list[str], fmt: Callable[[str], str] = str, limit: int = 12) -> str:
        shown = ", ".join(fmt(k) for k in keys[:limit])
        return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {listing(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} with the wrong shape: "
                     + listing(mismatched, lambda k: f"{k} (file {list(got[k])}, model {list(expected[k])})"))
    if bad_types:
        parts.append(f"{len(bad_types)} not tensors: {listing(bad_types)}")
    raise CheckpointError(f"{source} does not match the SAM layout: " + "; ".join(parts))


def check_published(ckpt: Mapping[str, Any], source: str) -> None:
    """``ckpt`` has the published layout: opts of the 1024 px model, every tensor name and shape, the FIR kernels."""
    layout = published_layout()
    opts = ckpt.get("opts")
    config = config_from_opts(opts)
    for key in OPTS_FIELDS:
        want = layout["opts"][key]
        if (opts or {}).get(key) != want:
            raise CheckpointError(f"{source} is not the published SAM model: opts field '{key}' is "
                                  f"{(opts or {}).get(key)!r}, the published model has {want!r}")
    if config != SAMConfig():
        raise CheckpointError(f"{source} is not the published SAM model: its opts field 'model_config' describes "
                              "another model size")
    spec = layout["state_dict"]
    state = ckpt["state_dict"]
    check_tensors({k: tuple(v["shape"]) for k, v in spec.items()}, state, f"{source} (published layout)")
    for key, entry in spec.items():
        tensor = state[key]
        if entry["dtype"] == "int64" and tensor.is_floating_point() or \
                entry["dtype"] != "int64" and not tensor.is_floating_point():
            raise CheckpointError(f"{source}: tensor {key} is {tensor.dtype}, the published model has {entry['dtype']}")
        fixed = entry.get("fixed")
        if fixed is not None and not torch.equal(tensor.float(), torch.tensor(fixed, dtype=torch.float32)):
            raise CheckpointError(f"{source}: the fixed FIR kernel {key} has other values than the published model")
    latent_avg = ckpt.get("latent_avg")
    want = layout["latent_avg"]["shape"]
    if not isinstance(latent_avg, torch.Tensor) or list(latent_avg.shape) != want:
        got = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise CheckpointError(f"{source}: 'latent_avg' is {got}, the published model has shape {want}")


def _distinct_values(t: torch.Tensor) -> torch.Tensor:
    """``t`` without its broadcast (stride-0) dimensions: the same values, each once."""
    for dim, stride in enumerate(t.stride()):
        if stride == 0 and t.shape[dim] > 1:
            t = t.narrow(dim, 0, 1)
    return t


def check_finite(ckpt: Mapping[str, Any], source: str) -> None:
    tensors = dict(ckpt["state_dict"])
    if isinstance(ckpt.get("latent_avg"), torch.Tensor):
        tensors["latent_avg"] = ckpt["latent_avg"]
    bad = [k for k, t in tensors.items()
           if t.is_floating_point() and not bool(torch.isfinite(_distinct_values(t)).all())]
    if bad:
        raise CheckpointError(f"{source} has NaN or infinite weights in {len(bad)} tensors: " + ", ".join(bad[:6])
                              + (", ..." if len(bad) > 6 else ""))
