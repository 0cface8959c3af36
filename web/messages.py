"""What people read: every failure turned into a message in words, the page's fixed texts, one log line per request.

On the page a failure is a status line of its own panel that stays (no toast: it would outlive its photo); through
the API it is the error text; in the server log one line, with a traceback only for a failure that is not the
request's fault. No message names a server path or an internal name.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from sam.cancel import JobCancelledError
from sam.faces.detect import NoFaceError
from sam.faces.image_io import ImageLoadError
from sam.network.checkpoint import CheckpointError
from sam.requests import RequestError
from sam.serving.scheduler import JobLimitError

__all__ = [
    "BUSY_MESSAGE", "NOT_LOADED_HERE", "NOT_UPLOADED", "PRIVACY", "SETUP_HELP", "ModelNotLoaded", "WithoutRetryLines",
    "interpreter", "log_done", "log_rejected", "page_failure", "readable", "setup_help", "status",
]

log = logging.getLogger("sam.app")

ROOT = Path(__file__).resolve().parents[1]
BUSY_MESSAGE = "The server is busy with other people's requests right now. Please try again in a minute."
PRIVACY = ("Photos are processed on this server and kept only while you use them: uploads and results are deleted "
           "after an hour, and when the server stops.")
NOT_LOADED_HERE = "Not available until the model is loaded: see the message at the top of the page."
NOT_UPLOADED = ("a file in this request was not uploaded to this server. Upload it first (gradio_client: "
                "handle_file(path)) and pass what the upload returns")


def interpreter(executable: str | None = None) -> str:
    """How the page writes the Python running the app (``sys.executable``) in a command to copy: relative to the
    repository when it lies inside it (``.venv/bin/python``), else only its file name (``python3``); never a server
    path (the page is public)."""
    exe = Path(os.path.abspath(executable if executable is not None else sys.executable or "python3"))
    for root in dict.fromkeys((ROOT, Path(os.path.abspath(ROOT)))):
        try:
            return shlex.quote(exe.relative_to(root).as_posix())
        except ValueError:
            continue
    return shlex.quote(exe.name or "python3")


def setup_help(executable: str | None = None) -> str:
    """The page's one message when the model is not loaded: what the person running the app can do, its commands
    written with the interpreter running the app (:func:`interpreter`). No server paths; the reason, with paths, is
    one line in the log."""
    python = interpreter(executable)
    return (
        "⚠️ **The model is not loaded, so photos cannot be aged yet.** If you run this app: put the checkpoint "
        "`sam_ffhq_aging.pt` (2.3 GB) in the `weights/` folder next to `app.py`, or pass its path with "
        f"`--checkpoint PATH` (or set `SAM_CHECKPOINT`), then start the app again; `{python} -m sam weights` downloads "
        "and checks it (weights/README.md says where else to get it). To try the page without it, on random weights: "
        f"`{python} -m sam random-checkpoint --out /tmp/tiny.pt --overwrite`, then "
        f"`{python} app.py --checkpoint /tmp/tiny.pt`. The app's log says why it was not loaded."
    )


SETUP_HELP = setup_help()


class ModelNotLoaded(gr.Error):
    """A request while the model is not loaded. API clients get its words; the page shows the banner's
    instructions once and only a pointer to them in the panel's status line (no toast)."""


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


def status(text: str) -> str:
    """A panel's status line: the text with a warning sign ('' stays empty)."""
    return f"⚠️ {text}" if text else ""


def page_failure(exc: BaseException) -> str:
    """The status-line text of a page handler's failure (the only place it is shown: no toast, which would outlive
    its photo)."""
    if isinstance(exc, ModelNotLoaded):
        return status(NOT_LOADED_HERE)
    return status(readable(exc))


def log_rejected(where: str, exc: BaseException, seconds: float) -> None:
    """One log line per rejected request, with its time (a traceback only for a failure that is not the request's
    fault)."""
    if isinstance(exc, (RequestError, ImageLoadError, NoFaceError, ValueError, JobCancelledError, gr.Error)):
        log.info("%s rejected after %.2f s: %s: %s", where, seconds, type(exc).__name__, str(exc)[:300])
    else:
        log.error("%s failed after %.2f s: %s: %s", where, seconds, type(exc).__name__, str(exc)[:300], exc_info=exc)


def log_done(where: str, seconds: float, what: str = "done", steps: list[float] | None = None) -> None:
    """One log line per finished request or job, with its time (and, for a request that sends several updates, when
    each was sent: ``on_photo done in 2.93 s; updates at 0.41, 1.92, 2.60, 2.93 s``)."""
    if steps and len(steps) > 1:
        log.info("%s %s in %.2f s; updates at %s s", where, what, seconds, ", ".join(f"{t:.2f}" for t in steps))
    else:
        log.info("%s %s in %.2f s", where, what, seconds)


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
