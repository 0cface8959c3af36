"""The Gradio app with a tiny synthetic checkpoint: endpoints called directly and through a local server with
gradio_client (loopback only), readable errors for bad inputs, per-photo caching, and the page without weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import app
from tests.conftest import TINY

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ASTRONAUT = str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png")


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def demo(tiny_ckpt) -> gr.Blocks:
    return app.build_demo(str(tiny_ckpt), device="cpu")


@pytest.fixture(scope="module")
def sam_app(demo) -> app.AgeApp:
    return demo.sam_app


@pytest.fixture(scope="module")
def faceless(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "wall.png"
    Image.new("RGB", (200, 160), (180, 170, 160)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "broken.png"
    path.write_bytes(Path(ASTRONAUT).read_bytes()[:300])
    return str(path)


def _endpoint(demo: gr.Blocks, name: str):
    return next(d.fn for d in demo.fns.values() if d.api_name == name)


# --------------------------------------------------------------------------------------------- without weights


def test_page_without_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    page = app.build_demo(str(tmp_path / "missing.pt"))
    texts = " ".join(str(getattr(b, "value", "")) for b in page.blocks.values())
    assert "not loaded" in texts and "missing.pt" in texts and "SAM_CHECKPOINT" in texts
    with pytest.raises(gr.Error, match="not loaded"):
        _endpoint(page, "age")(ASTRONAUT, 40)
    page.sam_app.ui_photo(None, False, 40, False)  # clearing the photo is fine without a model


def test_page_with_download_problem(tmp_path):
    page = app.build_demo(str(tmp_path / "missing.pt"), problem="downloading failed (offline?)")
    texts = " ".join(str(getattr(b, "value", "")) for b in page.blocks.values())
    assert "offline?" in texts


# --------------------------------------------------------------------------------------------- endpoints


def test_named_endpoints(demo):
    names = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert names == {"age", "mix", "lifespan"}


def test_age_endpoint(demo, sam_app):
    out = _endpoint(demo, "age")(ASTRONAUT, 40)
    assert isinstance(out, Image.Image) and out.size == (32, 32)  # full resolution of the tiny model
    pasted = _endpoint(demo, "age")(ASTRONAUT, 40, 32, False, 0, True)
    assert pasted.size == Image.open(ASTRONAUT).size
    preview = sam_app.preview(ASTRONAUT, 70)
    assert preview.size == (32, 32)  # min(256, output_size)
    assert not np.array_equal(np.asarray(out), np.asarray(preview))


def test_mix_endpoint(demo, sam_app):
    mixed = _endpoint(demo, "mix")(ASTRONAUT, ASTRONAUT, 60, "4-7", 0.5)
    assert mixed.size == (32, 32)
    ui_mixed, ui_plain = sam_app.ui_mix(ASTRONAUT, ASTRONAUT, 60, "custom layers", "5,7", 0.8, False, 0, False)
    assert ui_mixed.size == ui_plain.size == (32, 32)


def test_lifespan_endpoint(demo, sam_app):
    mp4 = _endpoint(demo, "lifespan")(ASTRONAUT, 20, 50, 2, 10, 32)
    frames = _frames(mp4)
    assert frames.shape[0] == (4 - 1) * 3 + 1  # keys 20, 30, 40, 50; 2 frames between each pair
    assert frames.shape[1:3] == (32, 32)
    video, files = sam_app.ui_lifespan(ASTRONAUT, 100, 80, 1, 12, 32, True, True, True, False, 0)
    assert video.endswith(".mp4") and len(files) == 2 and files[1].endswith(".gif")
    assert Path(files[1]).stat().st_size > 0


def _frames(path: str) -> np.ndarray:
    return np.stack(list(iio.imiter(path)))


def test_strip_and_full_resolution(sam_app):
    strip = sam_app.ui_strip(ASTRONAUT, ["0", "50", "100"], False, 0)
    assert [label for _, label in strip] == ["age 0", "age 50", "age 100"]
    update = sam_app.ui_full(ASTRONAUT, 33, False, 0, False)
    assert update["visible"] and update["value"].endswith(".png") and Image.open(update["value"]).size == (32, 32)


def test_photo_and_face_picker(sam_app, tmp_path):
    gallery, idx, aligned, preview, *_ = sam_app.ui_photo(ASTRONAUT, False, 40, False)
    assert idx == 0 and gallery["visible"] is False
    assert aligned.size == (64, 64) and preview.size == (32, 32)  # aligned at the encoder's input size
    two = Image.new("RGB", (1024, 512))
    img = Image.open(ASTRONAUT).convert("RGB").resize((512, 512))
    two.paste(img, (0, 0))
    two.paste(img.resize((400, 400)), (562, 56))
    path = tmp_path / "two.png"
    two.save(path)
    gallery, idx, aligned, *_ = sam_app.ui_photo(str(path), False, 40, False)
    assert gallery["visible"] is True and len(gallery["value"]) == 2
    second = sam_app.prepare(str(path), False, 1)
    first = sam_app.prepare(str(path), False, 0)
    assert second.aligned.face.box[0] > first.aligned.face.box[0]  # the right-hand face


def test_estimated_age_and_identity_shown(sam_app):
    """The slider starts at the uploaded face's estimated age; each result shows its estimated age and identity."""
    pytest.importorskip("onnxruntime")
    from sam.metrics import MetricModelMissingError, age_model_path, descriptor_model_path

    try:
        age_model_path(), descriptor_model_path()
    except MetricModelMissingError as exc:
        pytest.skip(str(exc))
    gallery, idx, aligned, preview, slider, input_info, result_info = sam_app.ui_photo(ASTRONAUT, False, 40, False)
    assert 25 <= slider["value"] <= 45  # the astronaut reads about 35
    assert input_info == f"Estimated age of this face: **{slider['value']}**"
    assert result_info.startswith(f"Age {slider['value']}: reads as **") and "identity **" in result_info
    image, text = sam_app.ui_preview(ASTRONAUT, 70, False, 0, False)
    assert image.size == (32, 32) and text.startswith("Age 70: reads as") and "person)" in text
    strip, table = sam_app.ui_strip_measured(ASTRONAUT, ["10", "80"], False, 0)
    assert len(strip) == 2 and "| age 10 | reads as" in table and "| age 80 |" in table and "Estimated age" in table
    mixed, plain, mixed_info, plain_info = sam_app.ui_mix_measured(ASTRONAUT, ASTRONAUT, 60, "custom layers", "5,7",
                                                                   0.8, False, 0, False)
    assert mixed.size == (32, 32) and mixed_info.startswith("Age 60: reads as") and "identity" in plain_info


