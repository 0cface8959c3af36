"""Cooperative cancellation: how long work is asked to stop, and how it reports progress.

Long work (a lifespan video, a clip, the ages strip, a background warm-up) takes ``should_stop``, a function it
polls between images or frames, and raises :class:`JobCancelledError` when it says so; it then closes its readers
and writers and removes its partial files. Who decides that a job should stop (a cancelled request, a closed page,
a stopping server, Ctrl-C) is the caller's business: the web app combines its reasons into one ``should_stop``.
``progress(done, total)`` reports how far a job has come. Plain Python, imported by every layer.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["JobCancelledError", "ShouldStop", "Progress", "check_stop"]

ShouldStop = Callable[[], bool]
Progress = Callable[[int, int], None]


class JobCancelledError(Exception):
    """The caller asked a running job to stop (a cancelled request, a closed page, Ctrl-C, the server stopping)."""


def check_stop(should_stop: ShouldStop | None) -> None:
    """Raise :class:`JobCancelledError` when ``should_stop()`` says so."""
    if should_stop is not None and should_stop():
        raise JobCancelledError("the job was cancelled")
