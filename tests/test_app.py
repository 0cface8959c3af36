"""The Gradio app on a tiny synthetic checkpoint: the handlers, every bad value through each door (Python, the raw
HTTP API with NaN / Infinity, gradio_client, the page), cancelled and abandoned jobs, the queue limit, the key-age
warm-up overlapping requests, and a real browser. Servers listen on 127.0.0.1 only; every wait is bounded."""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import threading
import time
from pathlib import Path

import gradio as gr
import httpx
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

import web
from sam.ages import KEY_AGES
from sam.cancel import JobCancelledError
from sam.pipeline import to_pil
from sam.session import FaceSession, Photo
from tests.browser import launch, needs_chromium, open_page, patient, screenshot_dir
from tests.conftest import TINY
from web.limits import Limits
from web.messages import BUSY_MESSAGE, ROOT, readable
from web.uploads import UnreadableUpload, photo_input

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ASTRONAUT = str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png")
S = TINY.output_size


@pytest.fixture(scope="module")
def demo(tiny_checkpoint) -> gr.Blocks:
    return web.build_demo(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="module")
def sam_app(demo) -> web.AgeApp:
    return demo.sam_app


@pytest.fixture(scope="module")
def faceless(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "wall.png"
    Image.new("RGB", (200, 160), (180, 170, 160)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def text_png(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "notes.png"
    path.write_text("<b>not</b> an image\n")
    return str(path)


@pytest.fixture(scope="module")
def server(demo):
    url = launch(demo)
    yield url
    demo.close()


def _run_job(fn, *args):
    """Call a ``job``-wrapped handler as Gradio would (no progress tracker outside a server)."""
    return asyncio.run(fn(*args, None))


def _wired(demo: gr.Blocks, name: str):
    """The page's handler ``name`` as the page calls it: the function wired to an event (its wrapper included),
    checked to be the method of that name of one of the page's panels."""
    wired = [d.fn for d in demo.fns.values() if getattr(d.fn, "__name__", "") == name]
    assert wired, f"no event calls {name}"
    method = next(getattr(p, name) for p in demo.sam_page.panels if hasattr(p, name))
    assert all(_innermost(fn) == method for fn in wired), f"{name} is not the panel's {name}"
    return wired[0]


def _innermost(fn):
    """What a wired function runs, under its wrappers (``stream``, ``job``, ``only_fresh``)."""
    while (inner := getattr(fn, "__wrapped__", None) or getattr(fn, "handler", None)) is not None:
        fn = inner
    return fn


def _frames(path: str) -> np.ndarray:
    return np.stack(list(iio.imiter(path)))


def _local(result) -> str:
    while isinstance(result, dict):
        result = result.get("video") or result.get("path")
    return result


# --------------------------------------------------------------------------------------------- without weights


def test_page_without_weights_says_so_without_server_paths(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    with caplog.at_level(logging.WARNING, logger="sam.app"):
        page = web.build_demo(str(tmp_path / "missing.pt"))
    texts = " ".join(str(getattr(b, "value", "")) for b in page.blocks.values())
    assert "not loaded" in texts and str(tmp_path) not in texts and "missing.pt" not in texts
    assert "missing.pt" in caplog.text and "SAM_CHECKPOINT" in caplog.text  # the operator's details: in the log
    with pytest.raises(gr.Error, match="not loaded") as info:
        _run_job(page.sam_app.jobs.job(page.sam_app.age), ASTRONAUT, 40, None, False, 0, False)
    assert str(tmp_path) not in str(info.value)


def test_page_with_download_problem(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sam.app"):
        page = web.build_demo(str(tmp_path / "missing.pt"), problem="<urlopen error [Errno -3] offline>")
    texts = " ".join(str(getattr(b, "value", "")) for b in page.blocks.values())
    assert "not loaded" in texts and "<urlopen" not in texts
    assert "urlopen error" in caplog.text


# --------------------------------------------------------------------------------------------- the handlers


def test_named_endpoints(demo):
    names = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert names == {"age", "mix", "lifespan", "video"}


def test_age_renders_the_rounded_age_and_pastes_back(sam_app):
    session = sam_app.session(ASTRONAUT)
    out = sam_app.age(ASTRONAUT, 59.6)
    assert out.size == (S, S)
    assert np.array_equal(np.asarray(out), np.asarray(session.render(60)))  # round half up: 59.6 -> 60
    assert not np.array_equal(np.asarray(out), np.asarray(session.render(59)))
    caption = session.caption(59.6, out)  # '' when the metric models are missing
    assert caption == "" or caption.startswith("Age 60: reads as")
    assert np.array_equal(np.asarray(sam_app.age(ASTRONAUT, 59.5)), np.asarray(out))
    pasted = sam_app.age(ASTRONAUT, 40, S, False, 0, True)
    assert pasted.size == Image.open(ASTRONAUT).size


def test_mix_changes_the_result_and_equals_the_pipelines_mix(sam_app):
    pipe = sam_app.pipe
    mixed = sam_app.mix(ASTRONAUT, ASTRONAUT, 60, "4-7", 0.5)
    plain = sam_app.age(ASTRONAUT, 60)
    assert not np.array_equal(np.asarray(mixed), np.asarray(plain))  # the reference's styles changed something
    face = sam_app.session(ASTRONAUT)
    codes = pipe.latents(face.encoded, [60]).clone()
    ref = pipe.reference_code(face.encoded)
    codes[:, 4:8] = 0.5 * ref[:, 4:8] + 0.5 * codes[:, 4:8]  # the paper's mix, written out here
    expected = to_pil(pipe.render(codes))[0]
    assert np.array_equal(np.asarray(mixed), np.asarray(expected))


def test_lifespan_video(sam_app):
    mp4 = sam_app.lifespan(ASTRONAUT, 20, 50, 2, 10, S)
    frames = _frames(mp4)
    assert frames.shape[0] == (4 - 1) * 3 + 1  # keys 20, 30, 40, 50; 2 frames between each pair
    assert frames.shape[1:3] == (S, S)


def test_cancelled_lifespan_leaves_no_file(sam_app):
    seen = []

    def stop_once_a_partial_file_exists() -> bool:  # stopped mid-write: there is something to clean up
        seen.append(bool(glob.glob(str(sam_app.workdir / "*partial*"))))
        return seen[-1] or len(seen) > 2000

    with pytest.raises(JobCancelledError):
        sam_app.lifespan(ASTRONAUT, 0, 100, 5, 10, S, should_stop=stop_once_a_partial_file_exists)
    assert seen[-1]  # the video was being written when the job stopped
    assert not glob.glob(str(sam_app.workdir / "*partial*"))


# --------------------------------------------------------------------------------------------- bad values


BAD_VALUES = [
    # (handler, arguments, words the message must hold)
    ("age", (None, 40), "add a photo"),
    ("age", ("TEXT", 40), "not a recognised image"),
    ("age", ("FACELESS", 40), "no face found"),
    ("age", (ASTRONAUT, 140), "between 0 and 100"),
    ("age", (ASTRONAUT, float("nan")), "must be a number between 0 and 100"),
    ("age", (ASTRONAUT, float("inf")), "must be a number between 0 and 100"),
    ("age", (ASTRONAUT, "old"), "must be a number"),
    ("age", (ASTRONAUT, 40, float("nan")), "size must be a number"),
    ("age", (ASTRONAUT, 40, -5), "size must be 8 or more"),
    ("age", (ASTRONAUT, 40, S, False, float("nan")), "face index must be a number"),
    ("age", (ASTRONAUT, 40, S, False, -1), "face index must be 0 or more"),
    ("age", (ASTRONAUT, 40, S, False, 3), "face number 3 was asked for, but the photo has 1 face"),
    ("age", (ASTRONAUT, 40, S, False, 0.5), "whole number"),
    ("mix", (ASTRONAUT, None, 40), "reference"),
    ("mix", (ASTRONAUT, "FACELESS", 40, "4-7"), "no face found in the reference"),
    ("mix", (ASTRONAUT, ASTRONAUT, 40, "3-99"), "between 0 and 7"),
    ("mix", (ASTRONAUT, ASTRONAUT, 40, "<script>"), "layers '<script>'"),  # plain text for API clients
    ("mix", (ASTRONAUT, ASTRONAUT, 40, "fine"), "no fine layers"),
    ("mix", (ASTRONAUT, ASTRONAUT, 40, "4-7", 2), "between 0 and 1"),
    ("mix", (ASTRONAUT, ASTRONAUT, 40, "4-7", float("nan")), "mix strength must be a number"),
    ("lifespan", (ASTRONAUT, 30, 30), "same"),
    ("lifespan", (ASTRONAUT, float("nan"), 100), "start age must be a number"),
    ("lifespan", (ASTRONAUT, 0, float("inf")), "end age must be a number"),
    ("lifespan", (ASTRONAUT, 0, 100, 500), "frames between key ages must be between 0 and 60"),
    ("lifespan", (ASTRONAUT, 0, 100, 5, float("nan")), "fps must be a number"),
    ("lifespan", (ASTRONAUT, 0, 100, 5, 0), "fps must be between 1 and 60"),
]


@pytest.mark.parametrize(("name", "args", "words"), BAD_VALUES)
def test_bad_values_give_readable_messages(sam_app, faceless, text_png, name, args, words, caplog):
    args = tuple({"TEXT": text_png, "FACELESS": faceless}.get(a, a) if isinstance(a, str) else a for a in args)
    with caplog.at_level(logging.INFO, logger="sam.app"), pytest.raises(gr.Error) as info:
        _run_job(sam_app.jobs.job(getattr(sam_app, name)), *args)
    message = str(info.value.message)
    assert words.lower() in message.lower()
    assert "Traceback" not in message and "Something went wrong" not in message
    assert "/tmp" not in message and str(ROOT) not in message and "api_" not in message
    assert "Traceback" not in caplog.text and len(caplog.records) == 1  # one log line per rejected request


def test_page_errors_go_to_the_status_line(demo, faceless):
    """A page handler's failure is an update of the status line (it stays), not an exception (badges)."""
    status = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "status")
    handler = _wired(demo, "on_photo")
    updates = list(handler(faceless, False, 40, False))
    assert len(updates) == 1 and list(updates[0]) == [status]
    assert updates[0][status].startswith("⚠️ No face found in the photo")


def test_readable_messages_escape_html_and_hide_paths():
    assert readable(ValueError("<urlopen error [Errno 111]>")) == "&lt;urlopen error [Errno 111]&gt;."
    assert readable(ValueError("0 <= start"), markup=False) == "0 <= start."  # API clients get plain text
    text = readable(ValueError(f"cannot read {ROOT}/weights/x.pt"))
    assert str(ROOT) not in text
    assert readable(RuntimeError("CUDA kernel at 0x7f")) == "Something went wrong on the server. Please try again."
    assert readable(JobCancelledError()) == "Cancelled."
    assert readable(ValueError("age must be a number")) == "Age must be a number."
    assert readable(ValueError("already_aligned must be true or false")) == \
        "already_aligned must be true or false."  # the API parameter's own spelling, as the client sent it


def test_photo_input_refuses_non_images_before_gradio_decodes(text_png, tmp_path):
    from gradio.data_classes import FileData

    box = photo_input()
    passed_on = box.preprocess(FileData(path=text_png))
    assert isinstance(passed_on, UnreadableUpload) and text_png not in passed_on
    with pytest.raises(gr.Error, match="not an image the app can read"):
        nothing = web.AgeApp(None)
        _run_job(nothing.jobs.job(nothing.age), passed_on, 40)
    assert box.preprocess(FileData(path=ASTRONAUT)) == ASTRONAUT


def test_huge_photo_works_on_a_downscaled_copy(sam_app, tmp_path):
    big = Image.open(ASTRONAUT).convert("RGB").resize((8000, 8000), Image.Resampling.NEAREST)
    path = tmp_path / "big.jpg"
    big.save(path, quality=85)
    out = sam_app.age(str(path), 70, None, False, 0, True)
    assert max(out.size) == 4096  # the working copy, face pasted back
    assert sam_app.session(str(path)).face_image.size == (TINY.encoder.input_size,) * 2


# --------------------------------------------------------------------------------------------- concurrency


def test_key_age_warm_up_and_requests_overlap(tiny_checkpoint):
    """The warm-up thread fills the code cache while requests read it: no 'dictionary changed size', and the
    encoder never runs twice at once (one model lock)."""
    fresh = web.AgeApp.load(str(tiny_checkpoint), device="cpu")
    model = fresh.pipe.model
    inside, most = [0], [0]
    real_encode = model.encode

    def slow_encode(*a, **k):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.05)
            return real_encode(*a, **k)
        finally:
            inside[0] -= 1

    model.encode = slow_encode
    session = fresh.session(ASTRONAUT)
    thread = session.start_warm_up()
    assert thread is not None and session.start_warm_up() is None  # one warm-up per face
    errors, served = [], []
    deadline = time.monotonic() + 20
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            for age in (13, 47, 88):
                quick = session.quick_preview(age)
                served.append(quick if quick is not None else session.preview(age))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    thread.join(timeout=30)
    assert not errors and served and most[0] == 1
    assert set(KEY_AGES) <= set(fresh.pipe.cached_ages(session.encoded, fast=True))
    assert session.quick_preview(43) is not None  # between 40 and 50 (never asked for exactly): interpolated


def test_slider_moves_rerun_only_the_age_dependent_part(tiny_checkpoint, monkeypatch):
    import sam.session.photo as session_module

    fresh = web.AgeApp.load(str(tiny_checkpoint), device="cpu")
    encodes, detections = [], []
    fresh.pipe.model.pretrained_encoder.register_forward_hook(lambda *a: encodes.append(1))
    real_detect = session_module.detect_faces
    monkeypatch.setattr(session_module, "detect_faces",
                        lambda img, **kw: detections.append(1) or real_detect(img, **kw))
    for age in (10, 70):
        fresh.session(ASTRONAUT).preview(age)
    fresh.age(ASTRONAUT, 20, None, False, 0, True)
    assert len(encodes) == 1 and len(detections) == 1
    fresh.session(ASTRONAUT, already_aligned=True).preview(50)  # a different input to the model
    assert len(encodes) == 2 and len(detections) == 1


# --------------------------------------------------------------------------------------------- live server


def test_server_with_gradio_client(server, faceless, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False, download_files=str(tmp_path))
    img = client.predict(handle_file(ASTRONAUT), 30, api_name="/age")
    assert Image.open(_local(img)).size == (S, S)
    mixed = client.predict(handle_file(ASTRONAUT), handle_file(ASTRONAUT), 60, "4-7", 0.7, api_name="/mix")
    assert Image.open(_local(mixed)).size == (S, S)
    video = client.predict(handle_file(ASTRONAUT), 40, 60, 1, 10, S, api_name="/lifespan")
    assert _frames(_local(video)).shape[0] == 5
    with pytest.raises(Exception, match="No face found in the photo"):
        client.predict(handle_file(faceless), 30, api_name="/age")
    with pytest.raises(Exception, match="(?i)face index must be 0 or more"):
        client.predict(handle_file(ASTRONAUT), 30, S, False, -1, api_name="/age")
    img = client.predict(handle_file(ASTRONAUT), 80, api_name="/age")  # still serving after errors
    assert Image.open(_local(img)).size == (S, S)


def _raw_call(url: str, api: str, data_text: str, timeout: float = 60) -> tuple[str, str]:
    """POST raw JSON text (it may hold NaN / Infinity) to /gradio_api/call/<api>; return (event, data) of the
    stream's last message."""
    with httpx.Client(timeout=timeout) as http:
        r = http.post(f"{url}gradio_api/call/{api}", content=data_text, headers={"content-type": "application/json"})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        event, data = "", ""
        with http.stream("GET", f"{url}gradio_api/call/{api}/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = line.split(":", 1)[1].strip()
                    if event in ("complete", "error"):
                        break
        return event, data


def _upload(url: str, path: str) -> dict:
    with httpx.Client(timeout=30) as http, open(path, "rb") as fh:
        r = http.post(f"{url}gradio_api/upload", files={"files": (Path(path).name, fh)})
        r.raise_for_status()
        return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize(("api", "values", "words"), [
    ("age", "[IMG, NaN, 32, false, 0, false]", "target age must be a number between 0 and 100"),
    ("age", "[IMG, Infinity, 32, false, 0, false]", "target age must be a number between 0 and 100"),
    ("age", "[IMG, -Infinity, 32, false, 0, false]", "target age must be a number between 0 and 100"),
    ("age", "[IMG, 40, NaN, false, 0, false]", "size must be a number"),
    ("age", "[IMG, 40, 32, false, NaN, false]", "face index must be a number"),
    ("age", "[IMG, 40, 32, false, -1, false]", "face index must be 0 or more"),
    ("lifespan", "[IMG, NaN, 100, 10, 20, 32, false, false, 0]", "start age must be a number"),
    ("lifespan", "[IMG, 0, Infinity, 10, 20, 32, false, false, 0]", "end age must be a number"),
    ("lifespan", "[IMG, 0, 100, NaN, 20, 32, false, false, 0]", "frames between key ages must be a number"),
    ("lifespan", "[IMG, 0, 100, 10, -3, 32, false, false, 0]", "fps must be between 1 and 60"),
    ("mix", "[IMG, IMG, 40, \"fine\", NaN, 32, false, false]", "mix strength must be a number"),
    ("age", "[IMG, 1" + "0" * 400 + ", 32, false, 0, false]", "target age must be a number between 0 and 100"),
    ("age", "[IMG, 40, 1" + "0" * 400 + ", false, 0, false]", "size must be a number"),
    ("age", "[IMG, 40, 32, false, 0, false, \"" + "9" * 400 + "\"]", "a face number must be a number"),
])
def test_raw_http_api_with_nan_infinity_and_huge_numbers(server, capfd, api, values, words):
    image = json.dumps(_upload(server, ASTRONAUT))
    capfd.readouterr()
    event, data = _raw_call(server, api, '{"data": ' + values.replace("IMG", image) + "}")
    payload = json.loads(data)
    message = payload.get("error", "") if isinstance(payload, dict) else str(payload)
    assert event == "error" and words in message.lower(), payload
    assert "Traceback" not in capfd.readouterr().err


def test_cancelled_jobs_leave_the_server_idle(sam_app, server):
    """Four /lifespan jobs cancelled by their clients once progress shows: within 20 s no ffmpeg child, no model
    work, no partial file, and memory back near where it was."""
    from gradio_client import Client, handle_file

    real_render = sam_app.pipe.render
    rendered = [0]

    def slow_render(*args, **kwargs):  # about 12 s per job if nothing stops it
        rendered[0] += 1
        time.sleep(0.02)
        return real_render(*args, **kwargs)

    sam_app.pipe.render = slow_render
    try:
        rss_before = _rss()
        # the clients are kept: a garbage-collected Client closes its stream, which would cancel its job early
        clients = [Client(server, verbose=False) for _ in range(4)]
        jobs = [c.submit(handle_file(ASTRONAUT), 0, 100, 60, 20, S, api_name="/lifespan") for c in clients]
        # whichever job arrived first runs (the others show their place in the line): wait until it writes frames
        deadline = time.monotonic() + 30
        while not (rendered[0] and glob.glob(str(sam_app.workdir / "*partial*"))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert glob.glob(str(sam_app.workdir / "*partial*")), "the running job should be writing its video"
        assert any(j.status().progress_data for j in jobs), "no job showed progress or its place in the line"
        for j in jobs:
            j.cancel()
        cancelled_at = time.monotonic()
        while time.monotonic() - cancelled_at < 20 and (_ffmpeg_children() or _model_busy(sam_app)):
            time.sleep(0.2)
        assert not _ffmpeg_children() and not _model_busy(sam_app)
        idle = rendered[0]
        time.sleep(1.5)
        assert rendered[0] == idle  # nothing started afterwards either (the queued jobs were dropped)
        assert idle < 600  # far fewer than the 4 x 611 frames asked for
        assert not glob.glob(str(sam_app.workdir / "*partial*"))
        assert _rss() < rss_before + 300 * 2**20
    finally:
        sam_app.pipe.render = real_render


def test_closed_page_stops_its_job(sam_app, server):
    """A client that goes away (a closed tab: its event stream is closed) stops its job too."""
    real_render = sam_app.pipe.render
    rendered = [0]

    def slow_render(*args, **kwargs):
        rendered[0] += 1
        time.sleep(0.02)
        return real_render(*args, **kwargs)

    sam_app.pipe.render = slow_render
    try:
        image = _upload(server, ASTRONAUT)
        fn_index = next(i for i, d in sam_app_demo_fns(server) if d == "lifespan")
        session = "closed-tab-test"
        with httpx.Client(timeout=30) as http:
            http.post(f"{server}gradio_api/queue/join", json={
                "data": [image, 0, 100, 60, 20, S, False, False, 0], "fn_index": fn_index, "session_hash": session,
                "event_data": None, "trigger_id": None}).raise_for_status()
            with http.stream("GET", f"{server}gradio_api/queue/data", params={"session_hash": session}) as stream:
                for line in stream.iter_lines():
                    if "progress" in line and rendered[0] > 0:
                        break
        started = rendered[0]
        assert started > 0  # the job was running when the page went away
        closed_at = time.monotonic()
        while time.monotonic() - closed_at < 20 and (_model_busy(sam_app) or _ffmpeg_children()):
            time.sleep(0.2)
        assert not _model_busy(sam_app) and not _ffmpeg_children()
        assert rendered[0] < 600 and not glob.glob(str(sam_app.workdir / "*partial*"))
    finally:
        sam_app.pipe.render = real_render


def sam_app_demo_fns(url: str) -> list[tuple[int, str]]:
    config = httpx.get(f"{url}config", timeout=10).json()
    return [(i, d.get("api_name")) for i, d in enumerate(config["dependencies"])]


def test_queue_limit_answers_busy(tiny_checkpoint):
    """More requests than running slots plus the queue's room: the rest are told the server is busy."""
    from gradio_client import Client, handle_file

    small = web.build_demo(str(tiny_checkpoint), device="cpu")
    pipe = small.sam_app.pipe
    real_render = pipe.render
    pipe.render = lambda *a, **k: time.sleep(0.5) or real_render(*a, **k)
    url = launch(small, max_queue=1)
    try:
        client = Client(url, verbose=False)
        n = small.sam_page.quick["concurrency_limit"] + 4
        jobs = [client.submit(handle_file(ASTRONAUT), 40 + i, S, api_name="/age") for i in range(n)]
        messages = []
        for j in jobs:
            try:
                j.result(timeout=120)
            except Exception as exc:  # noqa: BLE001 - the busy ones
                messages.append(str(exc))
        assert messages and all("try again" in m.lower() for m in messages), messages  # gradio_client's words
        with httpx.Client(timeout=30) as http:  # a raw HTTP client gets the app's own words
            image = _upload(url, ASTRONAUT)
            body = {"data": [image, 40, S, False, 0, False]}
            answers = [http.post(f"{url}gradio_api/call/age", json=body) for _ in range(n)]
        refused = [r for r in answers if r.status_code != 200]
        assert refused and all(BUSY_MESSAGE in r.text for r in refused)
    finally:
        small.close()


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _ffmpeg_children() -> list[int]:
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and "ffmpeg" in Path(stat).with_name("cmdline").read_text():
                pids.append(int(Path(stat).parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def _model_busy(sam_app) -> bool:
    if sam_app.pipe.lock.acquire(blocking=False):
        sam_app.pipe.lock.release()
        return any(t.name.startswith("AnyIO worker") and _is_rendering(t) for t in threading.enumerate())
    return True


def _is_rendering(thread: threading.Thread) -> bool:
    import sys

    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name in ("make_lifespan", "render_frames"):
            return True
        frame = frame.f_back
    return False


# --------------------------------------------------------------------------------------------- command line


def test_main_flags_and_offline_start(tmp_path, monkeypatch):
    from app import main as app_main

    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw, blocks=self))
    monkeypatch.setenv("SAM_NO_DOWNLOAD", "1")
    app_main(["--checkpoint", str(tmp_path / "absent.pt"), "--host", "127.0.0.1", "--port", "7999"])
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7999
    assert launched["show_error"] is False  # internal errors never reach a client with server details
    texts = " ".join(str(getattr(b, "value", "")) for b in launched["blocks"].blocks.values())
    assert "not loaded" in texts


def test_session_layer_is_the_only_flow(sam_app, monkeypatch):
    """app.py and the web package hold no model flow: no pipeline calls, alignment or paste-back of their own; an
    aged picture is the face session's render, returned as it is."""
    root = Path(web.__file__).resolve().parents[1]
    source = "\n".join(p.read_text() for p in [root / "app.py", *(root / "web").rglob("*.py")])
    for needle in ("align_face", "paste_back(", "detect_faces", "pipe.latents", "pipe.render", "pipe.encode",
                   ".model.", "make_lifespan", "load_image"):
        assert needle not in source, needle
    rendered = []
    real_render = FaceSession.render

    def render(self, *args, **kwargs):
        rendered.append(real_render(self, *args, **kwargs))
        return rendered[-1]

    monkeypatch.setattr(FaceSession, "render", render)
    out = sam_app.age(ASTRONAUT, 40, S, False, 0, True)
    assert len(rendered) == 1 and out is rendered[0]
    assert out.size == Photo.load(ASTRONAUT).image.size  # pasted back: the whole photo


# --------------------------------------------------------------------------------------------- real browser


@pytest.mark.slow
@needs_chromium
def test_browser_end_to_end(tiny_checkpoint, faceless, text_png, tmp_path):
    """In headless Chromium: a faceless photo's message still readable after the toasts are gone, a text file
    named .png, two faces and the picker, the slider, Full resolution (busy button, then the file), a huge photo,
    and a video cancelled, then rendered. Screenshots go to $SAM_SCREENSHOT_DIR (default: a temporary folder)."""
    shots = screenshot_dir(tmp_path)
    page_demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    pipe = page_demo.sam_app.pipe
    real_render = pipe.render
    status = "#status"
    with open_page(page_demo, 1400, 1100) as page:
        try:
            upload = page.locator("input[type=file]").first

            upload.set_input_files(faceless)
            page.locator(status).get_by_text("No face found in the photo").wait_for(timeout=patient(30_000))
            time.sleep(float(os.environ.get("SAM_ERROR_WAIT_S", 12)))  # longer than a toast lives (30 s by hand)
            assert "No face found in the photo" in page.locator(status).inner_text()
            page.screenshot(path=str(shots / "app-error-stays.png"), full_page=True)

            upload.set_input_files(text_png)
            page.locator(status).get_by_text("not an image the app can read").wait_for(timeout=patient(30_000))
            shown = page.locator(status).inner_text()
            assert "/tmp" not in shown and "Traceback" not in shown and "Could not preprocess" not in page.content()
            page.screenshot(path=str(shots / "app-not-an-image.png"), full_page=True)

            two = Image.new("RGB", (1024, 512))
            img = Image.open(ASTRONAUT).convert("RGB").resize((512, 512))
            two.paste(img, (0, 0))
            two.paste(img.resize((400, 400)), (562, 56))
            two.save(tmp_path / "two.png")
            upload.set_input_files(str(tmp_path / "two.png"))
            thumbs = page.locator("#face-picker button.thumbnail-item")
            thumbs.nth(1).wait_for(timeout=patient(30_000))
            page.locator("#aligned img").wait_for(timeout=patient(30_000))
            aligned = page.locator("#aligned img").get_attribute("src")
            thumbs.nth(1).click()
            page.wait_for_function("s => { const i = document.querySelector('#aligned img'); "
                                   "return i && i.getAttribute('src') !== s; }", arg=aligned, timeout=patient(30_000))
            assert page.locator(status).inner_text().strip() == ""  # the old error is gone after a good action
            page.screenshot(path=str(shots / "app-face-picker.png"), full_page=True)

            result = page.locator("#result img")
            result.wait_for(timeout=patient(30_000))
            first = result.get_attribute("src")
            slider = page.locator("#target-age input[type=range]")
            box = slider.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.15, box["y"] + box["height"] / 2)
            page.wait_for_function("s => { const i = document.querySelector('#result img'); "
                                   "return i && i.getAttribute('src') !== s; }", arg=first, timeout=patient(30_000))

            pipe.render = lambda *a, **k: time.sleep(1.5) or real_render(*a, **k)  # a visible Full resolution
            page.locator("#full-button").click()
            page.get_by_text("Rendering full resolution").wait_for(timeout=patient(10_000))
            assert page.locator("#full-button").is_disabled()
            page.screenshot(path=str(shots / "app-full-resolution-busy.png"), full_page=True)
            page.locator("#full-file a").first.wait_for(timeout=patient(30_000))
            page.get_by_role("button", name="Full resolution (32 px)").wait_for(timeout=patient(10_000))
            assert page.locator("#full-button").is_enabled()  # ready again, with its label back

            big = Image.open(ASTRONAUT).convert("RGB").resize((8000, 8000), Image.Resampling.NEAREST)
            big.save(tmp_path / "big.jpg", quality=85)
            pipe.render = real_render
            upload.set_input_files(str(tmp_path / "big.jpg"))
            page.wait_for_function("s => { const i = document.querySelector('#aligned img'); "
                                   "return i && i.getAttribute('src') !== s; }",
                                   arg=page.locator("#aligned img").get_attribute("src"), timeout=patient(60_000))
            page.wait_for_function("() => !document.querySelector('#aligned, #result').innerText.includes("
                                   "'processing')", timeout=patient(60_000))
            assert page.locator(status).inner_text().strip() == ""
            page.locator("#result img").wait_for(timeout=patient(60_000))  # the aligned face first, then the result
            page.screenshot(path=str(shots / "app-8000px-photo.png"), full_page=True)

            page.get_by_role("tab", name="Lifespan video").click()
            pipe.render = lambda *a, **k: time.sleep(0.05) or real_render(*a, **k)
            page.locator("#video-button").click()
            page.locator(".progress-text, .eta-bar, .progress-level").first.wait_for(timeout=patient(30_000))
            page.screenshot(path=str(shots / "app-video-cancel.png"), full_page=True)
            page.locator("#video-cancel").click()
            page.locator("#lifespan-status").get_by_text("Video cancelled").wait_for(timeout=patient(10_000))
            assert page.locator("#video-cancel").is_disabled()  # Cancel only while a video renders
            deadline = time.monotonic() + 20
            while _ffmpeg_children() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _ffmpeg_children()
            pipe.render = real_render
            page.locator("#video-button").click()
            try:
                page.locator("#lifespan-video video").wait_for(timeout=patient(60_000))
            except Exception:
                page.screenshot(path=str(shots / "app-video-failed.png"), full_page=True)
                raise
            page.screenshot(path=str(shots / "app-video.png"), full_page=True)
        finally:
            pipe.render = real_render


def test_uploads_and_results_do_not_outlive_the_server(tiny_checkpoint, tmp_path):
    """Results go after an hour; Gradio's cached uploads and results and the app's results folder go when the
    server stops (and at exit)."""
    from gradio_client import Client, handle_file

    own = web.build_demo(str(tiny_checkpoint), device="cpu")
    assert own.delete_cache == (Limits.output_max_age_s, Limits.output_max_age_s)
    results = own.sam_app
    old = results.new_path(".mp4")
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 2 * Limits.output_max_age_s,) * 2)
    fresh = results.new_path(".png")
    fresh.write_bytes(b"y")
    results.sweep()  # what the app's timer runs every few minutes (test_serving: the timer itself)
    assert not old.exists() and fresh.exists()
    mine = tmp_path / "mine.png"  # not the example photo, which Gradio keeps cached for the page
    Image.open(ASTRONAUT).convert("RGB").rotate(3).save(mine)
    url = launch(own)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path / "got"))
        client.predict(handle_file(str(mine)), 30, api_name="/age")
        kept = {p for b in own.blocks.values() for p in getattr(b, "keep_in_cache", set())}
        cached = [p for s in own.temp_file_sets for p in s if p not in kept]
        assert cached and all(Path(p).exists() for p in cached)
    finally:
        own.close()
    assert not any(Path(p).exists() for p in cached) and not results.workdir.exists()


