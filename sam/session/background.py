"""Background work of the sessions: the key-age warm-up of a face shown, and the start-up warm-up of a server.

A nicety, never in anyone's way: each task runs in a thread of its own inside ``lane()``, the owner's lowest
priority (the web app passes its scheduler's background priority, so every request and video frame goes first),
and stops at its next network pass when the owner stops it (:meth:`Background.stop`) or its ``should_stop`` says
so. A failure is one log line. The owner stops its background work before the process exits: a thread killed inside
a torch call at interpreter shutdown aborts the process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from sam.cancel import JobCancelledError, ShouldStop, check_stop
from sam.faces.detect import detect_faces
from sam.pipeline import AgingPipeline

__all__ = ["Background", "warm_up"]

log = logging.getLogger("sam.session")


class Background:
    """Threads for background tasks, started with :meth:`start` and ended together with :meth:`stop`.

    ``lane``: a context manager factory each task runs in (default: none); ``should_stop``: the owner's own reason
    to stop (e.g. its server stopping), read by every task besides :meth:`stop`.
    """

    def __init__(self, lane: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
                 should_stop: ShouldStop | None = None):
        self.lane = lane
        self._outer = should_stop
        self._stopped = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def should_stop(self) -> bool:
        """Whether background tasks should stop now."""
        return self._stopped.is_set() or (self._outer is not None and self._outer())

    def start(self, name: str, task: Callable[[ShouldStop], None], failure: str = "background work skipped"
              ) -> threading.Thread | None:
        """Run ``task(should_stop)`` in a daemon thread named ``name`` (``None`` once stopped). A failure is logged
        as ``failure: <error>``; a cancel is quiet."""
        if self.should_stop():
            return None

        def run() -> None:
            try:
                with self.lane():
                    task(self.should_stop)
            except JobCancelledError:
                pass
            except Exception as exc:  # noqa: BLE001 - a background nicety: log, never disturb the page
                log.warning("%s: %s: %s", failure, type(exc).__name__, exc)
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    @property
    def running(self) -> int:
        """How many tasks run now."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask every task to stop and wait for them, within ``timeout`` seconds; whether they all ended."""
        self._stopped.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


def warm_up(pipe: AgingPipeline, measures: Any = None, should_stop: ShouldStop | None = None,
            preview_size: int = 256) -> None:
    """Run the networks of a photo's first preview once on a plain grey face and load the face detector, the
    landmark model and the measures' models: first calls pay one-off costs (kernel set-up, the bfloat16 copies,
    model files; about 2 s on a 2-core CPU) that the first visitor should not wait for. Run it as background work
    (:meth:`Background.start`)."""
    began = time.monotonic()
    grey = Image.new("RGB", (pipe.input_size, pipe.input_size), (128, 128, 128))
    detect_faces(grey.resize((64, 64)))  # loads dlib's detector and landmark model
    for step in (lambda: pipe.first_look(grey, [50]),
                 lambda: pipe.render(pipe.latents(pipe.encode(grey, cache=False), [50], fast=True),
                                     size=min(preview_size, pipe.output_size), fast=True),
                 lambda: measures and (measures.age(grey), measures.descriptor(grey))):
        check_stop(should_stop)
        step()
    log.info("warm-up done in %.1f s", time.monotonic() - began)
