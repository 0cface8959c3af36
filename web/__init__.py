"""The Gradio page and its HTTP API, beside ``app.py`` (which Spaces runs).

* :mod:`web.service`: :class:`AgeApp`, the work behind every endpoint and panel, over one pipeline;
* :mod:`web.page`: :class:`Page`, the panels in their places and all the wiring; :func:`build_demo`;
* :mod:`web.panels`: one module per panel (photo, group, strip, mixing, lifespan, video, the named API);
* :mod:`web.endpoints`, :mod:`web.limits`: the named endpoints and the app's limits, each declared once;
* :mod:`web.jobs`, :mod:`web.uploads`, :mod:`web.messages`: how handlers run, uploads checked, failures worded;
* :mod:`web.glue`: every use of Gradio's internals; :mod:`web.server`: launch and a clean stop.

The public names below are imported on first use (``app.py --help`` does not load Gradio).
"""

import importlib
from typing import Any

_PUBLIC = {"AgeApp": "web.service", "Limits": "web.limits", "Page": "web.page", "build_demo": "web.page"}

__all__ = ["AgeApp", "Limits", "Page", "build_demo"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'web' has no attribute {name!r}")