def test_repeated_photo_event_is_skipped_with_a_valid_update(demo):
    """The browser sends `change` twice when one photo replaces another: the repeat changes nothing, and still
    returns an update Gradio accepts (an empty dict would read as one missing value)."""
    import types

    from web import glue

    handler = _wired(demo, "on_photo")
    with glue.request_context(types.SimpleNamespace(session_hash="repeat-test")):
        first = list(handler(ASTRONAUT, False, 40, False))
        second = list(handler(ASTRONAUT, False, 40, False))
    assert len(first[0]) >= 6 and len(second) == 1 and len(second[0]) == 1
    assert list(second[0].values())[0] == gr.skip()


def test_a_new_photo_shows_its_steps_in_order(tiny_checkpoint, monkeypatch):
    """A new photo in steps: first the aligned face alone (no network pass yet, the previous photo's preview gone),
    then the first preview (from the quick frozen-encoder pass), then the age and identity readouts, last the preview
    from the exact frozen-encoder code (what later moves use)."""
    monkeypatch.setenv("SAM_CPU_BF16", "1")  # auto: exact float32, fast bfloat16, whatever this CPU has
    page = web.build_demo(str(tiny_checkpoint), device="cpu", precision="auto")
    assert page.sam_app.pipe.precision.fast != page.sam_app.pipe.precision.exact
    by_id = {getattr(b, "elem_id", None): b for b in page.blocks.values()}
    handler = _wired(page, "on_photo")
    calls = []
    pipe = page.sam_app.pipe
    real_fast, real_encode = pipe.first_look, pipe.encode
    pipe.first_look = lambda *a, **k: calls.append("fast") or real_fast(*a, **k)
    pipe.encode = lambda *a, **k: calls.append("exact") or real_encode(*a, **k)
    steps = handler(ASTRONAUT, False, 40, False)
    aligned = next(steps)
    assert by_id["aligned"] in aligned and aligned[by_id["result"]] is None and calls == []  # before any pass
    updates = list(steps)
    first, last = updates[0], updates[-1]
    assert by_id["result"] in first and first[by_id["result-metrics"]].startswith("Age ")
    assert by_id["input-age"] in updates[1] and by_id["result"] not in updates[1]
    assert calls[0] == "fast" and "exact" in calls  # the quick frozen-encoder pass first, the exact one after
    session = page.sam_app.session(ASTRONAUT)
    start = int(first[by_id["result-metrics"]].split()[1])
    assert np.array_equal(np.asarray(last[by_id["result"]]), np.asarray(session.preview(start)))


