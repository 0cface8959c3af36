"""Load test of the app: simulated visitors through ``gradio_client``, as a public Space would see them.

    python bench/load.py --checkpoint /tmp/sam_seed0.pt [--duration 120] [--sliders 3]
    python bench/load.py --url http://127.0.0.1:7860/           # a server you started (loopback only)

With ``--checkpoint`` the script starts ``app.py`` on a free loopback port (its own process, so its peak memory is
measured) and waits for its start-up warm-up. Then, for each kind of request, it first measures it **alone**, and
then plays, for ``--duration`` seconds:

* ``--sliders`` slider visitors, each with its own photo, sending a 256 px ``/age`` request every
  ``--slider-every`` seconds (random ages, a little jitter);
* one full-resolution ``/age`` every ``--full-every`` seconds;
* one video clip (``/video``, the tests' clip of ``--clip-seconds``) and one lifespan video (``/lifespan``),
  started at the beginning, each by its own visitor.

It prints and writes (``bench/results/<date>-load-<cpu>.md`` and ``.json``) per kind: count, errors, p50 / p95 / max
latency and the alone latency; the long jobs' total times alone and under load; the server's peak memory (RSS);
and the machine (CPU model, ISA, cores, load average).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageOps  # noqa: E402

from bench import report  # noqa: E402
from bench.benchmark import machine, machine_slug  # noqa: E402
from tests.clipmaker import make_clip  # noqa: E402

ASTRONAUT = ROOT / "assets" / "astronaut.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(checkpoint: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``app.py`` on a free loopback port; returns once it serves and its warm-up is done."""
    port = free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", checkpoint, "--no-download",
                             "--port", str(port), "--host", "127.0.0.1"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    deadline = time.monotonic() + 600
    while b"warm-up done" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the app did not start:\n" + log_path.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    return proc, f"http://127.0.0.1:{port}/"


def peak_rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else None


def photos(folder: Path, n: int) -> list[Path]:
    """``n`` different photos of one face: mirrored, scaled, cropped and shifted copies (different bytes and
    pixels, so no visitor finds another's cached work)."""
    base = Image.open(ASTRONAUT).convert("RGB")
    out = []
    for i in range(n):
        im = ImageOps.mirror(base) if i % 2 else base
        side = 512 + 96 * i
        im = im.resize((side, side), Image.Resampling.LANCZOS).crop((8 * i, 0, side, side - 4 * i))
        path = folder / f"visitor{i}.png"
        im.save(path)
        out.append(path)
    return out


