"""Hostile clients against a running app: how fast bad clips are refused, how fast a cancel is answered, and that
nothing is left running afterwards.

    python bench/hostile.py --checkpoint /tmp/sam_seed0.pt

Starts ``app.py`` on a free loopback port and, through ``gradio_client`` (and raw HTTP for a closed stream):

* sends a 20-minute 720p clip of a few MB, a 19 s clip at 1000 frames/s, and an MKV of 16000x16000 PNG frames to
  ``/video`` and times each refusal;
* starts a real ``/video`` job, waits for its progress, calls ``job.cancel()`` and times the answer; does the same
  three times with a 300-minute clip during its check;
* closes a client's result stream in the middle of a job;
* then counts the ffmpeg processes the server still has.

Prints a table and writes ``bench/results/<date>-hostile-<cpu>.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import imageio_ffmpeg  # noqa: E402

from bench import report  # noqa: E402
from bench.benchmark import machine, machine_slug  # noqa: E402
from bench.load import start_server  # noqa: E402
from tests.clipmaker import make_clip  # noqa: E402


def lavfi(out: Path, source: str, *extra: str) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i", source, *extra,
                    str(out)], check=True, capture_output=True)
    return out


def ffmpeg_children(pid: int) -> int:
    n = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and "ffmpeg" in stat.with_name("cmdline").read_text(errors="replace"):
                n += 1
        except (OSError, ValueError, IndexError):
            continue
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp(prefix="sam-hostile-"))
    print("making the clips ...", flush=True)
    clips = {
        "20-minute 720p clip": lavfi(tmp / "long.mp4", "color=c=gray:s=1280x720:r=30:d=1200", "-c:v", "libx264",
                                     "-preset", "ultrafast", "-crf", "51"),
        "19 s at 1000 frames/s": lavfi(tmp / "fast.mp4", "testsrc=s=64x48:r=1000:d=19", "-c:v", "libx264",
                                       "-preset", "ultrafast"),
        "16000x16000 PNG frames (MKV)": lavfi(tmp / "bomb.mkv", "color=c=gray:s=16000x16000:r=1:d=2", "-c:v", "png"),
    }
    very_long = lavfi(tmp / "verylong.mkv", "color=c=gray:s=320x240:r=30:d=18000", "-c:v", "libx264", "-preset",
                      "ultrafast", "-crf", "51", "-g", "9000")
    real = make_clip(tmp / "real.mp4", seconds=4.0)
    proc, url = start_server(args.checkpoint, tmp / "server.log")
    rows: list[dict] = []
    try:
        client = Client(url, verbose=False)
        for name, path in clips.items():
            t0 = time.perf_counter()
            try:
                client.predict(handle_file(str(path)), 70, "largest", 256, 0, 0, False, api_name="/video")
                message = "accepted!"
            except Exception as exc:  # noqa: BLE001 - the refusal is the point
                message = str(exc)
            rows.append({"case": f"{name} ({path.stat().st_size / 1e6:.1f} MB)", "seconds": time.perf_counter() - t0,
                         "answer": message[:160]})
            print(rows[-1], flush=True)
        job = client.submit(handle_file(str(real)), 70, "largest", 256, 0, 0, False, api_name="/video")
        while not job.status().progress_data:
            time.sleep(0.05)
        time.sleep(1.0)
        t0 = time.perf_counter()
        job.cancel()
        rows.append({"case": "job.cancel() of a running full-size /video job", "seconds": time.perf_counter() - t0,
                     "answer": "answered"})
        print(rows[-1], flush=True)
        for i in range(3):
            job = Client(url, verbose=False).submit(handle_file(str(very_long)), 70, "largest", 256, 0, 0, False,
                                                    api_name="/video")
            time.sleep(1.0)
            t0 = time.perf_counter()
            job.cancel()
            rows.append({"case": f"job.cancel() during the check of a 300-minute clip ({i + 1})",
                         "seconds": time.perf_counter() - t0, "answer": "answered"})
            print(rows[-1], flush=True)
        with httpx.Client(timeout=30) as http:  # a client that goes away mid-job
            upload = http.post(f"{url}gradio_api/upload", files={"files": open(real, "rb")}).json()[0]
            config = http.get(f"{url}config").json()
            fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "video")
            data = [{"path": upload, "meta": {"_type": "gradio.FileData"}}, 70, "largest", 256, 0, 0, False]
            http.post(f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": "gone",
                                                           "event_data": None, "trigger_id": None}).raise_for_status()
            with http.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": "gone"}) as stream:
                for line in stream.iter_lines():
                    if "progress" in line:
                        break
        deadline = time.monotonic() + 60
        while ffmpeg_children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = ffmpeg_children(proc.pid)
        rows.append({"case": "ffmpeg processes left after the cancels and the closed stream", "seconds": None,
                     "answer": str(left)})
        print(rows[-1], flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    info = machine("cpu")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": info, "rows": rows}
    lines = [f"# Hostile clients ({result['date']})", "", f"CPU: {info['cpu']}, {info['cores']} cores; checkpoint "
             f"`{args.checkpoint}`. Command: `python bench/hostile.py {' '.join(argv or sys.argv[1:])}`", "",
             "| case | seconds | answer |", "|---|---:|---|",
             *(f"| {r['case']} | {'' if r['seconds'] is None else format(r['seconds'], '.2f')} | "
               f"{r['answer'].replace('|', '/')} |" for r in rows)]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        report.save("hostile", machine_slug(info), text, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
