"""The one door for the tests that drive the page in a real browser: where Chromium is and its flags, a skip marker
for machines without it, the screenshot folder, serving a demo on 127.0.0.1, and :func:`open_page`, which serves a
demo, opens it in headless Chromium and closes both again. Imports neither Gradio nor Playwright until used."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import gradio as gr

CHROMIUM = os.environ.get("SAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_SCALE = float(os.environ.get("SAM_BROWSER_WAIT_SCALE", "3"))
"""Browser waits are this many times the time they take on a quiet machine: a loaded machine (CI beside other jobs,
two cores shared with the server under test) must not fail a test that only had to wait."""


def patient(ms: int) -> int:
    """A browser wait of ``ms`` milliseconds on a quiet machine, scaled by :data:`WAIT_SCALE`."""
    return int(ms * WAIT_SCALE)


needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(blocks: gr.Blocks, max_queue: int | None = None, mcp: bool = False) -> str:
    """Serve ``blocks`` on 127.0.0.1 at a free port, its queue limited as the app's (default: its limits'
    ``max_queue``); returns the URL. The caller closes it."""
    from web.page import limit_queue
    from web.server import launch_options

    limit_queue(blocks, blocks.sam_app.limits.max_queue if max_queue is None else max_queue)
    _, url, _ = blocks.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                              quiet=True, mcp_server=mcp, **launch_options(blocks.sam_app))
    return url


def screenshot_dir(tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots: $SAM_SCREENSHOT_DIR, else ``tmp_path``; made if missing."""
    shots = Path(os.environ.get("SAM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


@contextlib.contextmanager
def open_page(demo: gr.Blocks, width: int, height: int) -> Iterator[Any]:
    """Serve ``demo`` (:func:`launch`) and open it in headless Chromium at ``width`` x ``height``; yields the
    Playwright page once the page has loaded and its first upload box is there. Skips without Playwright. Browser
    and demo are closed on the way out, whatever happened."""
    try:
        sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
        url = launch(demo)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url, wait_until="load")
                page.locator("input[type=file]").first.wait_for(state="attached", timeout=patient(30_000))
                yield page
            finally:
                browser.close()
    finally:
        demo.close()
