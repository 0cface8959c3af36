"""Many visitors on one machine (issue: a slider never waits behind someone else's video), on the tiny checkpoint
with no timing thresholds: an interactive request overtakes a running video, the video still completes with all its
frames, one video per visitor, hostile clips refused from their header, SIGTERM cleans up. Servers listen on
127.0.0.1 only; every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import pytest

import web
from sam.cancel import JobCancelledError
from sam.requests import RequestError
from sam.video import probe
from tests.browser import free_port, launch
from tests.clipmaker import make_clip
from tests.conftest import TINY
from tests.test_app import ASTRONAUT, _ffmpeg_children, _local

S = TINY.output_size
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def busy_server(tiny_checkpoint):
    """A server whose every rendered image holds the model lock for 50 ms, as a real network pass would."""
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    pipe = demo.sam_app.pipe
    real_render = pipe.render

    def slow_render(*args, **kwargs):
        with pipe.lock:
            time.sleep(0.05)
            return real_render(*args, **kwargs)

    pipe.render = slow_render
    url = launch(demo)
    yield url, demo.sam_app
    demo.close()


def _wait_progress(job, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.status().progress_data:
        assert time.monotonic() < deadline, "the job never showed progress"
        assert not job.done(), "the job ended before it showed progress"
        time.sleep(0.05)


def test_a_slider_overtakes_a_running_video_which_still_completes(busy_server, tmp_path):
    from gradio_client import Client, handle_file

    url, sam_app = busy_server
    first = Client(url, verbose=False, download_files=str(tmp_path))
    second = Client(url, verbose=False, download_files=str(tmp_path))
    frames = (11 - 1) * (20 + 1) + 1  # key ages 0..100, 20 frames between: 211 frames, ~10 s here
    video = first.submit(handle_file(ASTRONAUT), 0, 100, 20, 20, S, api_name="/lifespan")
    _wait_progress(video)  # the video is provably computing
    for target in (33, 67):  # two slider moves of another visitor
        image = second.predict(handle_file(ASTRONAUT), target, S, api_name="/age")
        assert Path(image).is_file()
        assert not video.done(), "the slider waited for the whole video"
    out = _local(video.result(timeout=120))
    assert len(list(iio.imiter(out))) == frames  # the video was slowed down, not cut short


def test_one_video_per_visitor_in_words(busy_server, tmp_path):
    from gradio_client import Client, handle_file

    url, sam_app = busy_server
    visitor = Client(url, verbose=False, download_files=str(tmp_path))
    running = visitor.submit(handle_file(ASTRONAUT), 0, 100, 20, 20, S, api_name="/lifespan")
    _wait_progress(running)
    second = visitor.submit(handle_file(ASTRONAUT), 0, 50, 5, 20, S, api_name="/lifespan")
    with pytest.raises(Exception, match="already have a video waiting or rendering"):
        second.result(timeout=60)
    running.cancel()
    _wait_idle(sam_app)


def test_cancel_is_answered_at_once(busy_server):
    """job.cancel() returns before the running frame ends (gradio_client gives up on a cancel after 5 s)."""
    from gradio_client import Client, handle_file

    url, sam_app = busy_server
    job = Client(url, verbose=False).submit(handle_file(ASTRONAUT), 0, 100, 20, 20, S, api_name="/lifespan")
    _wait_progress(job)
    real_render = sam_app.pipe.render
    sam_app.pipe.render = lambda *a, **k: time.sleep(3) or real_render(*a, **k)  # a 3 s frame, like a 1024 px one
    try:
        time.sleep(0.2)
        began = time.monotonic()
        job.cancel()
        answered = time.monotonic() - began
    finally:
        sam_app.pipe.render = real_render
    assert answered < 2.5, f"the cancel took {answered:.1f} s: it waited for the frame"
    _wait_idle(sam_app)  # the frame ends, then the job stops and closes its writer


def _wait_idle(sam_app, timeout: float = 20.0) -> None:
    running = sam_app.scheduler.running
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (running.count or _ffmpeg_children()):
        time.sleep(0.1)
    assert not running.count and not _ffmpeg_children()


# --------------------------------------------------------------------------------------------- hostile clips


def _lavfi(tmp_path: Path, name: str, source: str, *extra: str) -> Path:
    out = tmp_path / name
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi", "-i", source, *extra,
                    str(out)], check=True, capture_output=True)
    return out


def _no_processes(monkeypatch) -> None:
    """From here on, starting a program fails the test: the video layer starts none (no ffmpeg left running)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", refuse)