def test_missing_metric_models_leave_the_page_working(tiny_ckpt, tmp_path):
    from sam.metrics import FaceMetrics

    fresh = app.AgeApp.load(str(tiny_ckpt), device="cpu")
    fresh.metrics = FaceMetrics(age_model=tmp_path / "no-age.onnx", descriptor_model=tmp_path / "no-id.dat")
    gallery, idx, aligned, preview, slider, input_info, result_info = fresh.ui_photo(ASTRONAUT, False, 40, False)
    assert preview.size == (32, 32) and input_info == "" and result_info == ""
    assert slider == gr.skip()  # the slider stays where it was
    assert fresh.ui_preview(ASTRONAUT, 60)[1] == ""
    assert fresh.ui_strip_measured(ASTRONAUT, ["10"], False, 0)[1] == ""
    assert fresh.ui_mix_measured(ASTRONAUT, ASTRONAUT, 60, "custom layers", "5", 0.5, False, 0, False)[2:] == ("", "")
    broken = app.AgeApp.load(str(tiny_ckpt), device="cpu")

    class Boom:
        def __getattr__(self, name):
            raise RuntimeError("metric crashed")

    broken.metrics = Boom()
    assert broken.ui_preview(ASTRONAUT, 60)[1] == ""
    assert broken.ui_photo(ASTRONAUT, False, 40, False)[3].size == (32, 32)


