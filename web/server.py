"""Serving the page: the uploads folder of this server, the queue limit, launch, and a clean stop on SIGTERM.

Docker and Spaces stop the app with SIGTERM: every running job ends at its next frame (no partial files), the
server closes, results and uploads are deleted, and the process exits with status 0.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from web import a11y, layout
from web.page import build_demo, limit_queue
from web.service import AgeApp
from web.uploads import UploadSpace
from web.visitors import address_of

__all__ = ["app_options", "launch_options", "serve"]

log = logging.getLogger("sam.app")


def serve(checkpoint: str | None = None, device: str | None = None, host: str | None = None,
          port: int | None = None, share: bool = False, int8_style_heads: bool = False, download: bool = True,
          max_queue: int | None = None, precision: str = "auto", mcp: bool = False) -> None:
    """Load the model (downloading it when missing and ``download``), build the page and serve it until stopped;
    with ``mcp`` the named API is also a Model Context Protocol server (Gradio's, at ``/gradio_api/mcp/``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # This server's uploads (and Gradio's copies of the examples) in a folder of its own, removed when it stops.
    uploads = tempfile.mkdtemp(prefix="sam-uploads-", dir=os.environ.get("GRADIO_TEMP_DIR") or None)
    os.environ["GRADIO_TEMP_DIR"] = uploads
    demo = build_demo(checkpoint, device, int8_style_heads=int8_style_heads, download=download,
                      precision=precision, warm=True)
    app: AgeApp = demo.sam_app
    app.own_dirs.append(Path(uploads))
    before = signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, app))
    try:
        limit_queue(demo, app.limits.max_queue if max_queue is None else max_queue).launch(
            server_name=host, server_port=port, share=share or None, mcp_server=mcp, **launch_options(app))
    finally:
        signal.signal(signal.SIGTERM, before)


def launch_options(app: AgeApp) -> dict[str, Any]:
    """What every launch of the page passes to Gradio's ``launch``: no error details for clients, the upload limit,
    the page's additions for assistive technology (:mod:`web.a11y`) and for small screens (:mod:`web.layout`),
    and the web server's own options (:func:`app_options`)."""
    return {"show_error": False, "max_file_size": app.limits.max_upload, "head": a11y.HEAD + layout.HEAD,
            "css": a11y.CSS + layout.CSS, "app_kwargs": app_options(app)}


def app_options(app: AgeApp) -> dict[str, Any]:
    """The web server's own options for Gradio's ``launch(app_kwargs=...)``: the upload space's bounds in front of
    Gradio's upload route (:class:`web.uploads.UploadSpace`)."""
    from gradio.utils import get_upload_folder
    from starlette.middleware import Middleware
    from starlette.requests import Request

    limits = app.limits
    space = Middleware(UploadSpace, folder=get_upload_folder, address=lambda scope: address_of(Request(scope)),
                       total_mb=limits.upload_space_mb, per_address_mb=limits.upload_mb_per_address,
                       window_s=limits.output_max_age_s)
    return {"middleware": [space]}


def _on_sigterm(app: AgeApp, signum: int, frame: Any) -> None:
    """Stop the jobs (each at its next frame, no partial files), close the server, delete results and uploads, and
    exit with status 0."""
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
