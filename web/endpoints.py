"""The named HTTP API (``/age``, ``/mix``, ``/lifespan``, ``/video``): which :class:`~web.service.AgeApp` method each
endpoint calls, how it runs, and its parameters' defaults, read from that method's signature (their one
declaration; the page's panels start their controls at the same values through :func:`default`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sam.serving.scheduler import INTERACTIVE, LONG, Priority

__all__ = ["ENDPOINTS", "GROWN_ENDPOINTS", "Endpoint", "default", "parameters"]


@dataclass(frozen=True)
class Endpoint:
    """One named endpoint: ``/<name>`` calls ``AgeApp.<method>``."""

    name: str
    method: str
    description: str
    level: Priority = INTERACTIVE  # the priority of its model calls (sam.serving.scheduler)
    desc: str = "working"  # the progress bar's words
    unit: str = "images"
    output: str = "image"  # "image" (a PNG) or "video" (an MP4)


FILES_AS = (" Files are uploads of this server (gradio_client: handle_file) or, for an MCP client, data: URIs "
            "(base64); this server fetches no URLs.")
ENDPOINTS = (
    Endpoint("age", "age", "Show the person in a photo at another age (0 to 100): the aged face, or with paste_back "
             "the whole photo with the face put back; with faces=\"all\" or face numbers such as \"1,3\" (and "
             "per-face ages such as \"60,25\") the whole photo with those faces aged. Returns a PNG." + FILES_AS),
    Endpoint("mix", "mix", "Show the person in a photo at another age with the look of a reference face mixed in "
             "(colour and lighting, hair and texture, or face shape). Returns a PNG." + FILES_AS),
    Endpoint("lifespan", "lifespan", "A video of the person in a photo growing older (or younger) from start_age "
             "to end_age; with faces=\"all\" or face numbers such as \"1,3\" the whole photo with those faces "
             "aging together. Returns an H.264 MP4." + FILES_AS, LONG, "rendering frames", output="video"),
    Endpoint("video", "video", "Age the people in a video clip: faces followed from frame to frame, the sound kept. "
             "Returns an H.264 MP4." + FILES_AS, LONG, "ageing frames", "frames", output="video"),
)
GROWN_ENDPOINTS = ("age", "lifespan")  # endpoints that gained trailing inputs (faces, ages) after their first release


def parameters(method: Callable) -> list[inspect.Parameter]:
    """An endpoint's parameters: the method's positional ones (keyword-only ones are the job's own)."""
    return [p for p in inspect.signature(method).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"]


def default(method: Callable, name: str) -> Any:
    """The default of parameter ``name`` of an endpoint's method (``None`` when it has none)."""
    p = inspect.signature(method).parameters[name]
    return None if p.default is p.empty else p.default