# --------------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a, f, c: a.api_age(None, 40), "Add a photo"),
        (lambda a, f, c: a.api_age(c, 40), "image"),
        (lambda a, f, c: a.api_age(f, 40), "no face found"),
        (lambda a, f, c: a.api_age(ASTRONAUT, 140), "between 0 and 100"),
        (lambda a, f, c: a.api_age(ASTRONAUT, 40, 32, False, 3), "has 1 face"),
        (lambda a, f, c: a.api_mix(ASTRONAUT, None, 40), "reference"),
        (lambda a, f, c: a.api_mix(ASTRONAUT, f, 40, "4-7"), "no face found in the reference"),
        (lambda a, f, c: a.api_mix(ASTRONAUT, ASTRONAUT, 40, "3-99"), "between 0 and 7"),
        (lambda a, f, c: a.api_mix(ASTRONAUT, ASTRONAUT, 40, "eyes"), "cannot read style layers"),
        (lambda a, f, c: a.api_mix(ASTRONAUT, ASTRONAUT, 40, "fine"), "no fine layers"),
        (lambda a, f, c: a.api_mix(ASTRONAUT, ASTRONAUT, 40, "4-7", 2), "between 0 and 1"),
        (lambda a, f, c: a.api_lifespan(ASTRONAUT, 30, 30), "same"),
        (lambda a, f, c: a.api_lifespan(ASTRONAUT, 0, 100, 500), "frames between"),
        (lambda a, f, c: a.api_lifespan(c), "image"),
    ],
)
def test_bad_inputs_give_readable_errors(sam_app, faceless, corrupt, call, message):
    wrapped = app.friendly_errors(lambda: call(sam_app, faceless, corrupt))
    with pytest.raises(gr.Error) as info:
        wrapped()
    assert message.lower() in str(info.value).lower()
    assert "Traceback" not in str(info.value) and "Something went wrong" not in str(info.value)


def test_unexpected_errors_become_messages():
    def boom():
        raise RuntimeError("kaboom")

    with pytest.raises(gr.Error, match="Something went wrong.*kaboom"):
        app.friendly_errors(boom)()


# --------------------------------------------------------------------------------------------- caching


def test_slider_moves_rerun_only_the_age_dependent_part(tiny_ckpt, monkeypatch):
    fresh = app.AgeApp.load(str(tiny_ckpt), device="cpu")
    encodes, detections = [], []
    fresh.pipe.model.pretrained_encoder.register_forward_hook(lambda *a: encodes.append(1))
    real_detect = app.detect_faces
    monkeypatch.setattr(app, "detect_faces", lambda img: detections.append(1) or real_detect(img))
    fresh.ui_photo(ASTRONAUT, False, 40, False)
    for age in (10, 70):
        fresh.preview(ASTRONAUT, age)
    fresh.preview(ASTRONAUT, 50, paste=True)
    fresh.api_age(ASTRONAUT, 20)
    assert len(encodes) == 1 and len(detections) == 1
    fresh.preview(ASTRONAUT, 50, already_aligned=True)  # a different input to the model: one more encode
    assert len(encodes) == 2 and len(detections) == 1


def test_key_ages_precomputed_and_interpolated_previews(tiny_ckpt):
    fresh = app.AgeApp.load(str(tiny_ckpt), device="cpu")
    prep = fresh.prepare(ASTRONAUT)
    first = list(fresh.ui_preview_stream(ASTRONAUT, 33))  # nothing cached yet: the exact result only
    assert len(first) == 1 and "interpolated" not in first[0][1]
    thread = fresh.warm_key_ages(prep)
    assert thread is not None
    thread.join(timeout=60)
    assert all(a in prep.encoded.age_codes for a in app.KEY_AGES)
    assert fresh.warm_key_ages(prep) is None  # nothing left to do
    steps = list(fresh.ui_preview_stream(ASTRONAUT, 47))  # between 40 and 50: interpolated first, then exact
    assert len(steps) == 2 and "interpolated" in steps[0][1]
    assert steps[0][0].size == steps[1][0].size == (TINY.output_size, TINY.output_size)
    assert len(list(fresh.ui_preview_stream(ASTRONAUT, 60))) == 1  # a key age: exact at once


def test_streaming_callbacks_get_readable_errors():
    def stream():
        yield 1
        raise ValueError("bad age")

    wrapped = app.friendly_errors(stream)
    gen = wrapped()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="bad age"):
        next(gen)


def test_layer_and_age_helpers():
    assert app.parse_layers("colour & lighting", 18) == list(range(8, 18))
    assert app.parse_layers("hair & texture", 18) == [4, 5, 6, 7]
    assert app.parse_layers("0, 2 5-6", 18) == [0, 2, 5, 6]
    assert app.parse_layers([3, 1], 18) == [1, 3]
    assert app.key_ages(0, 100) == list(range(0, 101, 10))
    assert app.key_ages(85, 40) == [85, 75, 65, 55, 40]
    assert app.key_ages(20, 25) == [20, 25]


# --------------------------------------------------------------------------------------------- live server


