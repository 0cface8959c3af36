"""Hostile clients against a running app: how fast bad clips are refused, how fast a cancel is answered, and that
nothing is left running afterwards.

    python bench/hostile.py --checkpoint /tmp/sam_seed0.pt
    python bench/hostile.py --probe          # the clip check alone, in this process (no server, no checkpoint)

Starts ``app.py`` on a free loopback port and, through ``gradio_client`` (and raw HTTP for a closed stream):

* sends a 20-minute 720p clip of a few MB, a 19 s clip at 1000 frames/s, and an MKV of 16000x16000 PNG frames to
  ``/video`` and times each refusal;
* starts a real ``/video`` job, waits for its progress, calls ``job.cancel()`` and times the answer; does the same
  three times with a 300-minute clip during its check;
* closes a client's result stream in the middle of a job;
* then counts the ffmpeg processes the server still has (the video layer starts none: PyAV decodes and encodes in
  the server's own process; the count checks that it stays so).

``--probe`` times :func:`sam.video.probe.probe_clip` itself with the app's limits on the same clips, how soon the
frame count of a 120 s 640x480 clip stops once ``should_stop`` turns true, a normal 5 s clip probed and decoded, and
how much of its idle pace a CPU-bound Python thread (a slider's request) keeps while a clip is counted.

Prints a table and writes ``bench/results/<date>-hostile-<cpu>.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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


def hostile_clips(tmp: Path) -> dict[str, Path]:
    return {
        "20-minute 720p clip": lavfi(tmp / "long.mp4", "color=c=gray:s=1280x720:r=30:d=1200", "-c:v", "libx264",
                                     "-preset", "ultrafast", "-crf", "51"),
        "19 s at 1000 frames/s": lavfi(tmp / "fast.mp4", "testsrc=s=64x48:r=1000:d=19", "-c:v", "libx264",
                                       "-preset", "ultrafast"),
        "16000x16000 PNG frames (MKV)": lavfi(tmp / "bomb.mkv", "color=c=gray:s=16000x16000:r=1:d=2", "-c:v", "png"),
    }


def _spin(seconds: float) -> int:
    """A CPU-bound pure-Python loop (the worst case for the GIL): iterations done in ``seconds``."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += sum(range(200))
    return n


