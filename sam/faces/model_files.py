"""Locating model files that ship inside installed packages (dlib's .dat files, the age ONNX), or that the
user points to with an argument or an environment variable. Shared by face alignment and the metrics."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sam import settings

__all__ = ["package_dirs", "find_model_file"]


def package_dirs(name: str) -> list[Path]:
    """Directories of an installed package, found without importing it (some packages' ``__init__`` needs
    ``pkg_resources``, which may be missing)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    dirs = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin and spec.origin not in ("namespace", "built-in"):
        dirs.append(Path(spec.origin).parent)
    return list(dict.fromkeys(dirs))


def find_model_file(
    filename: str,
    env: str,
    path: str | os.PathLike[str] | None,
    candidates: list[Path],
    hint: str,
    error: type[FileNotFoundError] = FileNotFoundError,
) -> Path:
    """``path`` (a file, or a folder holding ``filename``), else ``$env`` (same), else the first existing
    candidate. An explicit path or variable that does not lead to the file is an error, not skipped.
    Raises ``error`` with ``hint`` (how to get the file)."""

    def resolve(p: Path) -> Path | None:
        if p.is_dir():
            p = p / filename
        return p if p.is_file() else None

    if path is not None:
        found = resolve(Path(path))
        if found is None:
            raise error(f"{filename} not found at {os.fspath(path)!r}; {hint}")
        return found
    value = settings.text(env)
    if value:
        found = resolve(Path(value))
        if found is None:
            raise error(f"{env}={value!r} does not lead to {filename}; {hint}")
        return found
    for cand in candidates:
        if cand.is_file():
            return cand
    raise error(f"{filename} not found (looked in {[str(c) for c in candidates]}); {hint}")
