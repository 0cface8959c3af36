"""Uploads checked with the project's own rules before anything else reads them.

A photo upload that is not an image (a text file named ``.png``, a corrupt file) becomes an
:class:`UnreadableUpload` that the handler shows on its status line, not a preprocessing error with server paths;
a clip is checked for its type and size before it is probed (:func:`clip_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sam.requests import RequestError
from sam.video.probe import VIDEO_FORMAT_NAMES, VIDEO_SUFFIXES
from web import glue

__all__ = ["NOT_AN_IMAGE", "UnreadableUpload", "check_upload", "clip_path", "photo_input", "readable_upload"]

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
