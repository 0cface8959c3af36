"""How the page's and the API's handlers run: as cancellable jobs of one app, in the order of its scheduler.

:meth:`Jobs.job` wraps a handler for Gradio: the work runs in a worker thread whose model calls have the handler's
priority (:mod:`sam.serving.scheduler`), polls ``should_stop`` between images and frames, and turns every failure
into a message in words. :meth:`Jobs.stream` does the same for a page handler that yields several updates (the
interpolated preview, then the exact one). :meth:`Jobs.long_turn` puts a video in the line of long jobs, with its
place and an estimate on the progress bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio
import gradio as gr

from sam.serving.scheduler import INTERACTIVE, Priority, Scheduler
from web import glue
from web.messages import log_done, log_rejected, page_failure, readable
from web.visitors import address_of

__all__ = ["Jobs", "file_busy", "file_hidden", "file_shown"]


def file_shown(path: Any) -> dict:
    """A file box (or image) with its file, shown."""
    return gr.update(value=path, visible=True)


def file_hidden() -> dict:
    """A file box (or image) without a file: hidden (an empty box would take ~220 px of the page)."""
    return gr.update(value=None, visible=False)


def file_busy() -> dict:
    """A download box while its file renders: shown, empty, for the progress."""
    return gr.update(value=None, visible=True)


class Jobs:
    """The handlers of one app as Gradio runs them, over the app's :class:`~sam.serving.scheduler.Scheduler`."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def job(self, fn: Callable, *, page: Any = None, desc: str = "working", unit: str = "images",
            level: Priority = INTERACTIVE, hide_on_failure: Sequence[Any] = ()) -> Callable:
        """Run ``fn`` as a cancellable model job, for Gradio.

        The work runs in a worker thread whose model calls have priority ``level``, and polls ``should_stop``
        between images and frames: a cancelled event (the page's Cancel, ``job.cancel()`` of a client), a closed
        page or a stopping server stops it within one image, closes its video writer and removes its partial files.
        A cancel is answered at once; the thread finishes its current image meanwhile. ``progress(done, total,
        note)`` goes to Gradio's progress bar; ``owner`` is the visitor (the page's or the client's session), for
        the one-video-per-visitor rule, and ``address`` where it connects from (:func:`web.visitors.address_of`),
        for the videos-per-address rule. Errors become messages in words: for the page (``page`` is the panel's
        status-line component; handlers return a dict of updates) a status-line update; for the API a
        ``gr.Error`` in plain words (no traceback in the log); the page's ``hide_on_failure`` components (the
        download box shown empty for the progress) are hidden again. One log line per finished job, with its time.
        """
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)  # resolved, so Gradio sees gr.SelectData / gr.Request parameters
        inputs = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
                  if p.kind is p.POSITIONAL_OR_KEYWORD]
        wants = {name for name in ("progress", "should_stop", "owner", "address") if name in sig.parameters}
        scheduler = self.scheduler

        async def run(*args: Any) -> Any:
            *values, tracker = args
            blocks, event_id = glue.current_event()
            request = glue.current_request()
            stop = threading.Event()
            kwargs: dict[str, Any] = {}
            if "should_stop" in wants:
                kwargs["should_stop"] = scheduler.should_stop(
                    stop.is_set, lambda: not glue.event_alive(blocks, event_id))
            if "progress" in wants and tracker is not None:  # (None: called outside a server)
                kwargs["progress"] = lambda done, total, note=None: tracker((done, total), desc=note or desc,
                                                                            unit=unit)
            if "owner" in wants:
                kwargs["owner"] = getattr(request, "session_hash", None)
            if "address" in wants:
                kwargs["address"] = address_of(request)

            def work() -> Any:
                interactive = scheduler.interactive_request() if level == INTERACTIVE else contextlib.nullcontext()
                with scheduler.running.track(), scheduler.priority(level), interactive:
                    return fn(*values, **kwargs)

            began = time.monotonic()
            try:
                out = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            except asyncio.CancelledError:
                stop.set()  # the thread sees it at its next image and cleans up; the cancel is answered now
                log_done(fn.__name__, time.monotonic() - began, "cancelled")
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message
                log_rejected(fn.__name__, exc, time.monotonic() - began)
                if page is not None:
                    return {page: page_failure(exc), **{box: file_hidden() for box in hide_on_failure}}
                raise gr.Error(readable(exc, markup=False), print_exception=False) from None
            log_done(fn.__name__, time.monotonic() - began)
            return out

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        run.handler = fn  # what it runs (for tests)
        run.__annotations__ = {p.name: p.annotation for p in inputs if p.annotation is not p.empty}
        run.__signature__ = sig.replace(parameters=[
            *inputs, inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())])
        return run

    def stream(self, fn: Callable, page: Any) -> Callable:
        """A page handler that yields several updates (the interpolated preview, then the exact one), an
        interactive request for its whole length; errors go to the status line ``page``. One log line when it
        ends, with its time."""
        scheduler = self.scheduler

        @functools.wraps(fn)
        def run(*args: Any):
            began = time.monotonic()
            sent: list[float] = []  # when each update left, in seconds from the start (the log line says)
            with scheduler.interactive_request():  # less urgent work waits between this request's passes
                updates = fn(*args)
                try:
                    for update in updates:
                        sent.append(time.monotonic() - began)
                        yield update
                except Exception as exc:  # noqa: BLE001 - every failure becomes a message
                    log_rejected(fn.__name__, exc, time.monotonic() - began)
                    yield {page: page_failure(exc)}
                    return
                except GeneratorExit:  # a newer event replaced this one (the slider moved on)
                    updates.close()
                    log_done(fn.__name__, time.monotonic() - began, "superseded", sent)
                    raise
            log_done(fn.__name__, time.monotonic() - began, steps=sent)

        return run

    @contextlib.contextmanager
    def long_turn(self, owner: str | None, kind: str, units: int, should_stop: Callable | None,
                  progress: Callable | None, address: str | None = None) -> Iterator[Callable]:
        """Wait in the long-job line (:class:`sam.serving.scheduler.LongJobs`) with the place and an estimate on the
        progress bar; the value is the progress function to pass on (it also refines the others' estimates)."""
        def report(text: str) -> None:
            if progress is not None:
                progress(0, units, f"waiting: {text}")

        with self.scheduler.long_jobs.turn(owner, kind, units, should_stop, report, address) as turn:
            def step(done: int, total: int, *note: Any) -> None:
                turn.progress(done, total)
                if progress is not None:
                    progress(done, total, *note)

            yield step