LIMITS = probe.ClipLimits(seconds=20, frames=600, fps=60, pixels=1000 * 1000)


@pytest.mark.parametrize(("name", "source", "extra", "words"), [
    ("long.mp4", "color=c=gray:s=64x48:r=1:d=1200", ["-c:v", "libx264", "-preset", "ultrafast"],
     "1200 seconds long; this page takes clips of at most 20 seconds"),
    ("fast.mkv", "testsrc=s=32x32:r=1000:d=3", ["-c:v", "libx264", "-preset", "ultrafast"],
     "1000 frames per second; this page takes at most 60"),
    ("huge.mkv", "color=c=gray:s=1200x1000:r=2:d=1", ["-c:v", "png"], "frames are 1200x1000 pixels"),
])
def test_hostile_clips_are_refused_from_the_header(tmp_path, monkeypatch, name, source, extra, words):
    path = _lavfi(tmp_path, name, source, *extra)
    counts, opened = [], []
    real_count, real_open = probe._count_frames, probe.av.open
    monkeypatch.setattr(probe, "_count_frames", lambda *a: counts.append(a) or real_count(*a))
    monkeypatch.setattr(probe.av, "open", lambda *a, **k: opened.append(k.get("options")) or real_open(*a, **k))
    _no_processes(monkeypatch)
    with pytest.raises(RequestError, match=words):
        probe.probe_clip(path, LIMITS)
    assert not counts  # refused before a single frame was decoded:
    assert opened == [{"codec_whitelist": "none"}]  # the file was opened once, with every decoder barred


def test_a_clip_without_a_stated_length_is_stopped_at_the_frame_limit(tmp_path, monkeypatch):
    path = _lavfi(tmp_path, "raw.h264", "testsrc=s=32x32:r=25:d=60", "-c:v", "libx264", "-preset", "ultrafast")
    _no_processes(monkeypatch)
    with pytest.raises(RequestError, match="more than 600 frames"):
        probe.probe_clip(path, probe.ClipLimits(frames=600))


def test_the_frame_count_stops_when_cancelled(tmp_path, monkeypatch):
    path = _lavfi(tmp_path, "slow.mp4", "testsrc=s=640x480:r=25:d=120", "-c:v", "libx264", "-preset", "ultrafast")
    _no_processes(monkeypatch)
    began = time.monotonic()
    with pytest.raises(JobCancelledError):
        probe.probe_clip(path, should_stop=lambda: time.monotonic() - began > 0.3)


# --------------------------------------------------------------------------------------------- SIGTERM