class Record:
    """Latencies and errors per kind of request, from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {}
        self.errors: dict[str, list[str]] = {}

    def add(self, kind: str, seconds: float | None, error: str | None = None) -> None:
        with self.lock:
            self.times.setdefault(kind, [])
            self.errors.setdefault(kind, [])
            if error is None:
                self.times[kind].append(seconds)
            else:
                self.errors[kind].append(error[:200])


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", help="start app.py with this checkpoint (e.g. the full-size synthetic one)")
    where.add_argument("--url", help="a running server on loopback")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of simulated visitors (default 120)")
    ap.add_argument("--sliders", type=int, default=3, help="slider visitors (default 3)")
    ap.add_argument("--slider-every", type=float, default=4.0, help="seconds between a visitor's moves (default 4)")
    ap.add_argument("--full-every", type=float, default=30.0, help="seconds between full-resolution renders")
    ap.add_argument("--clip-seconds", type=float, default=2.0, help="length of the video clip (default 2)")
    ap.add_argument("--lifespan-between", type=int, default=2, help="lifespan frames between key ages (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)

    from gradio_client import Client, handle_file

    rng = random.Random(args.seed)
    load_start = [round(v, 2) for v in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="sam-load-"))
    proc = None
    try:
        if args.checkpoint:
            proc, url = start_server(args.checkpoint, tmp / "server.log")
        else:
            url = args.url
        faces = photos(tmp, args.sliders + 1)
        clip = make_clip(tmp / "clip.mp4", seconds=args.clip_seconds, size=(320, 240), still=args.clip_seconds * 0.4)
        clients = [Client(url, verbose=False, download_files=str(tmp)) for _ in range(args.sliders + 3)]
        sliders, full_client, video_client, life_client = (clients[: args.sliders], clients[args.sliders],
                                                           clients[args.sliders + 1], clients[args.sliders + 2])

        def age(client, photo, target, size):
            return client.predict(handle_file(str(photo)), target, size, api_name="/age")

        def video(client):
            return client.predict(handle_file(str(clip)), 70, "largest", 256, 0, 0, False, api_name="/video")

        def lifespan(client):
            return client.predict(handle_file(str(faces[-1])), 0, 100, args.lifespan_between, 20, 256,
                                  api_name="/lifespan")

        # ---- alone: each kind by itself on an idle server (a photo's first request does its detection and
        # encoding; the slider figure is the steady move after it)
        alone: dict[str, float] = {}
        for i, photo in enumerate(faces[:-1]):
            alone.setdefault("first photo (256 px)", timed(age, sliders[i], photo, 40, 256)[0])
        moves = [timed(age, sliders[0], faces[0], a, 256)[0] for a in (23, 57, 81)]
        alone["slider (256 px)"] = statistics.median(moves)
        alone["full resolution"] = timed(age, full_client, faces[0], 65, None)[0]
        alone["video clip"] = timed(video, video_client)[0]
        alone["lifespan"] = timed(lifespan, life_client)[0]
        print("alone:", {k: round(v, 2) for k, v in alone.items()}, flush=True)

        # ---- under load
        rec = Record()
        stop = threading.Event()
        long_done: dict[str, float] = {}

        def long_job(kind, fn, client):
            t0 = time.perf_counter()
            try:
                fn(client)
                long_done[kind] = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - counted
                rec.add(kind, None, f"{type(exc).__name__}: {exc}")

        def slider_visitor(i):
            local = random.Random(args.seed * 100 + i)
            time.sleep(local.uniform(0, args.slider_every))
            while not stop.is_set():
                target = local.randint(0, 100)
                try:
                    rec.add("slider (256 px)", timed(age, sliders[i], faces[i], target, 256)[0])
                except Exception as exc:  # noqa: BLE001 - counted
                    rec.add("slider (256 px)", None, f"{type(exc).__name__}: {exc}")
                stop.wait(args.slider_every * local.uniform(0.7, 1.3))

        def full_visitor():
            stop.wait(args.full_every / 2)
            while not stop.is_set():
                try:
                    rec.add("full resolution", timed(age, full_client, faces[0], rng.randint(0, 100), None)[0])
                except Exception as exc:  # noqa: BLE001 - counted
                    rec.add("full resolution", None, f"{type(exc).__name__}: {exc}")
                stop.wait(args.full_every)

        threads = [threading.Thread(target=long_job, args=("video clip", video, video_client)),
                   threading.Thread(target=long_job, args=("lifespan", lifespan, life_client)),
                   threading.Thread(target=full_visitor)]
        threads += [threading.Thread(target=slider_visitor, args=(i,)) for i in range(args.sliders)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(args.duration)
        stop.set()
        for t in threads:
            t.join(timeout=1800)
        wall = time.perf_counter() - began
        info = machine("cpu")
        info["load_average_start"] = load_start
        info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        rss = peak_rss_mb(proc.pid) if proc is not None else None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()

    rows = []
    for kind in ("slider (256 px)", "full resolution"):
        t = rec.times.get(kind, [])
        rows.append({"kind": kind, "count": len(t), "errors": len(rec.errors.get(kind, [])),
                     "p50_s": pct(t, 0.5), "p95_s": pct(t, 0.95), "max_s": max(t) if t else float("nan"),
                     "alone_s": alone[kind]})
    long_rows = [{"kind": k, "alone_s": alone[k], "under_load_s": long_done.get(k), "errors": rec.errors.get(k, [])}
                 for k in ("video clip", "lifespan")]
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": info,
              "settings": vars(args), "url": "started" if args.checkpoint else args.url, "wall_s": wall,
              "alone": alone, "requests": rows, "long_jobs": long_rows, "peak_rss_mb": rss,
              "errors": {k: v for k, v in rec.errors.items() if v}}
    isa = ", ".join(k for k, v in info["isa"].items() if v) or "none"
    lines = [
        f"# Load test ({result['date']})", "",
        f"CPU: {info['cpu']} ({isa}), {info['cores']} cores, torch {info['torch']}; load average at start "
        f"{info['load_average_start']}, at end {info['load_average_end']}.",
        f"{args.sliders} slider visitors (a 256 px /age every ~{args.slider_every:g} s each), a full-resolution "
        f"render every {args.full_every:g} s, one {args.clip_seconds:g} s video clip and one lifespan video, for "
        f"{args.duration:g} s. Command: `python bench/load.py {' '.join(argv or sys.argv[1:])}`", "",
        "| request | count | errors | p50 (s) | p95 (s) | max (s) | alone (s) | p95 / alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['kind']} | {r['count']} | {r['errors']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['max_s']:.2f} | "
          f"{r['alone_s']:.2f} | {r['p95_s'] / r['alone_s']:.1f}x |" for r in rows), "",
        "| long job | alone (s) | under load (s) |", "|---|---:|---:|",
        *(f"| {r['kind']} | {r['alone_s']:.1f} | "
          f"{'failed' if r['under_load_s'] is None else format(r['under_load_s'], '.1f')} |" for r in long_rows), "",
        f"First request of a new photo, alone: {alone['first photo (256 px)']:.2f} s. Server peak RSS: "
        f"{'n/a' if rss is None else f'{rss:.0f} MB'}.",
    ]
    if result["errors"]:
        lines += ["", "Errors: " + json.dumps(result["errors"])[:1000]]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        report.save("load", machine_slug(info), text, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
