"""Upload -> first preview, in a real browser: how long a new visitor waits to see their photo aged.

    python bench/first_preview.py --checkpoint /tmp/sam_seed0.pt [--photos a.jpg b.png ...]

Starts ``app.py`` on a free loopback port (a fresh server: it waits for the start-up warm-up, as a visitor arriving
a minute after start would find it), then for each photo opens a new page in headless Chromium (Debian's
``/usr/bin/chromium`` driven by Playwright; nothing is downloaded), drops the photo on the upload box and measures
the time until each step of a new photo is on screen: the aligned face, the first picture (the generator stopped at
64 px), the 256 px preview and the age readout. The times are taken in the page, by its own clock: from the file
input's ``change`` event (the drop) to the first frame after each image has loaded (a MutationObserver and the
images' ``load`` events) or the readout's text; the server's share of each comes from its log (the ``on_photo``
line says when each update left). (Playwright's
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
import re
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


# Installed in the page before the drop: the page's clock (``performance.now()``, ms) at the drop, at the first frame
# after each step is on screen: the aligned face, the first picture (the 64 px look), the preview ("Age N" alone
# under it) and the age readout ("reads as").
WATCH = """() => {
  const fp = window.__fp = {start: 0, aligned: 0, first: 0, preview: 0, readout: 0};
  const input = document.querySelector("input[type=file]");
  input.addEventListener("change", () => { fp.start = performance.now(); }, {once: true, capture: true});
  const shown = (sel) => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; };
  const mark = (key) => { if (!fp[key]) requestAnimationFrame(() => { fp[key] = fp[key] || performance.now(); }); };
  const check = () => {
    if (!fp.start) return;
    if (shown("#aligned img")) mark("aligned");
    if (shown("#result img")) mark("first");
    const text = (document.querySelector("#result-metrics")?.innerText || "").trim();
    if (shown("#result img") && /^Age \\d+$/.test(text)) mark("preview");
    if (text.includes("reads as")) { mark("preview"); mark("readout"); }
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      characterData: true});
  document.addEventListener("load", check, true);
}"""

STEPS = ("aligned", "first", "preview", "readout")


def server_steps(log: str, count: int) -> list[list[float]]:
    """The server's time of each update of the first ``count`` new photos (``on_photo`` log lines: "updates at
    ..."), as ``[aligned, first picture, preview, readouts]``; the 64 px step is the preview itself when the
    model's preview is that small."""
    found = []
    for line in log.splitlines():
        m = re.search(r"on_photo done in [\d.]+ s; updates at ([\d., ]+) s", line)
        if m:
            times = [float(t) for t in m.group(1).split(",")]
            if len(times) == 3:  # aligned, preview, readouts: no smaller first picture
                times = [times[0], times[1], times[1], times[2]]
            found.append(times[:4])
    return found[:count]


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
                page.wait_for_function("() => window.__fp.preview && window.__fp.readout", timeout=240_000)
                marks = page.evaluate("() => window.__fp")
                with Image.open(photo) as im:
                    size = f"{im.width}x{im.height}"
                rows.append({"photo": photo.name, "size": size,
                             **{f"{step}_s": (marks[step] - marks["start"]) / 1000 for step in STEPS}})
                print(rows[-1], flush=True)
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    for row, server in zip(rows, server_steps((tmp / "server.log").read_text(errors="replace"), len(rows))):
        for step, t in zip(STEPS, server):
            row[f"{step}_server_s"] = t
    info = machine("cpu")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "checkpoint": str(args.checkpoint), "rows": rows}
    isa = ", ".join(k for k, v in info["isa"].items() if v) or "none"
    lines = [f"# Upload -> first preview in Chromium ({result['date']})", "",
             f"CPU: {info['cpu']} ({isa}), {info['cores']} cores, torch {info['torch']}; load average "
             f"{info['load_average_start']}. A fresh `app.py` (after its start-up warm-up), one visitor, a new page "
             f"per photo. Command: `python bench/first_preview.py {' '.join(argv or sys.argv[1:])}`", "",
             "Each step: seconds from the drop to the page showing it, in the browser's clock; in brackets, the "
             "server's share (from its handler's start to the update leaving; the rest is the upload, the queue, the "
             "transfer and the browser's drawing).", "",
             "| photo | size | aligned face (s) | first picture (s) | 256 px preview (s) | age readout (s) |",
             "|---|---|---:|---:|---:|---:|",
             *(f"| {r['photo']} | {r['size']} | " + " | ".join(
                 f"{r[f'{step}_s']:.2f} ({r.get(f'{step}_server_s', float('nan')):.2f})" for step in STEPS) + " |"
               for r in rows),
             "", f"Slowest aligned face: **{max(r['aligned_s'] for r in rows):.2f} s**; slowest first picture: "
             f"**{max(r['first_s'] for r in rows):.2f} s**; slowest preview: **{max(r['preview_s'] for r in rows):.2f} "
             "s**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        report.save("first-preview", machine_slug(info), text, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
