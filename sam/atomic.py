"""Writing a file so that it appears under its name only when complete.

Every result the project writes (images, MP4s and GIFs, evaluation reports, checkpoints) goes through
:func:`atomic_path`: the writer fills a temporary file beside the target (``name.partial.ext``: the extension
kept, so tools that choose a format by extension still do), which is renamed into place when the writer finishes
and removed when it fails or is interrupted. A cancelled job, a full disk or Ctrl-C never leaves a half-written
file under the real name. (Checkpoint downloads keep their partial file on purpose, to resume:
:mod:`sam.network.checkpoint`.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PARTIAL", "atomic_path", "partial_path"]

PARTIAL = ".partial"  # the marker in a temporary name; folders of results skip names that contain it


def partial_path(path: str | os.PathLike, marker: str = PARTIAL) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under: ``stem`` + ``marker`` + ``suffix``."""
    path = Path(path)
    return path.with_name(path.stem + marker + path.suffix)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, marker: str = PARTIAL) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder created); when the block ends normally the file is
    renamed to ``path`` (replacing an older one), when it raises the temporary file is deleted.

    >>> with atomic_path("out/me_70.png") as tmp:
    ...     image.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path, marker)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
