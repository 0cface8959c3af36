"""Gradio app: drop a photo, move the age slider, see the same person at that age.

Panels: the age slider (a fast preview on release, a full-resolution download, paste back into the photo, a strip
of ages side by side), reference style mixing, lifespan video export, and a Video tab that ages the people in a
clip (``sam/clip.py``). Named API endpoints for ``gradio_client``: ``/age``, ``/mix``, ``/lifespan`` and ``/video``
(docs/app.md).

Thin: every photo's flow (loading, faces, alignment, encoding, ages, paste-back, measures) lives in
``sam/session.py``; this file wires the page, runs model calls as cancellable jobs in one queue, and turns every
failure into a message in words (on the page a status line that stays, no toast; the API's error text; one log
line each). The page is :class:`Page`: one builder per panel, the handlers as its methods, all the wiring in
``Page.wire``.

Modules of the page besides this file (the Dockerfile copies each): ``gradio_glue.py``, every use of Gradio's
internals (event liveness, the queue limit, the upload check, the raw-HTTP defaults, cache clean-up).

    python app.py [--checkpoint weights/sam_ffhq_aging.pt] [--host 0.0.0.0] [--port 7860] [--device cpu]
                  [--share] [--no-download] [--int8-style-heads] [--max-queue 16] [--precision auto]

(``--checkpoint_path``, ``--int8_style_heads``, ``--no_download`` and ``--max_queue``, the CLI's spellings, work
too.)

Host and port default to ``$GRADIO_SERVER_NAME`` / ``$GRADIO_SERVER_PORT`` (else 127.0.0.1:7860). When the
checkpoint is missing it is downloaded at start (``sam/checkpoint.py``); offline, the page still loads and says how
to provide it.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import functools
import html
import inspect
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import typing
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import gradio as gr
from PIL import Image

import gradio_glue
from sam.ages import key_ages, to_age
from sam.cancel import JobCancelledError
from sam.faces.detect import NoFaceError
from sam.faces.image_io import ImageLoadError
from sam.network.checkpoint import CheckpointError
from sam.network.mixing import LAYER_PRESETS as MIXING_PRESETS
from sam.network.mixing import layer_groups
from sam.network.precision import PRECISIONS
from sam.pipeline import AgingPipeline
from sam.requests import RequestError, is_best, read_flag, read_number, read_size
from sam.serving.scheduler import (
    INTERACTIVE,
    LONG,
    JobLimitError,
    LongJobs,
    Priority,
    interactive_request,
    priority,
    running,
    stopping,
)
from sam.session import MAX_FRAMES_BETWEEN, FaceSession, GroupSession, SessionCache, stop_background_work, warm_up
from sam.video.clip import VIDEO_FORMAT_NAMES, VIDEO_SUFFIXES, ClipLimits, age_clip, probe_clip

log = logging.getLogger("sam.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (ROOT / "assets").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
STRIP_AGES = list(range(0, 101, 10))
VIDEO_SIZES = [128, 256, 512, 1024]
CACHE_ENTRIES = 8
OUTPUT_MAX_AGE_S = 3600  # results and uploads are deleted after an hour, and when the server stops
MAX_UPLOAD = "30mb"
CLIP_MAX_MB = 30  # the Video tab's limits: file size, length, and the frame side it works at
CLIP_MAX_SECONDS = 20
CLIP_MAX_SIDE = 1280
CLIP_MAX_FPS = 60
CLIP_MAX_FRAMES = 600  # 20 s at 30 frames per second
CLIP_MAX_PIXELS = 7680 * 4320  # 8K frames at most (scaled down while decoding)
MAX_QUEUE = 16  # events waiting for a slot at once; more get "busy, try again"
MAX_LONG_WAITING = 4  # videos waiting for their turn (sam.scheduler.LongJobs); more get "too many videos"
STOP_WAIT_S = 20.0  # on SIGTERM, how long running jobs get to reach their next frame and clean up
SWEEP_EVERY_S = 300.0  # how often results older than an hour are deleted
DUPLICATE_WINDOW_S = 2.0
# Two Gradio concurrency groups: quick work (sliders, face picks, full-resolution renders, mixing) and long work
# (videos, the ages strip). Both only start events; which network pass runs next is decided by the model lock
# and the long-job line of sam.scheduler (interactive first; one video at a time, in arrival order).
QUICK = {"concurrency_limit": 4, "concurrency_id": "quick"}
SLOW = {"concurrency_limit": MAX_LONG_WAITING + 2, "concurrency_id": "long"}
HIDDEN = {"api_visibility": "undocumented"}  # the page's own events: not part of the named API
BUSY_MESSAGE = "The server is busy with other people's requests right now. Please try again in a minute."
PRIVACY = ("Photos are processed on this server and kept only while you use them: uploads and results are deleted "
           "after an hour, and when the server stops.")

# The page's one message when the model is not loaded: what the person running the app can do (no server paths; the
# reason, with paths, is one line in the log).
SETUP_HELP = (
    "⚠️ **The model is not loaded, so photos cannot be aged yet.** If you run this app: put the checkpoint "
    "`sam_ffhq_aging.pt` (2.3 GB) in the `weights/` folder next to `app.py`, or pass its path with `--checkpoint PATH` "
    "(or set `SAM_CHECKPOINT`), then start the app again; `python -m sam weights` downloads and checks it "
    "(weights/README.md says where else to get it). To try the page without it, on random weights: "
    "`python -m sam random-checkpoint --out /tmp/tiny.pt`, then `python app.py --checkpoint /tmp/tiny.pt`. "
    "The app's log says why it was not loaded."
)

# The mixing presets of sam.mixing, plus a UI-only choice for typed-in layers.
LAYER_PRESETS = {**MIXING_PRESETS, "custom layers": "custom"}


# --------------------------------------------------------------------------------------------------- messages


def readable(exc: BaseException, markup: bool = True) -> str:
    """The message a person sees for a failure: in words, without server paths or internal names; HTML-escaped for
    the page (``markup``), plain for API clients."""
    if isinstance(exc, gr.Error):
        text = str(exc.message)
    elif isinstance(exc, JobCancelledError):
        text = "Cancelled."
    elif isinstance(exc, NoFaceError):
        text = str(exc)
        if "already aligned" not in text and "video" not in text:  # the photo hint, not for a video
            text += ". If the photo is already an aligned face crop, tick \"already aligned\""
    elif isinstance(exc, (RequestError, ImageLoadError, CheckpointError, JobLimitError, ValueError)):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = "The server ran out of memory for this request. Please try a smaller photo or video size."
    else:
        text = "Something went wrong on the server. Please try again."
    text = text.strip() or "Something went wrong on the server. Please try again."
    for secret in {str(ROOT), tempfile.gettempdir()}:
        text = text.replace(secret, "…")
    if "_" not in text.split(" ", 1)[0]:  # a sentence starts with a capital; a parameter name keeps its spelling
        text = text[:1].upper() + text[1:]
    text = text if text.endswith((".", "!", "?")) else text + "."
    return html.escape(text, quote=False) if markup else text


def _log_rejected(where: str, exc: BaseException, seconds: float) -> None:
    """One log line per rejected request, with its time (a traceback only for a failure that is not the request's
    fault)."""
    if isinstance(exc, (RequestError, ImageLoadError, NoFaceError, ValueError, JobCancelledError, gr.Error)):
        log.info("%s rejected after %.2f s: %s: %s", where, seconds, type(exc).__name__, str(exc)[:300])
    else:
        log.error("%s failed after %.2f s: %s: %s", where, seconds, type(exc).__name__, str(exc)[:300], exc_info=exc)


def _log_done(where: str, seconds: float, what: str = "done") -> None:
    """One log line per finished request or job, with its time."""
    log.info("%s %s in %.2f s", where, what, seconds)


def status(text: str) -> str:
    return f"⚠️ {text}" if text else ""


class ModelNotLoaded(gr.Error):
    """A request while the model is not loaded. API clients get its words; the page shows the banner's
    instructions once and only a pointer to them in the panel's status line (no toast)."""


NOT_LOADED_HERE = "Not available until the model is loaded: see the message at the top of the page."


def page_failure(exc: BaseException) -> str:
    """The status-line text of a page handler's failure (the only place it is shown: no toast, which would outlive
    its photo)."""
    if isinstance(exc, ModelNotLoaded):
        return status(NOT_LOADED_HERE)
    return status(readable(exc))


# --------------------------------------------------------------------------------------------------- jobs