def test_server_with_gradio_client(demo, faceless, tmp_path):
    from gradio_client import Client, handle_file

    demo.queue(default_concurrency_limit=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                            show_error=True)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path))
        img = client.predict(handle_file(ASTRONAUT), 30, api_name="/age")
        assert Image.open(_local(img)).size == (32, 32)
        mixed = client.predict(handle_file(ASTRONAUT), handle_file(ASTRONAUT), 60, "4-7", 0.7, api_name="/mix")
        assert Image.open(_local(mixed)).size == (32, 32)
        video = client.predict(handle_file(ASTRONAUT), 40, 60, 1, 10, 32, api_name="/lifespan")
        assert _frames(_local(video)).shape[0] == 5
        with pytest.raises(Exception, match="no face found"):
            client.predict(handle_file(faceless), 30, api_name="/age")
        img = client.predict(handle_file(ASTRONAUT), 80, api_name="/age")  # still serving after an error
        assert Image.open(_local(img)).size == (32, 32)
        api = client.view_api(print_info=False, return_format="dict")
        assert {"/age", "/mix", "/lifespan"} <= set(api["named_endpoints"])
    finally:
        demo.close()


def _local(result) -> str:
    """A gradio_client result (a path, or a dict with 'video' / 'path') -> a local path."""
    while isinstance(result, dict):
        result = result.get("video") or result.get("path")
    return result


# --------------------------------------------------------------------------------------------- command line


def test_main_flags_and_offline_start(tmp_path, monkeypatch):
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw, blocks=self))
    monkeypatch.setenv("SAM_NO_DOWNLOAD", "1")
    app.main(["--checkpoint", str(tmp_path / "absent.pt"), "--host", "127.0.0.1", "--port", "7999"])
    assert launched["server_name"] == "127.0.0.1" and launched["server_port"] == 7999
    texts = " ".join(str(getattr(b, "value", "")) for b in launched["blocks"].blocks.values())
    assert "not loaded" in texts and "absent.pt" in texts


# --------------------------------------------------------------------------------------------- real browser

CHROMIUM = os.environ.get("SAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_browser_end_to_end(demo, faceless, tmp_path):
    """Pick a face, move the slider, render a video, and a faceless photo's message, in headless Chromium.

    Screenshots go to $SAM_SCREENSHOT_DIR (default: the test's temporary folder)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    shots = Path(os.environ.get("SAM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    demo.queue(default_concurrency_limit=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, wait_until="networkidle")
            two = Image.new("RGB", (1024, 512))
            img = Image.open(ASTRONAUT).convert("RGB").resize((512, 512))
            two.paste(img, (0, 0))
            two.paste(img.resize((400, 400)), (562, 56))
            two.save(tmp_path / "two.png")
            page.locator("input[type=file]").first.set_input_files(str(tmp_path / "two.png"))
            thumbs = page.locator("#face-picker button.thumbnail-item")
            thumbs.nth(1).wait_for(timeout=30_000)
            page.locator("#aligned img").wait_for(timeout=30_000)
            aligned = page.locator("#aligned img").get_attribute("src")
            thumbs.nth(1).click()
            page.wait_for_function("s => { const i = document.querySelector('#aligned img'); "
                                   "return i && i.getAttribute('src') !== s; }", arg=aligned, timeout=30_000)
            page.screenshot(path=str(shots / "app-face-picker.png"), full_page=True)
            page.locator("input[type=file]").first.set_input_files(ASTRONAUT)
            page.wait_for_function("s => { const i = document.querySelector('#aligned img'); "
                                   "return i && i.getAttribute('src') !== s; }",
                                   arg=page.locator("#aligned img").get_attribute("src"), timeout=30_000)
            result = page.locator("#result img")
            result.wait_for(timeout=30_000)  # the preview at the default age
            first = result.get_attribute("src")
            slider = page.locator("input[type=range]").first
            box = slider.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.15, box["y"] + box["height"] / 2)
            page.wait_for_function("s => { const i = document.querySelector('#result img'); "
                                   "return i && i.getAttribute('src') !== s; }", arg=first, timeout=30_000)
            page.screenshot(path=str(shots / "app-slider.png"), full_page=True)
            page.get_by_role("tab", name="Lifespan video").click()
            page.get_by_role("button", name="Render video").click()
            page.locator("#lifespan-video video").wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "app-video.png"), full_page=True)
            page.locator("input[type=file]").first.set_input_files(faceless)
            page.get_by_text("no face found").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "app-no-face.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
