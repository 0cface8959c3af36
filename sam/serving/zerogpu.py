"""Hugging Face ZeroGPU support: the pipeline's model calls run inside ``spaces.GPU`` on ZeroGPU hardware.

On a ZeroGPU Space (``SPACES_ZERO_GPU`` set by the platform, and the ``spaces`` package installed) a GPU is lent
only for the duration of a function decorated with ``spaces.GPU``, which runs in a forked worker and hands its
result back to the main process. :func:`call` is that door for every model call of :mod:`sam.pipeline` (the app hands
it to its pipeline as ``call``, with the device of :func:`default_device`): it moves
the tensor arguments to the model's device inside the GPU call and hands the results back through the CPU, so the
pipeline's caches (codes per face and age) live in the main process and survive between calls. Everywhere else
(no ``spaces``, a CPU, an ordinary GPU) :func:`call` is a plain function call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from sam import settings

__all__ = ["active", "call", "default_device", "pipeline_options", "GPU_SECONDS"]

GPU_SECONDS = settings.integer("SAM_ZEROGPU_SECONDS", 60)  # the longest one model call may hold the GPU


def active() -> bool:
    """True on ZeroGPU hardware with the ``spaces`` package importable."""
    if settings.text("SPACES_ZERO_GPU").lower() not in ("1", "true", "yes"):
        return False
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


def default_device() -> str | None:
    """``"cuda"`` on ZeroGPU hardware (the GPU is lent per call, so the main process may see none), else ``None``
    (the pipeline's own default)."""
    return "cuda" if active() else None


def pipeline_options() -> dict[str, Any]:
    """The :class:`~sam.pipeline.AgingPipeline` keywords for this machine: on ZeroGPU every model call through
    :func:`call`; elsewhere none."""
    return {"call": call} if active() else {}


def _move(value: Any, device: torch.device | str) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_move(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


# Models by id: the GPU worker is a fork of this process, so it finds them here and only a key crosses over.
_OWNERS: dict[int, torch.nn.Module] = {}


def _run(key: int, method: str, device: torch.device | str, args: tuple, kwargs: dict) -> Any:
    """Inside the GPU call: inputs to ``device``, outputs back to the CPU (they cross a process boundary)."""
    try:
        owner = _OWNERS[key]
    except KeyError:
        raise RuntimeError("this model was loaded after the ZeroGPU worker started; load it at start-up") from None
    with torch.inference_mode():
        out = getattr(owner, method)(*_move(args, device), **_move(kwargs, device))
    return _move(out, "cpu")


@functools.cache
def _gpu_runner() -> Callable[..., Any]:
    import spaces

    return spaces.GPU(_run, duration=GPU_SECONDS)


def call(owner: torch.nn.Module, method: str, *args: Any, device: torch.device | str, **kwargs: Any) -> Any:
    """``getattr(owner, method)(*args, **kwargs)`` (a method or a submodule of the model); on ZeroGPU inside a
    ``spaces.GPU`` call, where the tensors are moved to ``device``, and whose results come back through the CPU to
    ``device`` (as the caller would have them). Only tensors and a key cross to the GPU worker, never the model."""
    if not active():
        return getattr(owner, method)(*args, **kwargs)
    _OWNERS.setdefault(id(owner), owner)
    out = _gpu_runner()(id(owner), method, device, _move(args, "cpu"), _move(kwargs, "cpu"))
    return _move(out, device)