def job(fn: Callable, *, page: Any = None, desc: str = "working", unit: str = "images",
        level: Priority = INTERACTIVE, hide_on_failure: Sequence[Any] = ()) -> Callable:
    """Run ``fn`` as a cancellable model job, for Gradio.

    The work runs in a worker thread whose model calls have priority ``level`` (:mod:`sam.scheduler`), and polls
    ``should_stop`` between images and frames: a cancelled event (the page's Cancel, ``job.cancel()`` of a
    client), a closed page or a stopping server stops it within one image, closes its video writer and removes its
    partial files. A cancel is answered at once; the thread finishes its current image meanwhile.
    ``progress(done, total, note)`` goes to Gradio's progress bar; ``owner`` is the visitor (the page's or the
    client's session), for the one-video-per-visitor rule. Errors become messages in words: for the page (``page``
    is the panel's status-line component; handlers return a dict of updates) a status-line update; for the
    API a ``gr.Error`` in plain words (no traceback in the log); the page's ``hide_on_failure`` components (the
    download box shown empty for the progress) are hidden again. One log line per finished job, with its time.
    """
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)  # resolved, so Gradio sees gr.SelectData / gr.Request parameters
    inputs = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
              if p.kind is p.POSITIONAL_OR_KEYWORD]
    wants = {name for name in ("progress", "should_stop", "owner") if name in sig.parameters}

    async def run(*args: Any) -> Any:
        *values, tracker = args
        blocks, event_id = gradio_glue.current_event()
        request = gradio_glue.current_request()
        stop = threading.Event()
        kwargs: dict[str, Any] = {}
        if "should_stop" in wants:
            kwargs["should_stop"] = lambda: (stop.is_set() or stopping.is_set()
                                             or not gradio_glue.event_alive(blocks, event_id))
        if "progress" in wants:
            kwargs["progress"] = lambda done, total, note=None: tracker((done, total), desc=note or desc, unit=unit)
        if "owner" in wants:
            kwargs["owner"] = getattr(request, "session_hash", None)

        def work() -> Any:
            request = interactive_request() if level == INTERACTIVE else contextlib.nullcontext()
            with running.track(), priority(level), request:
                return fn(*values, **kwargs)

        began = time.monotonic()
        try:
            out = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except asyncio.CancelledError:
            stop.set()  # the thread sees it at its next image and cleans up; the cancel is answered now
            _log_done(fn.__name__, time.monotonic() - began, "cancelled")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message
            _log_rejected(fn.__name__, exc, time.monotonic() - began)
            if page is not None:
                return {page: page_failure(exc), **{box: file_hidden() for box in hide_on_failure}}
            raise gr.Error(readable(exc, markup=False), print_exception=False) from None
        _log_done(fn.__name__, time.monotonic() - began)
        return out

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    run.handler = fn  # what it runs (for tests)
    run.__annotations__ = {p.name: p.annotation for p in inputs if p.annotation is not p.empty}
    run.__signature__ = sig.replace(parameters=[
        *inputs, inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())])
    return run


def stream(fn: Callable, page: Any) -> Callable:
    """A page handler that yields several updates (the interpolated preview, then the exact one), an interactive
    request for its whole length; errors go to the status line ``page``. One log line when it ends, with its
    time."""

    @functools.wraps(fn)
    def run(*args: Any):
        began = time.monotonic()
        with interactive_request():  # less urgent work waits between this request's passes (sam.scheduler)
            try:
                yield from fn(*args)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a message
                _log_rejected(fn.__name__, exc, time.monotonic() - began)
                yield {page: page_failure(exc)}
                return
            except GeneratorExit:  # a newer event replaced this one (the slider moved on)
                _log_done(fn.__name__, time.monotonic() - began, "superseded")
                raise
        _log_done(fn.__name__, time.monotonic() - began)

    return run


class UnreadableUpload(str):
    """What :func:`photo_input` passes on for an upload that is not an image: the message, for the handler to show
    on the status line (raising in preprocessing would leave only error badges and a toast)."""


NOT_AN_IMAGE = "this file is not an image the app can read. Please upload a JPEG, PNG or WebP photo"


def photo_input(**kwargs: Any) -> gr.Image:
    """An image upload that is checked with the project's own rules before anything else decodes it: a text file
    named ``.png`` or a corrupt upload gets a message in words (on the status line), not a preprocessing error
    with server paths. Passes the uploaded file's path on (the session layer loads a downscaled working copy of
    large photos). A plain ``gr.Image`` whose preprocessing is replaced (a subclass would make Gradio write stub
    files next to this module)."""
    return gradio_glue.own_preprocess(gr.Image(type="filepath", **kwargs), check_upload)


def check_upload(payload: Any) -> str | None:
    """The uploaded file's path, or an :class:`UnreadableUpload` saying why it cannot be used."""
    if payload is None:
        return None
    path = getattr(payload, "path", None) or (payload.get("path") if isinstance(payload, dict) else None)
    if not path:
        return UnreadableUpload("the upload did not arrive. Please try again")
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header only: cheap, no decoding
    except Exception:  # noqa: BLE001 - anything that is not an image
        return UnreadableUpload(NOT_AN_IMAGE)
    return str(path)


def readable_upload(image: Any) -> None:
    """Raise the message of an upload :func:`check_upload` could not read."""
    if isinstance(image, UnreadableUpload):
        raise RequestError(str(image))


@contextlib.contextmanager
def _long_turn(jobs: LongJobs, owner: str | None, kind: str, units: int, should_stop: Callable | None,
               progress: Callable | None) -> Iterator[Callable]:
    def report(text: str) -> None:
        if progress is not None:
            progress(0, units, f"waiting: {text}")

    with jobs.turn(owner, kind, units, should_stop, report) as turn:
        def step(done: int, total: int, *note: Any) -> None:
            turn.progress(done, total)
            if progress is not None:
                progress(done, total, *note)

        yield step


def _end_ffmpeg_children() -> None:
    """Terminate any ffmpeg this process started that is still running (a last resort when stopping: every job
    closes its own readers and writers)."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == me and "ffmpeg" in stat.with_name("cmdline").read_text(errors="replace"):
                os.kill(int(stat.parent.name), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            continue


# --------------------------------------------------------------------------------------------------- the app


RETRY_LINE = re.compile(r"Retrying \(\d+/\d+\) in [\d.]+s: ")


class WithoutRetryLines:
    """A stream (stderr, while the app loads the model) without the downloader's "Retrying (2/5) in 1.3s: <error>"
    lines: offline, they were five lines of a name-resolution error before the useful one (the reason is in the one
    log line of the failed load). Everything else, the download's progress bar included, passes through."""

    def __init__(self, stream: Any):
        self._stream = stream
        self._newline_owed = False  # print() writes its text, then "\n" in a second write

    def write(self, text: str) -> int:
        if RETRY_LINE.match(text):
            self._newline_owed = not text.endswith("\n")
            return len(text)
        if self._newline_owed and text == "\n":
            self._newline_owed = False
            return len(text)
        self._newline_owed = False
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _warm_up(pipe: AgingPipeline, measures: Any) -> None:
    """The start-up warm-up (:func:`sam.session.warm_up`), after importing matplotlib: Gradio imports it on its event
    loop at the first event (to choose a plotting backend), which held the first visitor's upload up by ~0.3 s."""
    with contextlib.suppress(ImportError):
        import matplotlib.pyplot  # noqa: F401
    warm_up(pipe, measures)


