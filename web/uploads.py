"""Uploads checked with the project's own rules before anything else reads them.

A photo upload that is not an image (a text file named ``.png``, a corrupt file) becomes an
:class:`UnreadableUpload` that the handler shows on its status line, not a preprocessing error with server paths;
a clip is checked for its type and size before it is probed (:func:`clip_path`). Uploads as a whole are bounded
too (:class:`UploadSpace`): the space all uploads may take on the server's disk, and one address's share of it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sam.requests import RequestError
from sam.video.probe import VIDEO_FORMAT_NAMES, VIDEO_SUFFIXES
from web import glue

__all__ = ["NOT_AN_IMAGE", "UnreadableUpload", "UploadSpace", "check_upload", "clip_path", "folder_bytes",
           "photo_input", "readable_upload"]

NOT_AN_IMAGE = "this file is not an image the app can read. Please upload a JPEG, PNG or WebP photo"


class UnreadableUpload(str):
    """What :func:`photo_input` passes on for an upload that is not an image: the message, for the handler to show
    on the status line (raising in preprocessing would leave only error badges and a toast)."""


def photo_input(**kwargs: Any) -> gr.Image:
    """An image upload that is checked with the project's own rules before anything else decodes it (see the module
    notes). Passes the uploaded file's path on (the session layer loads a downscaled working copy of large photos).
    A plain ``gr.Image`` whose preprocessing is replaced (a subclass would make Gradio write stub files next to this
    module)."""
    return glue.own_preprocess(gr.Image(type="filepath", **kwargs), check_upload)


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


def clip_path(clip: Any, max_mb: float) -> Path:
    """The uploaded clip's path, checked for type and size (at most ``max_mb``; a :class:`RequestError` in
    words)."""
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
    if size > max_mb * 2**20:  # MB as the upload limit counts them (Gradio's "30mb": 30 x 2**20 bytes)
        raise RequestError(f"the video is {size / 2**20:.1f} MB; this page takes clips of at most {max_mb:g} MB")
    return path


def folder_bytes(folder: str | os.PathLike) -> int:
    """The bytes of every file below ``folder`` (0 when it is missing)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class UploadSpace:
    """ASGI middleware in front of Gradio's upload route: the uploads folder may hold at most ``total_mb`` and one
    address may send at most ``per_address_mb`` within ``window_s`` (uploads are deleted after that long anyway);
    an upload over either, or one that does not say its length, is refused in words before a byte is stored.

    ``folder()`` gives the uploads folder (read at each check: Gradio's may be set after this is made);
    ``address(scope)`` where a request comes from (:func:`web.visitors.address_of`)."""

    def __init__(self, app: Any, folder: Callable[[], str], address: Callable[[dict], str | None], total_mb: float,
                 per_address_mb: float, window_s: float = 3600.0, recount_s: float = 5.0):
        self.app = app
        self.folder, self.address = folder, address
        self.total, self.per_address = total_mb * 2**20, per_address_mb * 2**20
        self.window_s, self.recount_s = window_s, recount_s
        self._sent: dict[str | None, deque[tuple[float, int]]] = {}
        self._stored = (0.0, 0)  # (when counted, bytes in the folder then)
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/upload"):
            refusal = self.refusal(scope)
            if refusal is not None:
                status, text = refusal
                body = text.encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict) -> tuple[int, str] | None:
        """``(HTTP status, words)`` when this upload may not be taken, else ``None`` (and it is counted)."""
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            size = int(length)
        except (TypeError, ValueError):
            return 411, "Please send the upload with its length (Content-Length)."
        now = time.monotonic()
        address = self.address(scope)
        with self._lock:
            sent = self._sent.setdefault(address, deque())
            while sent and now - sent[0][0] > self.window_s:
                sent.popleft()
            mine = sum(n for _, n in sent)
            if address is not None and mine + size > self.per_address:
                return 429, (f"You have uploaded {mine / 2**20:.0f} MB in the last {self.window_s / 3600:g} hour; "
                             f"this server takes at most {self.per_address / 2**20:.0f} MB from one visitor in that "
                             "time. Please try again later.")
            if now - self._stored[0] > self.recount_s:
                self._stored = (now, folder_bytes(self.folder()))
            stored = self._stored[1]
            if stored + size > self.total:
                return 507, "This server's upload space is full right now. Please try again in a few minutes."
            sent.append((now, size))
            self._stored = (self._stored[0], stored + size)
        return None