def test_sigterm_during_a_video_leaves_nothing(tiny_checkpoint, tmp_path):
    """Docker and Spaces stop the app with SIGTERM: exit status 0, no results folder, no cached uploads, no ffmpeg."""
    from gradio_client import Client, handle_file

    temp, uploads = tmp_path / "tmp", tmp_path / "gradio"
    temp.mkdir()
    uploads.mkdir()
    source = make_clip(tmp_path / "in.mp4", seconds=8.0)
    port = free_port()
    env = {**os.environ, "TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(uploads), "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(tiny_checkpoint),
                             "--no-download", "--device", "cpu", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        client = None
        while client is None:
            assert proc.poll() is None and time.monotonic() < deadline, "the app did not start"
            try:
                client = Client(url, verbose=False)
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        job = client.submit(handle_file(str(source)), 70, "largest", S, 0, 0, False, api_name="/video")
        _wait_progress(job, timeout=120)
        assert list(temp.glob("sam-app-*")) and any(p.is_file() for p in uploads.rglob("*"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log = proc.stdout.read().decode(errors="replace")
    assert "SIGTERM" in log, log[-2000:]
    assert not list(temp.glob("sam-app-*")), log[-2000:]
    assert not [p for p in uploads.rglob("*") if p.is_file()], log[-2000:]
    assert not _ffmpeg_of(tmp_path)


def _ffmpeg_of(folder: Path) -> list[int]:
    """ffmpeg processes (anyone's child, orphans included) that work on files under ``folder``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_text(errors="replace")
        except OSError:
            continue
        if "ffmpeg" in text and str(folder) in text:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.parametrize("target", ["/etc/passwd", "CHECKPOINT", "NO_META", "URL", "NUL", "UPLOAD_FOLDER",
                                    "UPLOADS"])
def test_a_file_reference_outside_the_uploads_gets_words(busy_server, tiny_checkpoint, capfd, caplog, target):
    """A path outside the uploads, the server's own checkpoint, a bare ``{"path": ...}`` without Gradio's marker, a
    URL (never fetched), a NUL byte, the folder of an upload or the uploads folder itself: one sentence each, and the
    clean-up still works afterwards (a folder once made Gradio's deletion stop)."""
    import httpx

    url, sam_app = busy_server
    with httpx.Client(timeout=30) as http:
        uploaded = http.post(f"{url}gradio_api/upload", files={"files": ("a.png", open(ASTRONAUT, "rb"))}).json()[0]
    path = {"CHECKPOINT": str(tiny_checkpoint), "URL": "http://127.0.0.1:9/a.png", "NUL": uploaded + "\x00.png",
            "UPLOAD_FOLDER": str(Path(uploaded).parent), "UPLOADS": str(Path(uploaded).parent.parent)
            }.get(target, "/etc/passwd")
    reference = {"path": path} if target == "NO_META" else {"path": path, "meta": {"_type": "gradio.FileData"}}
    body = {"data": [reference, 40, S, False, 0, False]}
    with caplog.at_level("INFO", logger="sam.app"), httpx.Client(timeout=30) as http:
        event = http.post(f"{url}gradio_api/call/age", json=body).json()["event_id"]
        answer = http.get(f"{url}gradio_api/call/age/{event}").text
    assert "event: error" in answer and "was not uploaded to this server" in answer
    assert path not in answer and "Traceback" not in capfd.readouterr().err
    assert len([r for r in caplog.records if "outside the uploads" in r.getMessage()]) == 1
    from web import glue

    glue.delete_cached_files(sam_app.demo)  # what the hourly clean-up and SIGTERM run: no folder stops it
    assert not Path(uploaded).exists() and Path(uploaded).parent.parent.is_dir()


def test_old_results_are_swept_on_a_timer(tmp_path, monkeypatch):
    """Results older than an hour go even when no new job arrives."""
    sam_app = web.AgeApp(None, "no model", workdir=tmp_path / "results", limits=web.Limits(sweep_every_s=0.05))
    old, new = sam_app.workdir / "sam-old.mp4", sam_app.workdir / "sam-new.mp4"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    hour_ago = time.time() - sam_app.limits.output_max_age_s - 5
    os.utime(old, (hour_ago, hour_ago))
    deadline = time.monotonic() + 10
    while old.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not old.exists() and new.exists()
    finally:
        sam_app.cleanup()
    assert not sam_app.workdir.exists()


def test_several_sessions_from_one_address_hold_only_its_share(busy_server, tmp_path, monkeypatch):
    """Three gradio_client sessions from one client: two videos go into the line, the third is refused in words;
    a visitor behind the Space's proxy with another address still gets in (the proxy's X-Forwarded-For entry is
    read only behind a proxy)."""
    from gradio_client import Client, handle_file

    url, sam_app = busy_server
    monkeypatch.setenv("SAM_TRUSTED_PROXY", "1")  # as behind a Space's proxy: the last X-Forwarded-For entry counts
    mine = [Client(url, verbose=False, download_files=str(tmp_path), headers={"X-Forwarded-For": "1.2.3.4"})
            for _ in range(3)]
    jobs = [c.submit(handle_file(ASTRONAUT), 0, 100, 20, 20, S, api_name="/lifespan") for c in mine[:2]]
    _wait_progress(jobs[0])
    deadline = time.monotonic() + 60
    while sam_app.scheduler.long_jobs.snapshot() != (1, 1):
        assert time.monotonic() < deadline, "the second video never joined the line"
        time.sleep(0.05)
    third = mine[2].submit(handle_file(ASTRONAUT), 0, 50, 5, 20, S, api_name="/lifespan")
    with pytest.raises(Exception, match="2 videos from your connection are already waiting or rendering"):
        third.result(timeout=60)
    other = Client(url, verbose=False, download_files=str(tmp_path), headers={"X-Forwarded-For": "9.9.9.9, 5.6.7.8"})
    theirs = other.submit(handle_file(ASTRONAUT), 0, 50, 5, 20, S, api_name="/lifespan")
    deadline = time.monotonic() + 60
    while sam_app.scheduler.long_jobs.snapshot() != (1, 2):
        assert time.monotonic() < deadline and not theirs.done(), "another address was kept out"
        time.sleep(0.05)
    for job in (*jobs, theirs):
        job.cancel()
    _wait_idle(sam_app)


def test_uploads_are_bounded_in_total_and_per_address(tiny_checkpoint, tmp_path):
    """The upload space: one address gets its share, then words (429); when the uploads together are at the total,
    everyone gets words (507); an upload that does not say its length is refused (411). Nothing refused is stored."""
    import httpx
    from gradio.utils import get_upload_folder

    from web.uploads import folder_bytes

    stored = folder_bytes(get_upload_folder()) / 2**20  # what earlier tests left in the shared upload folder
    limits = web.Limits(upload_mb_per_address=1, upload_space_mb=int(stored) + 3)
    demo = web.build_demo(app=web.AgeApp.load(str(tiny_checkpoint), device="cpu", limits=limits))
    url = launch(demo)
    blob = os.urandom(700 * 1024)
    try:
        with httpx.Client(timeout=30) as http:
            def upload(name: str, **headers: str) -> httpx.Response:
                return http.post(f"{url}gradio_api/upload", files={"files": (name, blob)}, headers=headers)

            assert upload("a.bin").status_code == 200
            refused = upload("b.bin")
            assert refused.status_code == 429 and "takes at most 1 MB from one visitor" in refused.text
            assert list(Path(get_upload_folder()).rglob("a.bin")) and not list(Path(get_upload_folder()).rglob("b.bin"))
            chunked = http.post(f"{url}gradio_api/upload", content=iter([b"x" * 10]))  # no Content-Length
            assert chunked.status_code == 411 and "length" in chunked.text
        space = next(m for m in demo.app.user_middleware if m.cls.__name__ == "UploadSpace")
        assert space.kwargs["total_mb"] == limits.upload_space_mb
        from web.uploads import UploadSpace

        gate = UploadSpace(None, folder=lambda: str(tmp_path), address=lambda scope: scope["client"][0],
                           total_mb=1, per_address_mb=100)
        (tmp_path / "big").write_bytes(b"x" * 900 * 1024)
        scope = {"client": ("5.5.5.5", 1), "headers": [(b"content-length", str(200 * 1024).encode())]}
        status, words = gate.refusal(scope)
        assert status == 507 and "upload space is full" in words
        assert gate.refusal({**scope, "headers": [(b"content-length", b"1000")]}) is None
    finally:
        demo.close()