def test_the_first_picture_comes_at_128_px_from_the_same_code(tiny_model, monkeypatch):
    """Where the preview is larger than 128 px, the first look is two pictures from one code: the generator stopped
    at 128 px, scaled up, then the preview itself."""
    from sam.pipeline import AgingPipeline
    from sam.session import FaceSession, Photo

    pipe = AgingPipeline(tiny_model)
    session = FaceSession(pipe, Photo(Image.open(ASTRONAUT).convert("RGB").resize((64, 64)), "k"),
                          already_aligned=True)
    monkeypatch.setattr(type(session), "preview_size", property(lambda self: 32))
    sizes, codes = [], []
    real_render = pipe.render
    monkeypatch.setattr(pipe, "render", lambda code, size=None, **k: sizes.append(size) or codes.append(code) or
                        real_render(code, size=size, **k))
    steps = list(session.first_previews(50, quick_size=16))
    assert [final for _, final in steps] == [False, True] and sizes == [16, 32]
    assert torch.equal(codes[0], codes[1]) and all(im.size == (32, 32) for im, _ in steps)
    assert list(session.first_previews(50, quick_size=32))[0][1] is True  # no smaller step: the preview at once


def test_a_photo_is_decoded_once_per_upload(tiny_checkpoint, monkeypatch):
    """Every slider move names the same upload: it is found by its bytes, not decoded again."""
    import sam.session.photo as session_module

    fresh = web.AgeApp.load(str(tiny_checkpoint), device="cpu")
    decoded = []
    real_load = session_module.load_image
    monkeypatch.setattr(session_module, "load_image", lambda *a, **k: decoded.append(1) or real_load(*a, **k))
    first = fresh.sessions.photo(ASTRONAUT)
    for _ in range(3):
        assert fresh.sessions.photo(ASTRONAUT) is first
    assert len(decoded) == 1