def probe_rows(tmp: Path) -> list[dict]:
    """``probe_clip`` itself: refusals, the stop of a cancelled count, a normal clip, a thread beside a count."""
    import threading

    from sam.cancel import JobCancelledError
    from sam.video.probe import probe_clip, read_frames
    from web.limits import Limits

    limits = Limits().clip_limits()
    rows = []
    for name, path in hostile_clips(tmp).items():
        times, message = [], ""
        for _ in range(5):
            t0 = time.perf_counter()
            try:
                probe_clip(path, limits)
                message = "accepted!"
            except Exception as exc:  # noqa: BLE001 - the refusal is the point
                message = str(exc)
            times.append(time.perf_counter() - t0)
        rows.append({"case": f"probe_clip refuses the {name} ({path.stat().st_size / 1e6:.1f} MB): best of 5 "
                             f"(worst {max(times):.4f} s)", "seconds": min(times), "answer": message[:160]})
        print(rows[-1], flush=True)
    slow = lavfi(tmp / "slow.mp4", "testsrc=s=640x480:r=25:d=120", "-c:v", "libx264", "-preset", "ultrafast")
    for _ in range(3):
        state: dict[str, float] = {"began": time.monotonic()}

        def stop(state: dict[str, float] = state) -> bool:
            if time.monotonic() - state["began"] > 0.3:
                state.setdefault("at", time.monotonic())
                return True
            return False

        try:
            probe_clip(slow, should_stop=stop)
            answer = "not cancelled!"
        except JobCancelledError:
            answer = "JobCancelledError"
        rows.append({"case": "the frame count of a 120 s 640x480 clip: seconds from should_stop turning true to "
                             "the stop", "seconds": time.monotonic() - state["at"], "answer": answer})
        print(rows[-1], flush=True)
    idle = _spin(2.0)
    spun: list[int] = []
    spinner = threading.Thread(target=lambda: spun.append(_spin(2.0)))
    spinner.start()
    t0 = time.perf_counter()
    frames = probe_clip(slow).frames
    counted = time.perf_counter() - t0
    spinner.join()
    rows.append({"case": f"a CPU-bound Python thread beside the count ({frames} frames in {counted:.1f} s)",
                 "seconds": None, "answer": f"{100 * spun[0] / idle:.0f} % of its idle pace"})
    print(rows[-1], flush=True)
    normal = make_clip(tmp / "normal.mp4", seconds=5.0)
    best_probe = best_read = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        info = probe_clip(normal)
        t1 = time.perf_counter()
        n = sum(1 for _ in read_frames(info))
        best_probe, best_read = min(best_probe, t1 - t0), min(best_read, time.perf_counter() - t1)
    rows.append({"case": f"a 5 s 320x240 clip: probe_clip ({info.frames} frames), best of 5", "seconds": best_probe,
                 "answer": "ok"})
    rows.append({"case": f"the same clip: read_frames, all {n} frames, best of 5", "seconds": best_read,
                 "answer": "ok"})
    print(rows[-2:], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--probe", action="store_true", help="time the clip check alone, in this process")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    if not args.probe and not args.checkpoint:
        ap.error("--checkpoint is needed (or --probe)")
    tmp = Path(tempfile.mkdtemp(prefix="sam-hostile-"))
    print("making the clips ...", flush=True)
    if args.probe:
        return report_rows(args, probe_rows(tmp), "hostile-probe")
    from gradio_client import Client, handle_file

    clips = hostile_clips(tmp)
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
        rows += word_rows(url, tmp)
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
    log = (tmp / "server.log").read_text(errors="replace")
    rows.append({"case": "tracebacks in the server's log, the whole run", "seconds": None,
                 "answer": str(log.count("Traceback"))})
    print(rows[-1], flush=True)
    return report_rows(args, rows, "hostile")


def word_rows(url: str, tmp: Path) -> list[dict]:
    """Raw-HTTP requests that once got "Something went wrong" or an empty error: each must get words."""
    two_streams = tmp / "two-streams.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=64x64:r=2:d=3", "-f", "lavfi", "-i", "testsrc=s=320x240:r=1000:d=3", "-map", "0:v",
                    "-map", "1:v", "-c:v", "libx264", "-preset", "ultrafast", str(two_streams)], check=True,
                   capture_output=True)
    huge = "1" + "0" * 400
    rows = []
    with httpx.Client(timeout=120) as http:
        def upload(path: Path) -> dict:
            got = http.post(f"{url}gradio_api/upload", files={"files": open(path, "rb")}).json()[0]
            return {"path": got, "meta": {"_type": "gradio.FileData"}}

        photo, clip = upload(ROOT / "assets" / "astronaut.png"), upload(two_streams)
        folder = str(Path(photo["path"]).parent)
        cases = [
            ("faces=\"9\" x 400", "age", [photo, 40, 32, False, 0, False, "9" * 400]),
            ("target_age 10**400", "age", f'[{json.dumps(photo)}, {huge}, 32, false, 0, false]'),
            ("start 10**400", "video", f'[{json.dumps(clip)}, 70, "largest", 256, {huge}, 0, false]'),
            ("output_size 10**400", "video", f'[{json.dumps(clip)}, 70, "largest", {huge}, 0, 0, false]'),
            ("a URL as the photo", "age", [{**photo, "path": "http://169.254.169.254/latest"}, 40]),
            ("a NUL byte in the path", "age", [{**photo, "path": photo["path"] + "\x00.png"}, 40]),
            ("an upload's folder as the photo", "age", [{**photo, "path": folder}, 40]),
            ("the uploads folder as the photo", "age", [{**photo, "path": str(Path(folder).parent)}, 40]),
            ("two video streams (64x64 at 2 fps, then 320x240 at 1000 fps)", "video",
             [clip, 70, "largest", 256, 0, 0, False]),
            ("a lifespan of 611 frames at 1024 px", "lifespan", [photo, 0, 100, 60, 20, 1024, False, False, 0]),
        ]
        for name, api, data in cases:
            body = data if isinstance(data, str) else json.dumps(data)
            t0 = time.perf_counter()
            event = http.post(f"{url}gradio_api/call/{api}", content='{"data": ' + body + "}",
                              headers={"content-type": "application/json"}).json()["event_id"]
            answer = http.get(f"{url}gradio_api/call/{api}/{event}").text
            got = answer.rsplit("data:", 1)[-1].strip()
            try:
                got = json.loads(got).get("error") or got
            except (ValueError, AttributeError):
                pass
            rows.append({"case": name, "seconds": time.perf_counter() - t0, "answer": str(got)[:160]})
            print(rows[-1], flush=True)
    return rows


def report_rows(args: argparse.Namespace, rows: list[dict], kind: str) -> int:
    info = machine("cpu")
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": info, "rows": rows}
    lines = [f"# Hostile clients ({result['date']})", "", f"CPU: {info['cpu']}, {info['cores']} cores; checkpoint "
             f"`{args.checkpoint}`. Command: `python bench/hostile.py {' '.join(sys.argv[1:])}`", "",
             "| case | seconds | answer |", "|---|---:|---|",
             *(f"| {r['case']} | {'' if r['seconds'] is None else format(r['seconds'], '.4g')} | "
               f"{r['answer'].replace('|', '/')} |" for r in rows)]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        report.save(kind, machine_slug(info), text, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
