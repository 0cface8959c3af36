"""The video job's two helper threads, alongside the networks: read-ahead (decoding, tracking, alignment) and
the output (colour matching, paste-back and H.264 writing).

Both hand their errors (a cancel included) to the job's own thread, and both end on every way out of the job:
closing :func:`read_ahead`'s generator stops its thread and closes what it reads; :meth:`FrameOutput.finish` waits
for the frames put (or drops them) and finishes or abandons the MP4.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sam.cancel import JobCancelledError, Progress, ShouldStop, check_stop
from sam.faces.paste import apply_color_shift, color_shift, paste_back
from sam.video.keyframes import TrackedFace, TrackedFrame
from sam.video.mp4 import Mp4Writer

__all__ = ["read_ahead", "FrameOutput"]

_COLOUR_SIDE = 64  # a rendered face's colour is compared with the frame's on 64 px copies (sam.faces.paste.color_shift)
_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def read_ahead(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """``items`` produced in a thread of their own, up to ``depth`` ahead of the consumer (errors raised here).
    Closing this generator stops the thread (and closes ``items`` there)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in items:
                if not put(x):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="clip-reader", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Failed):
                raise x.exc
            yield x
    finally:
        stop.set()
        thread.join()


class FrameOutput:
    """Colour matching, paste-back and H.264 writing of finished frames, in order; in a thread of its own when
    ``threaded`` (the networks never wait for it). Errors (a cancel included) surface at the next :meth:`put`.

    ``on_pasted(frame, face)`` is called for each face pasted (the job's trace records), in the writing thread.
    """

    def __init__(self, path: Path, fps: Fraction, total: int, seconds: dict[str, float],
                 progress: Progress | None, should_stop: ShouldStop | None,
                 on_pasted: Callable[[TrackedFrame, TrackedFace], None] | None, threaded: bool):
        self.path, self.fps, self.total, self.seconds = path, fps, total, seconds
        self.progress, self.should_stop, self.on_pasted = progress, should_stop, on_pasted
        self.writer: Mp4Writer | None = Mp4Writer(path, fps)  # opened at the first frame
        self.n = 0
        self.error: BaseException | None = None
        self.q: queue.Queue[Any] | None = queue.Queue(maxsize=16) if threaded else None
        self.thread: threading.Thread | None = None
        if self.q is not None:
            # in the caller's context: progress callbacks (e.g. Gradio's) find their request there
            self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                           name="clip-writer", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        assert self.q is not None
        while True:
            item = self.q.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the producer
                    self.error = exc

    def _write(self, fr: TrackedFrame, faces: list[Image.Image]) -> None:
        check_stop(self.should_stop)
        t0 = time.perf_counter()
        out = fr.image
        for f, face in zip(fr.faces, faces, strict=True):
            tr = f.track
            shift = color_shift(face, f.aligned.image, size=_COLOUR_SIDE, reducing_gap=None)
            face = apply_color_shift(face, tr.colour(fr.t, torch.from_numpy(shift)))
            out = paste_back(out, f.aligned, face)
            tr.frames += 1
            if self.on_pasted is not None:
                self.on_pasted(fr, f)
        t1 = time.perf_counter()
        self.seconds["paste"] += t1 - t0
        assert self.writer is not None, "a frame after finish()"
        self.writer.write(out)
        self.seconds["write"] += time.perf_counter() - t1
        self.n += 1
        if self.progress is not None:
            self.progress(self.n, max(self.total, self.n))

    def put(self, fr: TrackedFrame, faces: list[Image.Image]) -> None:
        if self.error is not None:
            raise self.error
        if self.q is None:
            self._write(fr, faces)
            return
        while True:
            try:
                self.q.put((fr, faces), timeout=0.05)
                return
            except queue.Full:
                if self.error is not None:
                    raise self.error from None

    def finish(self, ok: bool = True) -> None:
        """Wait for the frames put (``ok``) and finish the MP4, or drop them and abandon it; raises a failure of the
        thread."""
        if self.thread is not None and self.q is not None:
            if not ok:
                self.error = self.error or JobCancelledError("stopped")
            self.q.put(_END)
            self.thread.join()
            self.thread = None
        writer, self.writer = self.writer, None
        if writer is not None:
            if ok and self.error is None:
                writer.close()
            else:
                writer.abort()
        if ok and self.error is not None:
            raise self.error
