"""The README's picture of the page: ``docs/page.png``, taken from the running app in headless Chromium.

    python bench/screenshot.py [--checkpoint /tmp/tiny.pt] [--out docs/page.png] [--width 960]

Starts ``python app.py`` on a free local port with the given checkpoint (default: a tiny random-weights checkpoint
written first with ``python -m sam random-checkpoint``, so the result is noise-like: the plumbing is real, the
weights are not), drops ``assets/astronaut.png`` on the page, waits for the aligned face and the first preview, and
saves the top of the page as a palette PNG small enough for the README. Uses Debian's Chromium
(``/usr/bin/chromium``, ``--no-sandbox --disable-gpu``) through the ``playwright`` package; no
``playwright install``. (Not under ``assets/``: the app offers every picture there as an example photo, and the
README's commands run on that folder.)
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the app exited with status {server.returncode} before serving the page")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1.0)
    raise SystemExit(f"the app did not answer at {url} within {timeout:.0f} s")


def shrink(png: bytes, width: int, max_bytes: int) -> Image.Image:
    """The screenshot scaled to ``width`` px and reduced to a palette until its PNG is under ``max_bytes``."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    for colours in (256, 128, 64, 32):
        small = image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes:
            return small
    return small


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint to serve (default: a fresh tiny random one)")
    ap.add_argument("--photo", default=str(ROOT / "assets" / "astronaut.png"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "page.png"))
    ap.add_argument("--width", type=int, default=960, help="width of the saved picture in px")
    ap.add_argument("--height", type=int, default=1000, help="height of the browser window (CSS px) to keep")
    ap.add_argument("--max-kb", type=int, default=240)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = str(Path(tmp) / "tiny.pt")
            subprocess.run([sys.executable, "-m", "sam", "random-checkpoint", "--out", checkpoint], check=True,
                           cwd=ROOT)
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([sys.executable, "app.py", "--checkpoint", checkpoint, "--device", "cpu",
                                   "--port", str(port), "--no-download"], cwd=ROOT)
        try:
            _wait_for_server(url, server)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": args.height})
                page.goto(url, wait_until="load")
                upload = page.locator("input[type=file]").first
                upload.wait_for(state="attached", timeout=60_000)
                upload.set_input_files(args.photo)
                page.locator("#aligned img").wait_for(timeout=120_000)
                page.locator("#result img").wait_for(timeout=120_000)
                time.sleep(3.0)  # the age readouts and the exact preview that follows the first one
                png = page.screenshot(full_page=False)
                browser.close()
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    picture = shrink(png, args.width, args.max_kb * 1024)
    picture.save(args.out, format="PNG", optimize=True)
    print(f"{args.out}: {picture.width}x{picture.height}, {Path(args.out).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
