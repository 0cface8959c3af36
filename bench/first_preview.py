"""Upload -> first preview, in a real browser: how long a new visitor waits to see their photo aged.

    python bench/first_preview.py --checkpoint /tmp/sam_seed0.pt [--photos a.jpg b.png ...]

Starts ``app.py`` on a free loopback port (a fresh server: it waits for the start-up warm-up, as a visitor arriving
a minute after start would find it), then for each photo opens a new page in headless Chromium (Debian's
``/usr/bin/chromium`` driven by Playwright; nothing is downloaded), drops the photo on the upload box and measures
the time until the first preview is shown and until the age readout is there. The times are taken in the page, by
its own clock: from the file input's ``change`` event (the drop) to the first frame after the preview image has
loaded into ``#result`` (a MutationObserver and the image's ``load`` event), and to the readout's text. (Playwright's
own waiting polls at growing intervals, up to 0.5 s late; it only decides when to read the page's figures.)
Before each photo it waits until the server is idle (the previous photo's exact preview and key-age warm-up done),
so each row is one visitor arriving at a quiet server; the browser runs on the same cores as the server.
Without ``--photos`` it uses four different photos made from ``assets/astronaut.png`` (300, 512, 1024 and 2048 px;
mirrored, cropped). Prints a table and writes ``bench/results/<date>-first-preview-<cpu>.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageOps  # noqa: E402

from bench import report  # noqa: E402
from bench.benchmark import machine, machine_slug  # noqa: E402
from bench.load import start_server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# Installed in the page before the drop: the page's clock at the drop, at the first frame after the preview image
# has loaded, and when the age readout is there (``performance.now()``, ms).
WATCH = """() => {
  const fp = window.__fp = {start: 0, preview: 0, readout: 0, aligned: false};
  const input = document.querySelector("input[type=file]");
  input.addEventListener("change", () => { fp.start = performance.now(); }, {once: true, capture: true});
  const check = () => {
    if (!fp.start) return;
    const img = document.querySelector("#result img");
    if (!fp.preview && img && img.complete && img.naturalWidth > 0) {
      fp.aligned = !!document.querySelector("#aligned img");
      requestAnimationFrame(() => { fp.preview = fp.preview || performance.now(); });
    }
    const text = document.querySelector("#result-metrics")?.innerText || "";
    if (!fp.readout && text.includes("reads as")) fp.readout = performance.now();
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      characterData: true});
  document.addEventListener("load", check, true);
}"""


def default_photos(folder: Path) -> list[Path]:
    base = Image.open(ROOT / "assets" / "astronaut.png").convert("RGB")
    out = []
    for side, mirror, crop in ((300, False, 0), (512, True, 0), (1024, False, 40), (2048, True, 120)):
        im = base.resize((side, side), Image.Resampling.LANCZOS)
        im = ImageOps.mirror(im) if mirror else im
        im = im.crop((crop, 0, side, side - crop // 2))
        path = folder / f"photo-{side}.{'jpg' if side > 1000 else 'png'}"
        im.save(path, quality=90) if path.suffix == ".jpg" else im.save(path)
        out.append(path)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, timeout: float = 180.0) -> None:
    """Until the process uses under 20 % of a core over a second (an idle Gradio server polls at ~8 %; model work
    uses 100-200 %), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.2:
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="SAM checkpoint (e.g. the full-size synthetic one)")
    ap.add_argument("--photos", nargs="*", default=None, help="photos to drop (default: four made from assets/)")
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)
    from playwright import sync_api

    tmp = Path(tempfile.mkdtemp(prefix="sam-first-preview-"))
    photos = [Path(p) for p in args.photos] if args.photos else default_photos(tmp)
    proc, url = start_server(args.checkpoint, tmp / "server.log")
    rows = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for photo in photos:
                wait_idle(proc.pid)
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.goto(url, wait_until="load")
                upload = page.locator("input[type=file]").first
                upload.wait_for(state="attached", timeout=60_000)
                page.evaluate(WATCH)
                upload.set_input_files(str(photo))
                page.wait_for_function("() => window.__fp.preview && window.__fp.readout", timeout=120_000)
                marks = page.evaluate("() => window.__fp")
                with Image.open(photo) as im:
                    size = f"{im.width}x{im.height}"
                rows.append({"photo": photo.name, "size": size,
                             "first_preview_s": (marks["preview"] - marks["start"]) / 1000,
                             "aligned_shown": bool(marks["aligned"]),
                             "readouts_s": (marks["readout"] - marks["start"]) / 1000})
                print(rows[-1], flush=True)
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    info = machine("cpu")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "checkpoint": str(args.checkpoint), "rows": rows}
    isa = ", ".join(k for k, v in info["isa"].items() if v) or "none"
    lines = [f"# Upload -> first preview in Chromium ({result['date']})", "",
             f"CPU: {info['cpu']} ({isa}), {info['cores']} cores, torch {info['torch']}; load average "
             f"{info['load_average_start']}. A fresh `app.py` (after its start-up warm-up), one visitor, a new page "
             f"per photo. Command: `python bench/first_preview.py {' '.join(argv or sys.argv[1:])}`", "",
             "| photo | size | first preview (s) | age readout (s) |", "|---|---|---:|---:|",
             *(f"| {r['photo']} | {r['size']} | {r['first_preview_s']:.2f} | {r['readouts_s']:.2f} |" for r in rows),
             "", f"Slowest first preview: **{max(r['first_preview_s'] for r in rows):.2f} s**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        report.save("first-preview", machine_slug(info), text, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