class AgeApp:
    """The page's and the API's handlers over one pipeline; per-photo state lives in :class:`SessionCache`."""

    def __init__(self, pipe: AgingPipeline | None, problem: str = "", workdir: str | os.PathLike | None = None,
                 warm: bool = False):
        self.pipe = pipe
        self.problem = problem
        self.sessions = SessionCache(pipe, CACHE_ENTRIES)
        self.long_jobs = LongJobs(max_waiting=MAX_LONG_WAITING)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sam-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.cleanup)
        self._recent: dict[tuple, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.demo: gr.Blocks | None = None  # the page, once built (for cleaning its cache)
        self.own_dirs: list[Path] = []  # removed with the results when the server stops (e.g. its upload folder)
        threading.Thread(target=self._sweep_loop, name="sam-results-sweep", daemon=True).start()
        if warm and pipe is not None:  # the first visitor should not pay for first-call set-up costs
            threading.Thread(target=_warm_up, args=(pipe, self.sessions.measures), name="sam-warm-up",
                             daemon=True).start()

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, device: str | None = None,
             problem: str | None = None, int8_style_heads: bool = False, download: bool = False,
             precision: str = "auto", warm: bool = False) -> AgeApp:
        """The app over the checkpoint's pipeline (or, when it cannot be loaded, a page that says so). ``warm``: run
        every network once in the background at start, so the first visitor does not pay first-call costs."""
        if problem:
            return cls(None, f"The model is not loaded. {problem}")
        try:
            with contextlib.redirect_stderr(WithoutRetryLines(sys.stderr)):  # a failed download: one log line
                pipe = AgingPipeline.from_pretrained(checkpoint, download=download, device=device,
                                                     int8_style_heads=int8_style_heads, precision=precision)
            log.info("precision: %s (%s)", pipe.precision.name, pipe.precision.reason)
        except CheckpointError as exc:  # the message says what to do (missing file: how to get it)
            return cls(None, f"The model is not loaded: {exc}")
        except ValueError as exc:  # e.g. int8 style heads asked for on a GPU
            return cls(None, f"The model is not loaded: {exc}.")
        return cls(pipe, warm=warm)

    def cleanup(self) -> None:
        """Remove this app's results and the uploads Gradio cached for its page (when the server stops, and at
        exit)."""
        self._closed.set()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.demo is not None:
            gradio_glue.delete_cached_files(self.demo)
        for folder in self.own_dirs:
            shutil.rmtree(folder, ignore_errors=True)

    def shutdown(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop like a hosted server is stopped (SIGTERM): every running job ends at its next frame (waiting ones at
        once) and removes its partial files; then the server closes and results and uploads are deleted."""
        stopping.set()
        if not running.wait_idle(timeout):
            log.warning("%d job(s) still running after %.0f s; stopping anyway", running.count, timeout)
        stop_background_work(timeout=5.0)
        try:
            if self.demo is not None:
                self.demo.close()  # also calls cleanup (see build_demo)
        finally:
            self.cleanup()
            _end_ffmpeg_children()

    def sweep(self, max_age_s: float = OUTPUT_MAX_AGE_S) -> int:
        """Delete results older than ``max_age_s``; how many were deleted."""
        cutoff = time.time() - max_age_s
        gone = 0
        for old in self.workdir.glob("sam-*"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
                    gone += 1
            except OSError:
                pass
        return gone

    def _sweep_loop(self) -> None:
        while not self._closed.wait(SWEEP_EVERY_S):
            self.sweep()

    def long_turn(self, owner: str | None, kind: str, units: int, should_stop: Callable | None,
                  progress: Callable | None) -> Any:
        """Wait in the long-job line (:class:`sam.scheduler.LongJobs`) with the place and an estimate on the progress
        bar; a context whose value is the progress function to pass on (it also refines the others' estimates)."""
        return _long_turn(self.long_jobs, owner, kind, units, should_stop, progress)

    # ------------------------------------------------------------------------------------------ helpers

    @property
    def full_size(self) -> int:
        return self.pipe.output_size if self.pipe else 1024

    def session(self, image: Any, already_aligned: Any = False, face_index: Any = 0,
                what: str = "photo") -> FaceSession:
        readable_upload(image)
        if self.pipe is None:
            raise ModelNotLoaded(self.problem_for_people(), print_exception=False)
        return self.sessions.session(image, already_aligned, face_index, what)

    def problem_for_people(self) -> str:
        """The model-missing message for API clients, without server paths (the operator's details are in the log;
        the page shows :data:`SETUP_HELP`)."""
        return "The model is not loaded on this server, so photos cannot be aged yet."

    def new_path(self, suffix: str) -> Path:
        return self.workdir / f"sam-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}{suffix}"

    # ------------------------------------------------------------------------------------------ API (named)

    def age(self, image: Any, target_age: Any, size: Any = None, already_aligned: Any = False, face_index: Any = 0,
            paste_back: Any = False, faces: Any = "best", ages: Any = None) -> Image.Image:
        """One aged image: the face at ``size`` px (default full resolution), or the whole photo with paste-back.
        ``faces`` other than ``"best"`` (``"all"``, ``"1,3"``): the whole photo with each of those faces aged, to
        ``target_age`` or to its own age of ``ages`` (``"60,25"``, in the order of ``faces``)."""
        if is_best(faces):
            if ages not in (None, "") and not (isinstance(ages, (list, tuple)) and not ages):
                raise RequestError("per-face ages need faces: \"all\" or face numbers such as \"1,3\"")
            s = self.session(image, already_aligned, face_index)
            return s.render(to_age(target_age), size=read_size(size, s.pipe.output_size),
                            paste=read_flag(paste_back, "paste_back"))
        g = self.group(image, faces, already_aligned, face_index)
        return g.render(g.ages(target_age, ages), size=read_size(size, g.pipe.output_size))

    def group(self, image: Any, faces: Any, already_aligned: Any = False, face_index: Any = 0) -> GroupSession:
        """Several faces of a photo, aged together (:meth:`SessionCache.group`)."""
        readable_upload(image)
        if self.pipe is None:
            raise ModelNotLoaded(self.problem_for_people(), print_exception=False)
        if read_flag(already_aligned, "already_aligned"):
            raise RequestError("an aligned face crop has one face: several faces need a photo with \"already "
                               "aligned\" off")
        return self.sessions.group(image, faces, face_index)

    def mix(self, image: Any, reference: Any, target_age: Any, latent_mask: Any = "fine", alpha: Any = 1.0,
            size: Any = None, already_aligned: Any = False, reference_aligned: Any = False) -> Image.Image:
        """The aged face with the ``latent_mask`` styles of a reference face."""
        s = self.session(image, already_aligned, 0)
        if reference is None or (isinstance(reference, str) and not reference.strip()):
            raise RequestError("add a reference photo for style mixing")
        ref = self.session(reference, reference_aligned, 0, what="reference photo")
        return s.mix(ref, target_age, latent_mask, alpha, size=read_size(size, s.pipe.output_size))[0]

    def lifespan(self, image: Any, start_age: Any = 0, end_age: Any = 100, frames_between: Any = 10, fps: Any = 20,
                 size: Any = 256, boomerang: Any = False, already_aligned: Any = False, face_index: Any = 0,
                 faces: Any = "best", *, progress: Callable | None = None, should_stop: Callable | None = None,
                 owner: str | None = None) -> str:
        """The lifespan MP4's path; with ``faces`` other than ``"best"``, the group video of the whole photo."""
        return str(self.lifespan_job(image, start_age, end_age, frames_between, fps, size, boomerang,
                                      already_aligned=already_aligned, face_index=face_index, faces=faces,
                                      progress=progress, should_stop=should_stop, owner=owner).mp4)

    def lifespan_job(self, image: Any, start_age: Any = 0, end_age: Any = 100, frames_between: Any = 10,
                      fps: Any = 20, size: Any = 256, boomerang: Any = False, label: bool = False,
                      gif: bool = False, already_aligned: Any = False, face_index: Any = 0, faces: Any = "best", *,
                      progress: Callable | None = None, should_stop: Callable | None = None,
                      owner: str | None = None) -> Any:
        """The lifespan job (its :class:`sam.lifespan.LifespanResult`), after its turn in the long-job line: one face,
        or with ``faces`` (``"all"``, ``"1,3"``) the whole photo with those faces aging together."""
        if not is_best(faces):
            g = self.group(image, faces, already_aligned, face_index)
            keys = key_ages(start_age, end_age)
            between = read_number(frames_between, "frames between key ages", 0, MAX_FRAMES_BETWEEN, integer=True,
                                  default=10)
            flag = read_flag(boomerang, "boomerang")
            mp4 = self.new_path(".mp4")
            frames = (len(keys) - 1) * (between + 1) + 1  # the kind's own rate: seconds per group frame
            with self.long_turn(owner, "group lifespan", frames, should_stop, progress) as step:
                return g.lifespan(mp4, start_age, end_age, between, fps, size, flag, label,
                                  gif_path=mp4.with_suffix(".gif") if gif else None, progress=step,
                                  should_stop=should_stop)
        s = self.session(image, already_aligned, face_index)
        keys = key_ages(start_age, end_age)
        between = read_number(frames_between, "frames between key ages", 0, MAX_FRAMES_BETWEEN, integer=True,
                              default=10)
        flag = read_flag(boomerang, "boomerang")
        mp4 = self.new_path(".mp4")
        with self.long_turn(owner, "lifespan", (len(keys) - 1) * (between + 1) + 1, should_stop, progress) as step:
            return s.lifespan(mp4, start_age, end_age, between, fps, size, flag, label,
                              gif_path=mp4.with_suffix(".gif") if gif else None, progress=step,
                              should_stop=should_stop)

    def video(self, clip: Any, target_age: Any = 70, faces: Any = "largest", output_size: Any = 256,
              start: Any = None, end: Any = None, preview: Any = False, *, key_frames: Any = "auto",
              progress: Callable | None = None, should_stop: Callable | None = None, owner: str | None = None) -> str:
        """Age the people in a clip (``sam.clip``: tracked, steady, the sound kept); the MP4's path."""
        return str(self.age_video(clip, target_age, faces, output_size, start, end, preview, key_frames,
                                  progress=progress, should_stop=should_stop, owner=owner).path)

    def age_video(self, clip: Any, target_age: Any = 70, faces: Any = "largest", output_size: Any = 256,
                  start: Any = None, end: Any = None, preview: Any = False, key_frames: Any = "auto", *,
                  progress: Callable | None = None, should_stop: Callable | None = None,
                  owner: str | None = None) -> Any:
        """The video job's :class:`sam.clip.ClipResult`. The clip must be at most ``CLIP_MAX_MB`` and
        ``CLIP_MAX_SECONDS`` long; frames are worked on with the long side at most ``CLIP_MAX_SIDE``."""
        path = self.clip_path(clip)
        if self.pipe is None:
            raise ModelNotLoaded(self.problem_for_people(), print_exception=False)
        age = to_age(target_age)
        who = str(faces or "largest").strip().lower()
        if who not in ("largest", "all"):
            raise RequestError(f"faces must be \"largest\" or \"all\", got {str(faces)[:20]!r}")
        side = read_number(output_size, "output size", 8, 1024, integer=True, default=256)
        first = read_number(start, "start", 0, CLIP_MAX_SECONDS, default=0)
        last = read_number(end, "end", 0, CLIP_MAX_SECONDS, default=0) or None  # 0: to the end
        quick = read_flag(preview, "preview")
        keys = "auto" if key_frames in (None, "") or str(key_frames).strip().lower() == "auto" else read_number(
            key_frames, "key frames", 1, 100, integer=True, default=1)
        limits = ClipLimits(seconds=CLIP_MAX_SECONDS, frames=CLIP_MAX_FRAMES, fps=CLIP_MAX_FPS, pixels=CLIP_MAX_PIXELS)
        info = probe_clip(path, limits=limits, should_stop=should_stop)
        if first >= info.duration:
            raise RequestError(f"the start ({first:g} s) is past the end of the video ({info.duration:.1f} s)")
        if last is not None and last <= first:
            raise RequestError(f"the end ({last:g} s) must come after the start ({first:g} s)")
        mp4 = self.new_path(".mp4")
        kind = "video" if keys == "auto" else f"video, faces encoded every {keys} frames"  # its own speed
        with self.long_turn(owner, kind, info.frames, should_stop, progress) as step:
            return age_clip(self.pipe, info, mp4, age, faces=who, output_size=side, start=first, end=last,
                            preview=quick, max_side=CLIP_MAX_SIDE, key_frames=keys, progress=step,
                            should_stop=should_stop)

    @staticmethod
    def clip_path(clip: Any) -> Path:
        """The uploaded clip's path, checked for type and size (a :class:`RequestError` in words)."""
        if isinstance(clip, dict):
            clip = clip.get("path") or clip.get("video")
        path = getattr(clip, "path", None) or clip
        if not path or (isinstance(path, str) and not path.strip()):
            raise RequestError(f"add a video first ({VIDEO_FORMAT_NAMES})")
        path = Path(str(path))
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise RequestError(f"this file ({path.suffix or 'no extension'}) is not a video the page takes. Please "
                               f"upload an {VIDEO_FORMAT_NAMES} clip")
        size = path.stat().st_size if path.is_file() else 0
        if size > CLIP_MAX_MB * 2**20:  # MB as the upload limit counts them (Gradio's "30mb": 30 x 2**20 bytes)
            raise RequestError(f"the video is {size / 2**20:.1f} MB; this page takes clips of at most {CLIP_MAX_MB} MB")
        return path

    # ------------------------------------------------------------------------------------------ the page

    def _repeat(self, *key: Any) -> bool:
        """The browser sends ``change`` twice when one photo replaces another: the repeat (the same photo for the
        same page within ``DUPLICATE_WINDOW_S`` of the first one's end) is skipped. Marks ``key`` as seen now."""
        session = getattr(gradio_glue.current_request(), "session_hash", None)
        if session is None:
            return False
        now = time.monotonic()
        with self._lock:
            for k in [k for k, t in self._recent.items() if now - t > DUPLICATE_WINDOW_S]:
                del self._recent[k]
            seen = (session, *key) in self._recent
            self._recent[(session, *key)] = now
        return seen


def build_demo(checkpoint: str | os.PathLike | None = None, device: str | None = None, *,
               problem: str | None = None, app: AgeApp | None = None, int8_style_heads: bool = False,
               download: bool = False, precision: str = "auto", warm: bool = False) -> gr.Blocks:
    """The Blocks page (:class:`Page`). Loads the model from ``checkpoint`` (downloading it first only with
    ``download``, as ``main`` does); without it the page still loads and says so (the details go to the log).
    ``warm``: see :meth:`AgeApp.load`."""
    app = app or AgeApp.load(checkpoint, device, problem, int8_style_heads=int8_style_heads, download=download,
                             precision=precision, warm=warm)
    if app.problem:
        log.warning("%s", app.problem)
    return Page(app).build()


def file_shown(path: str | os.PathLike | list) -> dict:
    """A file box (or image) with its file, shown."""
    return gr.update(value=path, visible=True)


def file_hidden() -> dict:
    """A file box (or image) without a file: hidden (an empty box would take ~220 px of the page)."""
    return gr.update(value=None, visible=False)


class Page:
    """The page over one :class:`AgeApp`, in parts: one builder per panel (its components become attributes of the
    page), the handlers as methods (each returns or yields a dict of updates, always including its panel's status
    line; tests call them directly), and all the wiring (events, concurrency groups, cancels) in :meth:`wire`.

    Panels: the photo and the age slider (:meth:`photo_panel`), everyone in the picture (:meth:`group_panel`), the
    ages strip (:meth:`strip_panel`), style mixing (:meth:`mixing_panel`), the lifespan video
    (:meth:`lifespan_panel`), the Video tab (:meth:`video_panel`), and the hidden inputs of the named API
    (:meth:`api_panel`)."""

    def __init__(self, app: AgeApp):
        self.app = app
        self.n_styles = app.pipe.n_styles if app.pipe else 18
        self.full = app.full_size
        self.full_label = f"Full resolution ({self.full} px)"

    def build(self) -> gr.Blocks:
        app = self.app
        with gr.Blocks(title="SAM age transformation", delete_cache=(OUTPUT_MAX_AGE_S, OUTPUT_MAX_AGE_S)) as demo:
            demo.sam_app = app  # for tests and embedding
            demo.sam_page = self
            app.demo = demo
            self.header()
            self.photo_panel()
            self.group_panel()
            with gr.Tabs(overflow_behavior="wrap", elem_id="tabs"):  # on a phone every tab stays a button
                with gr.Tab("Ages side by side"):
                    self.strip_panel()
                with gr.Tab("Reference style mixing"):
                    self.mixing_panel()
                with gr.Tab("Lifespan video"):
                    self.lifespan_panel()
                with gr.Tab("Video"):
                    self.video_panel()
            self.wire()
            self.api_panel()
        close = demo.close

        def close_and_clean(*args: Any, **kwargs: Any) -> None:
            try:
                close(*args, **kwargs)
            finally:
                app.cleanup()

        demo.close = close_and_clean
        return accept_older_requests(guard_file_references(demo))

    # ------------------------------------------------------------------------------------------ panels

    def header(self) -> None:
        gr.Markdown("# SAM: see a face at any age\nDrop a photo, move the slider. Re-implementation of *Only a "
                    f"Matter of Style* (Alaluf et al., SIGGRAPH 2021). {PRIVACY}")
        if self.app.problem:
            gr.Markdown(SETUP_HELP, elem_id="weights-problem")

    def photo_panel(self) -> None:
        """The photo, its faces, the aligned face, the preview, the age slider and Full resolution."""
        self.status = gr.Markdown("", elem_id="status")
        self.face_index = gr.State(0)
        with gr.Row():
            with gr.Column(scale=1):
                self.photo = photo_input(sources=["upload", "webcam", "clipboard"], label="Your photo", height=320)
                self.already = gr.Checkbox(False, label="already aligned (an FFHQ-style face crop: skip face "
                                           "detection)")
                self.picker = gr.Gallery(label="Faces found (numbered best first): click the one to age",
                                         visible=False, columns=6, height="auto", allow_preview=False, format="png",
                                         object_fit="contain", show_label=True, elem_id="face-picker")
                with gr.Group(visible=False, elem_id="group-pick") as self.group_pick:
                    self.everyone = gr.Checkbox(False, label="everyone: age every face of the photo",
                                                elem_id="everyone")
                    self.chosen = gr.CheckboxGroup([], label="or the faces to age together (numbers as on the "
                                                   "thumbnails, best first)", elem_id="group-faces")
                if EXAMPLES:
                    gr.Examples(EXAMPLES, inputs=self.photo, label="Examples")
            with gr.Column(scale=1):
                self.aligned_view = gr.Image(label="Aligned face (what the model sees)", format="png",
                                             interactive=False, elem_id="aligned", height=320)
                self.input_info = gr.Markdown("", elem_id="input-age")
            with gr.Column(scale=1):
                self.result = gr.Image(label="Result (preview)", format="png", interactive=False, height=320,
                                       elem_id="result")
                self.result_info = gr.Markdown("", elem_id="result-metrics")
                self.age = gr.Slider(0, 100, value=60, step=1, label="Target age (updates when you let go)",
                                     elem_id="target-age")
                self.paste = gr.Checkbox(False, label="paste back into my photo")
                self.full_btn = gr.Button(self.full_label, elem_id="full-button")
                self.full_file = gr.File(label="Download", interactive=False, elem_id="full-file", visible=False)
                self.full_image = gr.Image(label="Full resolution", format="png", interactive=False, visible=False,
                                           elem_id="full-image")

    def group_panel(self) -> None:
        """Everyone in the picture: the whole photo with the chosen faces aged, each face its own age."""
        self.group_ages = gr.State({})  # face number -> age, for the faces aged together
        with gr.Group(visible=False, elem_id="group-box") as self.group_box:
            gr.Markdown("### Everyone in the picture\nThe age slider above sets the age of everyone chosen, or of one "
                        "face: click its thumbnail (or pick it here) to give it its own age.")
            with gr.Row():
                self.g_who = gr.Radio([("everyone", "all")], value="all", label="The age slider sets the age of",
                                      elem_id="group-who")
                self.g_info = gr.Markdown("", elem_id="group-ages")
            self.g_status = gr.Markdown("", elem_id="group-status")
            self.g_view = gr.ImageSlider(label="Before / after: drag the line", type="pil", format="png",
                                         interactive=False, elem_id="group-slider", max_height=640)
            with gr.Row():
                self.g_full_btn = gr.Button("Full resolution (whole photo)", elem_id="group-full-button")
                self.g_full_file = gr.File(label="Download", interactive=False, elem_id="group-full-file",
                                           visible=False)
            self.g_full_image = gr.Image(label="Full resolution (whole photo)", format="png", interactive=False,
                                         visible=False, elem_id="group-full-image")

    def strip_panel(self) -> None:
        self.strip_status = gr.Markdown("", elem_id="strip-status")
        self.strip_ages = gr.CheckboxGroup([str(a) for a in STRIP_AGES], value=[str(a) for a in STRIP_AGES],
                                           label="Ages")
        self.strip_btn = gr.Button("Render the strip")
        self.strip = gr.Gallery(label="Ages side by side", columns=6, format="png", height="auto")
        self.strip_info = gr.Markdown("", elem_id="strip-metrics")

    def mixing_panel(self) -> None:
        n_styles = self.n_styles
        groups = layer_groups(n_styles)
        preset_labels = []
        for name, group in LAYER_PRESETS.items():
            idx = groups.get(group)
            if group == "custom" or idx:
                preset_labels.append((f"{name} ({idx[0]}-{idx[-1]})" if idx else name, name))
        gr.Markdown("Take the look of another face (colour and lighting, hair and texture, or face shape) and "
                    "apply it to the aged result, at the target age chosen above.")
        self.mix_status = gr.Markdown("", elem_id="mix-status")
        with gr.Row():
            with gr.Column():
                self.reference = photo_input(sources=["upload", "clipboard"], label="Reference photo", height=260)
                self.ref_aligned = gr.Checkbox(False, label="reference already aligned")
            with gr.Column():
                self.preset = gr.Radio(preset_labels, value=preset_labels[0][1], label="What to take from it")
                self.custom = gr.Textbox(value=f"{min(8, n_styles - 1)}-{n_styles - 1}", visible=False,
                                         label=f"Custom layers (0-{n_styles - 1}, e.g. 8-17 or 0,2,5)")
                self.alpha = gr.Slider(0, 1, value=0.7, step=0.05, label="Mix strength")
                self.mix_btn = gr.Button("Mix", variant="primary")
        with gr.Row():
            with gr.Column():
                self.mixed_out = gr.Image(label="Mixed", format="png", interactive=False, elem_id="mixed")
                self.mixed_info = gr.Markdown("", elem_id="mixed-metrics")
            with gr.Column():
                self.plain_out = gr.Image(label="Without mixing", format="png", interactive=False, elem_id="plain")
                self.plain_info = gr.Markdown("", elem_id="plain-metrics")

    def lifespan_panel(self) -> None:
        sizes = [s for s in VIDEO_SIZES if s <= self.full] or [self.full]
        self.v_status = gr.Markdown("", elem_id="lifespan-status")
        with gr.Row():
            with gr.Column():
                self.v_start = gr.Slider(0, 100, value=0, step=1, label="From age")
                self.v_end = gr.Slider(0, 100, value=100, step=1, label="To age")
                self.v_between = gr.Slider(0, 30, value=8, step=1,
                                           label="Smoothness (frames between key ages, every 10 years)")
                self.v_fps = gr.Slider(5, 60, value=20, step=1, label="Frames per second")
                self.v_size = gr.Dropdown(sizes, value=min(256, sizes[-1]), label="Resolution (px)")
                with gr.Row():
                    self.v_boom = gr.Checkbox(False, label="boomerang (forward then back)")
                    self.v_gif = gr.Checkbox(False, label="also make a GIF")
                    self.v_label = gr.Checkbox(True, label="show the age")
                with gr.Row():
                    self.v_btn = gr.Button("Render video", variant="primary", elem_id="video-button")
                    self.v_cancel = gr.Button("Cancel", variant="stop", elem_id="video-cancel", interactive=False)
            with gr.Column():
                self.video = gr.Video(label="Lifespan", autoplay=True, loop=True, elem_id="lifespan-video")
                self.v_files = gr.File(label="Downloads", file_count="multiple", interactive=False, visible=False,
                                       elem_id="lifespan-files")

    def video_panel(self) -> None:
        full = self.full
        gr.Markdown(f"Age the people in a clip: faces are followed from frame to frame, and the sound is kept. "
                    f"{VIDEO_FORMAT_NAMES}, up to {CLIP_MAX_SECONDS} s and {CLIP_MAX_MB} MB; this takes a "
                    "while on a CPU (the bar shows frames done and time left).")
        self.c_status = gr.Markdown("", elem_id="clip-status")
        with gr.Row():
            with gr.Column():
                self.c_in = gr.File(label="Your video", file_types=sorted(VIDEO_SUFFIXES), elem_id="clip-input")
                self.c_age = gr.Slider(0, 100, value=70, step=1, label="Target age", elem_id="clip-age")
                self.c_faces = gr.Radio([("the main face", "largest"), ("every face", "all")], value="largest",
                                        label="Whom to age")
                self.c_size = gr.Dropdown([s for s in (256, 1024) if s <= full] or [full], value=min(256, full),
                                          label="Face resolution (px)")
                with gr.Row():
                    self.c_start = gr.Number(0, label="From second", minimum=0)
                    self.c_end = gr.Number(0, label="To second (0: the end)", minimum=0)
                self.c_preview = gr.Checkbox(False, label="quick preview (480 px)")
                self.c_keys = gr.Dropdown([("auto (fast, as steady)", "auto"), ("every frame (slow)", "1")],
                                          value="auto", label="Faces encoded on", elem_id="clip-keys")
                with gr.Row():
                    self.c_btn = gr.Button("Age the video", variant="primary", elem_id="clip-button")
                    self.c_cancel = gr.Button("Cancel", variant="stop", elem_id="clip-cancel", interactive=False)
            with gr.Column():
                self.c_out = gr.Video(label="Aged video", autoplay=True, elem_id="clip-video")
                self.c_file = gr.File(label="Download", interactive=False, elem_id="clip-file", visible=False)

    def api_panel(self) -> None:
        """The named API endpoints for gradio_client: /age, /mix, /lifespan, /video (files decoded by the safe loader;
        numbers arrive unrounded, so NaN or Infinity from a raw HTTP client reach our checks, not Gradio's)."""
        app, full = self.app, self.full
        with gr.Column(visible=False):
            a_img = gr.File(label="image", type="filepath")
            a_ref = gr.File(label="reference", type="filepath")
            a_age = gr.Number(60, label="target_age")  # /age, /mix: the photo slider's start
            a_cage = gr.Number(70, label="target_age")  # /video: the Video tab's and the CLI's start
            a_size = gr.Number(full, label="size")
            a_aligned = gr.Checkbox(False, label="already_aligned")
            a_ref_aligned = gr.Checkbox(False, label="reference_aligned")
            a_face = gr.Number(0, label="face_index")
            a_paste = gr.Checkbox(False, label="paste_back")
            a_who = gr.Textbox("best", label="faces")  # /age, /lifespan: "best", "all" or "1,3" (sam.session)
            a_ages = gr.Textbox("", label="ages")  # /age: per-face ages, in the order of faces
            a_mask = gr.Textbox("fine", label="latent_mask")
            a_alpha = gr.Number(1.0, label="alpha")
            a_start = gr.Number(0, label="start_age")
            a_end = gr.Number(100, label="end_age")
            a_between = gr.Number(10, label="frames_between")
            a_fps = gr.Number(20, label="fps")
            a_vsize = gr.Number(min(256, full), label="size")
            a_boom = gr.Checkbox(False, label="boomerang")
            a_out = gr.Image(label="image", format="png", type="pil")
            a_video = gr.Video(label="video")
            a_clip = gr.File(label="video", type="filepath")
            a_faces = gr.Textbox("largest", label="faces")
            a_csize = gr.Number(256, label="output_size")
            a_cstart = gr.Number(0, label="start")
            a_cend = gr.Number(0, label="end")
            a_preview = gr.Checkbox(False, label="preview")
            a_btn = gr.Button("api")
            a_cancel = gr.Button("cancel")
        api_events = [
            a_btn.click(job(app.age), [a_img, a_age, a_size, a_aligned, a_face, a_paste, a_who, a_ages], a_out,
                        api_name="age", api_description="Age the face in a photo: (image, target_age) -> image; "
                        "faces=\"all\" or \"1,3\" (and per-face ages \"60,25\"): the whole photo with those faces "
                        "aged", **QUICK),
            a_btn.click(job(app.mix), [a_img, a_ref, a_age, a_mask, a_alpha, a_size, a_aligned, a_ref_aligned], a_out,
                        api_name="mix", api_description="Age a face and mix in a reference face's styles", **QUICK),
            a_btn.click(job(app.lifespan, desc="rendering frames", level=LONG),
                        [a_img, a_start, a_end, a_between, a_fps, a_vsize, a_boom, a_aligned, a_face, a_who],
                        a_video, api_name="lifespan", api_description="Lifespan MP4 from start_age to end_age; "
                        "faces=\"all\" or \"1,3\": the whole photo with those faces aging together", **SLOW),
            a_btn.click(job(app.video, desc="ageing frames", unit="frames", level=LONG),
                        [a_clip, a_cage, a_faces, a_csize, a_cstart, a_cend, a_preview], a_video, api_name="video",
                        api_description="Age the people in a video clip (sound kept): (clip, target_age) -> MP4",
                        **SLOW),
        ]
        # gradio_client's job.cancel() stops the server's work only when an event cancels that endpoint
        a_cancel.click(None, None, None, cancels=api_events, queue=False, **HIDDEN)

    # ------------------------------------------------------------------------------------------ the wiring

    def wire(self) -> None:
        """Every page event (undocumented endpoints; the named API is :meth:`api_panel`). Quick work in the QUICK
        group, videos and the strip in the SLOW group; sam.scheduler orders their network passes (interactive
        first). Each panel's failures go to its own status line."""
        s = self
        status = s.status
        # the photo and the slider
        face_outputs = {s.aligned_view, s.result, s.input_info, s.result_info, s.full_file, s.full_image, s.age,
                        status}
        photo_in = [s.photo, s.already, s.age, s.paste]
        for trigger in (s.photo.change, s.already.change):
            trigger(stream(s.on_photo, status), photo_in, {s.picker, s.face_index, *face_outputs}, **QUICK, **HIDDEN,
                    show_progress_on=[s.aligned_view, s.result])
        s.picker.select(stream(s.on_pick, status), photo_in, {s.face_index, *face_outputs}, **QUICK, **HIDDEN,
                        show_progress_on=[s.aligned_view, s.result])
        sel = [s.photo, s.age, s.already, s.face_index, s.paste]
        preview_outputs = {s.result, s.result_info, s.full_file, s.full_image, status}
        s.age.release(stream(s.on_age, status), sel, preview_outputs, trigger_mode="always_last",
                      show_progress="minimal", **QUICK, **HIDDEN)
        s.paste.change(stream(s.on_age, status), sel, preview_outputs, show_progress="minimal", **QUICK, **HIDDEN)
        s.paste.change(s.full_button, [s.paste, s.already], s.full_btn, queue=False, **HIDDEN)
        (s.full_btn.click(s.full_busy, None, {s.full_btn, s.full_file}, queue=False, **HIDDEN)
         .then(job(s.on_full, page=status, desc="rendering", hide_on_failure=[s.full_file]), sel,
               {s.full_file, s.full_image, status}, **QUICK, **HIDDEN, show_progress_on=[s.full_file])
         .then(s.full_button, [s.paste, s.already], s.full_btn, queue=False, **HIDDEN))
        # several faces: previews and Full resolution are interactive work, like the single face's
        for trigger in (s.photo.change, s.already.change):
            trigger(s.on_group_photo, [s.photo, s.already],
                    {s.group_pick, s.chosen, s.everyone, s.group_box, s.group_ages, s.g_view, s.g_full_file,
                     s.g_full_image, s.g_status}, **QUICK, **HIDDEN)
        s.everyone.input(s.on_everyone, [s.everyone, s.photo], s.chosen, **QUICK, **HIDDEN)
        group_in = [s.photo, s.chosen, s.age, s.group_ages, s.g_who]
        group_out = {s.group_box, s.group_ages, s.g_who, s.g_info, s.g_view, s.g_full_file, s.g_full_image,
                     s.g_status}
        s.chosen.change(stream(s.on_chosen, s.g_status), group_in, group_out, trigger_mode="always_last", **QUICK,
                        **HIDDEN, show_progress_on=[s.g_view])
        s.picker.select(s.on_group_pick, s.chosen, s.g_who, queue=False, **HIDDEN)
        s.age.release(stream(s.on_group_age, s.g_status), group_in, group_out, trigger_mode="always_last",
                      show_progress="minimal", **QUICK, **HIDDEN)
        (s.g_full_btn.click(s.file_busy, None, s.g_full_file, queue=False, **HIDDEN)
         .then(job(s.on_group_full, page=s.g_status, desc="rendering every face", hide_on_failure=[s.g_full_file]),
               [s.photo, s.chosen, s.group_ages], {s.g_full_file, s.g_full_image, s.g_status}, **QUICK, **HIDDEN,
               show_progress_on=[s.g_full_file]))
        # the ages strip and style mixing
        s.strip_btn.click(job(s.on_strip, page=s.strip_status, desc="rendering ages", level=LONG),
                          [s.photo, s.strip_ages, s.already, s.face_index], {s.strip, s.strip_info, s.strip_status},
                          **SLOW, **HIDDEN, show_progress_on=[s.strip])
        s.preset.change(s.on_preset, s.preset, s.custom, queue=False, **HIDDEN)
        s.mix_btn.click(job(s.on_mix, page=s.mix_status, desc="mixing"),
                        [s.photo, s.reference, s.age, s.preset, s.custom, s.alpha, s.already, s.face_index,
                         s.ref_aligned], {s.mixed_out, s.plain_out, s.mixed_info, s.plain_info, s.mix_status}, **QUICK,
                        **HIDDEN, show_progress_on=[s.mixed_out])
        # the two kinds of video: the button off and Cancel on while one renders
        lifespan = [s.v_btn, s.v_cancel]
        v_event = (s.v_btn.click(s.video_running, None, lifespan, queue=False, **HIDDEN)
                   .then(job(s.on_video, page=s.v_status, desc="rendering frames", level=LONG),
                         [s.photo, s.v_start, s.v_end, s.v_between, s.v_fps, s.v_size, s.v_boom, s.v_gif, s.v_label,
                          s.already, s.face_index, s.chosen], {s.video, s.v_files, s.v_status}, **SLOW, **HIDDEN,
                         show_progress_on=[s.video]))
        v_event.then(s.video_idle, None, lifespan, queue=False, **HIDDEN)
        s.v_cancel.click(s.on_cancel, None, [s.v_status, *lifespan], cancels=[v_event], queue=False, **HIDDEN)
        clip_buttons = [s.c_btn, s.c_cancel]
        c_event = (s.c_btn.click(s.video_running, None, clip_buttons, queue=False, **HIDDEN)
                   .then(job(s.on_clip, page=s.c_status, desc="ageing frames", unit="frames", level=LONG),
                         [s.c_in, s.c_age, s.c_faces, s.c_size, s.c_start, s.c_end, s.c_preview, s.c_keys],
                         {s.c_out, s.c_file, s.c_status}, **SLOW, **HIDDEN, show_progress_on=[s.c_out]))
        c_event.then(s.video_idle, None, clip_buttons, queue=False, **HIDDEN)
        s.c_cancel.click(s.on_cancel, None, [s.c_status, *clip_buttons], cancels=[c_event], queue=False, **HIDDEN)

    # ------------------------------------------------------------------------------------------ handlers: one face

    def on_photo(self, image: Any, aligned: bool, target: Any, pasted: bool):
        app = self.app
        if image is None:
            yield {self.picker: gr.update(value=None, visible=False), self.face_index: 0, self.aligned_view: None,
                   self.result: None, self.input_info: "", self.result_info: "", self.full_file: file_hidden(),
                   self.full_image: file_hidden(), self.status: ""}
            return
        if app._repeat(str(image), bool(aligned)):
            yield {self.status: gr.skip()}  # (an empty dict reads as one missing value)
            return
        try:
            readable_upload(image)
            hidden = gr.update(value=None, visible=False)
            steps = self.show_face(image, aligned, 0, target, pasted, {self.picker: hidden, self.face_index: 0})
            yield next(steps)  # the first preview, from the best face of a quick look
            if not aligned and app.pipe is not None:
                photo_ = app.sessions.photo(image)
                if len(photo_.faces) > 1:  # the full look, for the face picker (said on the status line: a toast
                    # would outlive its photo)
                    yield {self.picker: gr.update(value=photo_.thumbnails(), visible=True, selected_index=0),
                           self.status: f"{len(photo_.faces)} faces found; showing the best one. Click a face to "
                                        "switch."}
                if not photo_.best_face_confirmed():  # rare: the full look ranks another face first
                    steps.close()
                    steps = self.show_face(image, aligned, 0, target, pasted, {self.face_index: 0})
            yield from steps
        finally:
            app._repeat(str(image), bool(aligned))  # the window counts from the end of this one

    def on_pick(self, image: Any, aligned: bool, target: Any, pasted: bool, evt: gr.SelectData):
        idx = int(evt.index) if evt is not None and evt.index is not None else 0
        yield from self.show_face(image, aligned, idx, target, pasted, {self.face_index: idx})

    def show_face(self, image: Any, aligned: bool, idx: int, target: Any, pasted: bool, extra: dict):
        """The first preview as soon as it exists (fast frozen-encoder pass), then the readouts, then the preview
        from the exact code that every later slider move builds on; the key-age warm-up after that."""
        s = self.app.session(image, aligned, idx)
        start = s.start_age(target)
        first = s.first_preview(start, pasted)
        out = {self.aligned_view: s.face_image, self.result: first, self.input_info: "",
               self.result_info: f"Age {start}", self.full_file: file_hidden(), self.full_image: file_hidden(),
               self.status: "", **extra}
        if s.input_age is not None:
            out[self.age] = start
        yield out
        yield {self.input_info: s.input_caption(), self.result_info: s.caption(start, first)}
        if not s.has_exact_encoding:
            preview = s.preview(start, pasted)
            yield {self.result: preview, self.result_info: s.caption(start, preview)}
        s.start_warm_up()

    def on_age(self, image: Any, target: Any, aligned: bool, idx: int, pasted: bool):
        s = self.app.session(image, aligned, idx)
        a = to_age(target)
        quick = s.quick_preview(a, pasted)
        if quick is not None:
            yield {self.result: quick, self.result_info: f"Age {a}: interpolated preview; the exact result follows…",
                   self.full_file: file_hidden(), self.full_image: file_hidden(), self.status: ""}
        preview = s.preview(a, pasted)
        yield {self.result: preview, self.result_info: s.caption(a, preview), self.full_file: file_hidden(),
               self.full_image: file_hidden(), self.status: ""}

    def full_button(self, pasted: bool, aligned: bool) -> dict:
        """The Full resolution button, ready: its label says what the file will be."""
        return gr.update(interactive=True,
                         value="Full resolution (whole photo)" if pasted and not aligned else self.full_label)

    def full_busy(self) -> dict:
        """The Full resolution button while it renders, and the download box shown for the progress."""
        return {self.full_btn: gr.update(interactive=False, value="Rendering full resolution…"),
                self.full_file: self.file_busy()}

    @staticmethod
    def file_busy() -> dict:
        """A download box while its file renders: shown, empty, for the progress."""
        return gr.update(value=None, visible=True)

    def on_full(self, image: Any, target: Any, aligned: bool, idx: int, pasted: bool) -> dict:
        out = self.app.age(image, target, None, aligned, idx, pasted)
        path = self.app.new_path(f"-age{to_age(target)}.png")
        out.save(path)
        return {self.full_file: file_shown(str(path)), self.full_image: file_shown(str(path)), self.status: ""}

    def on_strip(self, image: Any, ages: Any, aligned: bool, idx: int, *, progress=None, should_stop=None) -> dict:
        s = self.app.session(image, aligned, idx)
        shown = s.strip(ages or [], progress=progress, should_stop=should_stop)
        lines = s.describe([im for _, im in shown])
        table = ""
        if any(lines):
            rows = [f"| age {a} | {line} |" for (a, _), line in zip(shown, lines, strict=True)]
            table = f"{s.input_caption()}\n\n| target | measured |\n|---|---|\n" + "\n".join(rows)
        return {self.strip: [(im, f"age {a}") for a, im in shown], self.strip_info: table, self.strip_status: ""}

    def on_mix(self, image: Any, ref: Any, target: Any, chosen: str, layers: str, strength: Any, aligned: bool,
               idx: int, ref_is_aligned: bool) -> dict:
        app = self.app
        s = app.session(image, aligned, idx)
        if ref is None:
            raise RequestError("add a reference photo for style mixing")
        r = app.session(ref, ref_is_aligned, 0, what="reference photo")
        spec = layers if LAYER_PRESETS.get(chosen, chosen) == "custom" else chosen
        mixed, plain = s.mix(r, target, spec, strength, size=s.preview_size, fast=True)
        a = to_age(target)
        lines = s.describe([mixed, plain])
        return {self.mixed_out: mixed, self.plain_out: plain,
                self.mixed_info: f"Age {a}: {lines[0]}" if lines[0] else "",
                self.plain_info: f"Age {a}: {lines[1]}" if lines[1] else "", self.mix_status: ""}

    @staticmethod
    def on_preset(chosen: str) -> dict:
        return gr.update(visible=LAYER_PRESETS.get(chosen, chosen) == "custom")

    # ------------------------------------------------------------------------------------------ handlers: videos

    def on_video(self, image: Any, start: Any, end: Any, between: Any, rate: Any, side: Any, boom: bool, gif: bool,
                 label: bool, aligned: bool, idx: int, together: list, *, progress=None, should_stop=None,
                 owner=None) -> dict:
        """The lifespan video (of one face, or of the faces chosen together)."""
        faces = sorted(int(i) for i in together or []) if not aligned else []
        res = self.app.lifespan_job(image, start, end, between, rate, side, boom, label, gif, aligned, idx,
                                    faces=faces or "best", progress=progress, should_stop=should_stop, owner=owner)
        files = [str(res.mp4)] + ([str(res.gif)] if res.gif else [])
        return {self.video: str(res.mp4), self.v_files: file_shown(files), self.v_status: f"Video ready: {res.frames} "
                "frames."}

    def on_clip(self, clip: Any, target: Any, who: str, side: Any, start: Any, end: Any, preview: bool,
                keys: Any = "auto", *, progress=None, should_stop=None, owner=None) -> dict:
        """The Video tab: the people in a clip aged; the bar shows frames done and time left."""
        began = [0.0, 0]  # when and at which frame the ageing started (after any wait in line)

        def frames_done(done: int, total: int, note: str | None = None) -> None:  # frames done and time left
            if progress is None:
                return
            if note is not None or not began[0]:
                began[:] = [time.monotonic(), done] if note is None else [0.0, 0]
                progress(done, total, note)
                return
            made = done - began[1]
            left = (time.monotonic() - began[0]) / max(made, 1) * (total - done)
            progress(done, total, f"ageing frames, about {left:.0f} s left" if made >= 3 else None)

        res = self.app.age_video(clip, target, who, side, start, end, preview, keys, progress=frames_done,
                                 should_stop=should_stop, owner=owner)
        people = len(res.faces)
        return {self.c_out: str(res.path), self.c_file: file_shown(str(res.path)),
                self.c_status: f"Video ready: {res.frames} frames at {float(res.fps):.3g} fps, {people} "
                             f"{'person' if people == 1 else 'people'} aged, sound {res.audio}."}

    @staticmethod
    def video_running() -> list:
        """A video's button off and its Cancel on, while it renders."""
        return [gr.update(interactive=False), gr.update(interactive=True)]

    @staticmethod
    def video_idle() -> list:
        """A video's button on and its Cancel off."""
        return [gr.update(interactive=True), gr.update(interactive=False)]

    @classmethod
    def on_cancel(cls) -> list:
        """Cancel: the panel's status line says so; the buttons as when idle."""
        return ["Video cancelled.", *cls.video_idle()]

    # ------------------------------------------------------------------------------------------ handlers: group

    @staticmethod
    def group_ages_text(faces: list[int], ages: dict) -> str:
        return "Ages: " + ", ".join(f"face {i} → **{ages[i]}**" for i in faces)

    def on_group_photo(self, image: Any, aligned: bool) -> dict:
        """A new photo: the group choice offered when it has several faces (nothing chosen yet)."""
        app = self.app
        hide = {self.group_pick: gr.update(visible=False), self.chosen: gr.update(choices=[], value=[]),
                self.everyone: False, self.group_box: gr.update(visible=False), self.group_ages: {},
                self.g_view: None, self.g_full_file: file_hidden(), self.g_full_image: file_hidden(),
                self.g_status: ""}
        if image is None or aligned or app.pipe is None or isinstance(image, UnreadableUpload):
            return hide
        try:
            found = app.sessions.photo(image).faces
        except (ValueError, OSError):
            return hide  # the single-face flow says what is wrong
        if len(found) < 2:
            return hide
        names = [(f"{i} (best)" if i == 0 else str(i), i) for i in range(len(found))]
        return {**hide, self.group_pick: gr.update(visible=True), self.chosen: gr.update(choices=names, value=[])}

    def on_everyone(self, flag: bool, image: Any) -> dict:
        app = self.app
        if image is None or app.pipe is None:
            return {self.chosen: []}
        return {self.chosen: list(range(len(app.sessions.photo(image).faces))) if flag else []}

    def group_update(self, image: Any, faces: list[int], ages: dict, first: bool = False):
        """The interpolated preview when every face has one, then the exact preview (both: the whole photo)."""
        g = self.app.group(image, faces)
        wanted = [ages[i] for i in faces]
        info = self.group_ages_text(faces, ages)
        quick = None if first else g.preview(wanted, quick=True)
        if quick is not None:
            yield {self.g_view: (g.photo.image, quick), self.g_info: info + " (interpolated preview; exact follows…)",
                   self.g_full_file: file_hidden(), self.g_full_image: file_hidden(), self.g_status: ""}
        yield {self.g_view: (g.photo.image, g.preview(wanted, first=first)), self.g_info: info,
               self.g_full_file: file_hidden(), self.g_full_image: file_hidden(), self.g_status: ""}
        g.start_warm_up()

    def on_chosen(self, image: Any, faces: list[int], target: Any, ages: dict, who: str):
        faces = sorted(int(i) for i in faces or [])
        if not faces or image is None:
            yield {self.group_box: gr.update(visible=False), self.g_view: None, self.group_ages: {}}
            return
        a = to_age(target)
        ages = {i: ages.get(i, a) for i in faces}
        who = who if who == "all" or (who is not None and int(who) in faces) else "all"
        choices = [("everyone", "all"), *[(f"face {i}", str(i)) for i in faces]]
        yield {self.group_box: gr.update(visible=True), self.group_ages: ages,
               self.g_who: gr.update(choices=choices, value=who), self.g_info: self.group_ages_text(faces, ages)}
        yield from self.group_update(image, faces, ages, first=True)

    def on_group_pick(self, faces: list[int], evt: gr.SelectData) -> dict:
        idx = int(evt.index) if evt is not None and evt.index is not None else None
        if idx is None or idx not in [int(i) for i in faces or []]:
            return {self.g_who: gr.skip()}
        return {self.g_who: str(idx)}

    def on_group_age(self, image: Any, faces: list[int], target: Any, ages: dict, who: str):
        faces = sorted(int(i) for i in faces or [])
        if not faces or image is None:
            yield {self.g_status: gr.skip()}
            return
        a = to_age(target)
        ages = {i: ages.get(i, a) for i in faces}
        for i in faces if who in (None, "all") else [int(who)]:
            ages[i] = a
        yield {self.group_ages: ages}
        yield from self.group_update(image, faces, ages)

    def on_group_full(self, image: Any, faces: list[int], ages: dict) -> dict:
        faces = sorted(int(i) for i in faces or [])
        if not faces:
            raise RequestError("choose the faces to age first")
        g = self.app.group(image, faces)
        out = g.render([ages.get(i, ages.get(str(i), 60)) for i in faces])
        path = self.app.new_path("-group.png")
        out.save(path)
        return {self.g_full_file: file_shown(str(path)), self.g_full_image: file_shown(str(path)), self.g_status: ""}


def limit_queue(demo: gr.Blocks, max_size: int = MAX_QUEUE) -> gr.Blocks:
    """Queue at most ``max_size`` jobs; a client over that gets :data:`BUSY_MESSAGE` (Gradio's own text names
    internal sizes)."""
    return gradio_glue.limit_queue(demo, max_size, BUSY_MESSAGE)


NOT_UPLOADED = ("a file in this request was not uploaded to this server. Upload it first (gradio_client: "
                "handle_file(path)) and pass what the upload returns")


def _refuse_outside_uploads(exc: Exception) -> gr.Error:
    log.info("request rejected: a file reference outside the uploads: %s", str(exc)[:200])
    return gr.Error(readable(RequestError(NOT_UPLOADED), markup=False), print_exception=False)


def guard_file_references(demo: gr.Blocks) -> gr.Blocks:
    """A request naming a file that was not uploaded (``{"path": "/etc/passwd"}``, the checkpoint) is refused by
    Gradio before any handler runs, but with an empty error and a traceback in the log; this gives the client a
    sentence and the log one line."""
    return gradio_glue.on_file_outside_uploads(demo, _refuse_outside_uploads)


GROWN_ENDPOINTS = ("age", "lifespan")  # endpoints that gained trailing inputs (faces, ages) after their first release


def accept_older_requests(demo: gr.Blocks) -> gr.Blocks:
    """A raw HTTP request to an endpoint that gained inputs since (``/age``'s ``faces`` and ``ages``, ``/lifespan``'s
    ``faces``) and sends only the older ones gets the new inputs' defaults, as ``gradio_client`` does, instead of
    Gradio's "didn't receive enough input values"."""
    return gradio_glue.default_missing_inputs(demo, GROWN_ENDPOINTS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the CLI's spellings (--checkpoint_path, --int8_style_heads, --no_download) work too
    ap.add_argument("--checkpoint", "--checkpoint_path", default=None,
                    help="SAM checkpoint (default: $SAM_CHECKPOINT or weights/)")
    ap.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--int8-style-heads", "--int8_style_heads", action="store_true",
                    help="approximate: int8 encoder style heads, faster on CPU, not exact (docs/speed.md)")
    ap.add_argument("--no-download", "--no_download", action="store_true", help="never download the checkpoint")
    ap.add_argument("--max-queue", "--max_queue", type=int, default=MAX_QUEUE,
                    help=f"jobs waiting at most (default {MAX_QUEUE})")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="auto (default): bfloat16 previews and videos on CPUs with native bfloat16, downloads exact "
                         "float32; fp32: exact everywhere; bf16 / fp16: everything reduced (docs/precision.md)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # This server's uploads (and Gradio's copies of the examples) in a folder of its own, removed when it stops.
    uploads = tempfile.mkdtemp(prefix="sam-uploads-", dir=os.environ.get("GRADIO_TEMP_DIR") or None)
    os.environ["GRADIO_TEMP_DIR"] = uploads
    demo = build_demo(args.checkpoint, args.device, int8_style_heads=args.int8_style_heads,
                      download=not args.no_download, precision=args.precision, warm=True)
    demo.sam_app.own_dirs.append(Path(uploads))
    before = signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, demo.sam_app))
    try:
        limit_queue(demo, args.max_queue).launch(server_name=args.host, server_port=args.port,
                                                 share=args.share or None, show_error=False,
                                                 max_file_size=MAX_UPLOAD)
    finally:
        signal.signal(signal.SIGTERM, before)


def _on_sigterm(app: AgeApp, signum: int, frame: Any) -> None:
    """Docker and Spaces stop the app with SIGTERM: stop the jobs (each at its next frame, no partial files), close
    the server, delete results and uploads, and exit with status 0."""
    log.info("SIGTERM: stopping; running jobs end at their next frame")
    try:
        app.shutdown()
    except Exception as exc:  # noqa: BLE001 - exit cleanly whatever happened
        log.error("while stopping: %s: %s", type(exc).__name__, exc)
    log.info("stopped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
