"""The environment variables the package reads, in one place: their names, what they change, their defaults.

Each is read when it is needed (not at import), so a launcher or a test can set it late; the one exception is
``SAM_ZEROGPU_SECONDS``, read once when :mod:`sam.serving.zerogpu` is imported. Command-line flags, where both exist,
win over these.

=========================  ===========================================================================
``SAM_CHECKPOINT``          the SAM checkpoint file, or a folder holding ``sam_ffhq_aging.pt``
``SAM_CACHE_DIR``           the checkpoint's folder when there is no ``weights/`` folder (default ``~/.cache/sam-age``)
``SAM_NO_DOWNLOAD``         ``1``: never download the checkpoint (offline machines, CI)
``SAM_HF_REPO``             a Hugging Face mirror of the checkpoint (``owner/name``; no default)
``SAM_HF_FILENAME``         the file's name in that repository (default ``sam_ffhq_aging.pt``)
``SAM_HF_REVISION``         a branch, tag or commit of that repository
``SAM_MAX_PIXELS``          the largest image accepted, in pixels (``0``: no limit; default 120 million)
``SAM_CPU_BF16``            ``0`` / ``1``: override the CPU's bfloat16 detection (:mod:`sam.network.precision`)
``SAM_DISABLE_CUDA_OPS``    ``1``: use the PyTorch versions of the StyleGAN2 ops on CUDA too (:mod:`sam.network.ops`)
``SAM_ZEROGPU_SECONDS``     the longest one model call may hold a ZeroGPU device (default 60)
``SAM_LANDMARKS_PATH``      dlib's 68-point landmark model (else found in the installed packages)
``SAM_FACE_LANDMARKS5_MODEL`` dlib's 5-point shape predictor (the age and identity readouts' face chips)
``SAM_FACE_DESCRIPTOR_MODEL`` dlib's face descriptor model (identity readouts)
``SAM_AGE_MODEL``           the apparent-age ONNX model (age readouts)
``SAM_TRUSTED_PROXY``       ``1``: the app sits behind your own reverse proxy; a visitor's address is the last
                            ``X-Forwarded-For`` entry (on Hugging Face Spaces it is anyway)
``SPACES_ZERO_GPU``         set by Hugging Face on ZeroGPU hardware (not ours; read to know where we run)
``SPACE_ID``                set by Hugging Face on every Space (not ours; read to know where we run)
=========================  ===========================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SETTINGS", "text", "flag", "path", "integer"]

SETTINGS = (
    "SAM_CHECKPOINT", "SAM_CACHE_DIR", "SAM_NO_DOWNLOAD", "SAM_HF_REPO", "SAM_HF_FILENAME", "SAM_HF_REVISION",
    "SAM_MAX_PIXELS", "SAM_CPU_BF16", "SAM_DISABLE_CUDA_OPS", "SAM_ZEROGPU_SECONDS", "SAM_LANDMARKS_PATH",
    "SAM_FACE_LANDMARKS5_MODEL", "SAM_FACE_DESCRIPTOR_MODEL", "SAM_AGE_MODEL", "SAM_TRUSTED_PROXY", "SPACES_ZERO_GPU",
    "SPACE_ID",
)


def _known(name: str) -> str:
    if name not in SETTINGS:
        raise KeyError(f"{name} is not a setting of this package (sam.settings.SETTINGS)")
    return name


def text(name: str) -> str:
    """The variable's value without surrounding spaces; ``""`` when it is not set."""
    return os.environ.get(_known(name), "").strip()


def flag(name: str) -> bool:
    """Whether the variable is set to something other than empty, ``0``, ``false`` or ``no``."""
    return text(name).lower() not in ("", "0", "false", "no")


def path(name: str) -> Path | None:
    """The variable as a path (``~`` expanded), or ``None`` when it is not set."""
    value = text(name)
    return Path(value).expanduser() if value else None


def integer(name: str, default: int) -> int:
    """The variable as a whole number, ``default`` when it is not set; :class:`ValueError` in words otherwise."""
    value = text(name)
    if not value:
        return default
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None