def test_a_lifespan_over_the_servers_work_bound_is_refused_in_words(sam_app, monkeypatch):
    """faces x frames x (side / 256)^2 above the limit: refused before any work, saying what to change."""
    import dataclasses

    monkeypatch.setattr(sam_app, "limits", dataclasses.replace(sam_app.limits, lifespan_max_work=1))
    rendered = []
    monkeypatch.setattr(sam_app.pipe, "render", lambda *a, **k: rendered.append(1))
    words = (r"1 face x 611 frames at 32 px, about 10 faces at 256 px; this server renders at most 1 per video. "
             r"Choose fewer frames between key ages \(now 60\)")
    before = set(sam_app.workdir.glob("*.mp4"))
    with pytest.raises(ValueError, match=words):
        sam_app.lifespan(ASTRONAUT, 0, 100, 60, 20, S)
    assert rendered == [] and set(sam_app.workdir.glob("*.mp4")) == before
    monkeypatch.undo()
    assert _frames(sam_app.lifespan(ASTRONAUT, 0, 20, 1, 10, S)).shape[0] == 5  # within the bound: made


def test_the_queue_keeps_room_for_other_visitors():
    """One address holds at most its share of the waiting events, and videos at most half of the queue: the rest
    stays for other visitors' sliders."""
    limits = Limits(max_queue=16, max_queued_per_address=6, long_queue_share=0.5)
    mine = [("quick", "1.1.1.1")] * 6
    assert "Too many of your requests" in limits.queue_refusal(("quick", "1.1.1.1"), mine)
    assert limits.queue_refusal(("quick", "2.2.2.2"), mine) is None
    videos = [("long", f"10.0.0.{i}") for i in range(8)]
    assert "Too many videos are waiting" in limits.queue_refusal(("long", "3.3.3.3"), videos)
    assert limits.queue_refusal(("quick", "3.3.3.3"), videos) is None  # a slider still gets in
    assert limits.queue_refusal(("long", "3.3.3.3"), videos[:7]) is None
