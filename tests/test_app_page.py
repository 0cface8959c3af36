"""The page's rough edges, on the tiny synthetic checkpoint: one actionable message without weights (and one log
line for a failed download), the CLI's flag spellings, a status line per panel, no toasts, hidden empty file boxes,
the full-resolution image, Cancel only while a video renders, one log line per request, and every tab reachable on
a phone (a real browser, ``slow``)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time

import gradio as gr
import pytest
from PIL import Image

import web
import web.server
from tests.browser import needs_chromium, open_page, patient, screenshot_dir
from tests.test_app import ASTRONAUT, _wired
from web.messages import NOT_LOADED_HERE, ROOT, WithoutRetryLines, interpreter, setup_help
from web.messages import status as status_line
from web.page import on_cancel, video_idle, video_running

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def demo(tiny_checkpoint) -> gr.Blocks:
    return web.build_demo(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="module")
def page(demo) -> web.Page:
    return demo.sam_page


@pytest.fixture
def toasts(monkeypatch) -> list:
    shown = []
    monkeypatch.setattr(gr, "Warning", lambda *a, **k: shown.append(a))
    monkeypatch.setattr(gr, "Info", lambda *a, **k: shown.append(a))
    return shown


def _by_id(blocks: gr.Blocks) -> dict:
    return {getattr(b, "elem_id", None): b for b in blocks.blocks.values()}


def test_without_weights_one_actionable_message(tmp_path, monkeypatch, toasts):
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    page = web.build_demo(str(tmp_path / "missing.pt"))
    texts = [str(getattr(b, "value", "")) for b in page.blocks.values()]
    banner = _by_id(page)["weights-problem"].value
    python = interpreter()  # the Python running the app, as a newcomer types it: .venv/bin/python here
    for words in ("weights/", "--checkpoint PATH", f"`{python} -m sam weights`",
                  f"`{python} -m sam random-checkpoint --out /tmp/tiny.pt --overwrite`",
                  f"`{python} app.py --checkpoint /tmp/tiny.pt`"):
        assert words in banner, words
    assert not python.startswith("/") and not re.search(r"`/", banner) and str(ROOT) not in banner, banner
    if os.path.abspath(sys.executable).startswith(str(ROOT) + os.sep):  # a venv in the checkout, as in the README
        assert not re.search(r"`python3? ", banner), banner  # not a bare python (without the venv: no torch)
    assert sum("not loaded" in t for t in texts) == 1 and "missing.pt" not in banner
    status = _by_id(page)["status"]
    updates = list(_wired(page, "on_photo")(ASTRONAUT, False, 40, False))
    assert updates == [{status: status_line(NOT_LOADED_HERE)}]  # a pointer to the banner, not a second copy
    clip_status = _by_id(page)["clip-status"]
    clip = str(tmp_path / "clip.mp4")
    out = asyncio.run(_wired(page, "on_clip")(clip, 70, "largest", 256, 0, 0, False, "auto", None))
    assert out == {clip_status: status_line(NOT_LOADED_HERE)}
    assert not toasts


def test_the_banner_names_the_interpreter_without_a_server_path():
    """The banner's commands use the Python that runs the app: relative to the checkout when it is inside it, else
    only its name; never an absolute path (the page is public)."""
    assert interpreter(str(ROOT / ".venv" / "bin" / "python")) == ".venv/bin/python"
    assert interpreter("/usr/local/bin/python3.11") == "python3.11"
    assert interpreter("/opt/my env/bin/python") == "python"
    banner = setup_help("/srv/secret/venv/bin/python3")
    assert "`python3 -m sam random-checkpoint --out /tmp/tiny.pt --overwrite`" in banner
    assert "`python3 app.py --checkpoint /tmp/tiny.pt`" in banner and "/srv" not in banner
    assert "`.venv/bin/python app.py" in setup_help(str(ROOT / ".venv" / "bin" / "python"))
    assert str(ROOT) not in setup_help()


def test_a_failed_download_is_one_log_line(tmp_path, monkeypatch, capfd, caplog):
    """Offline, the downloader retries five times; the terminal shows none of its retry lines, and the log one line
    with the reason. The retry lines are printed by gdown's own retry function."""
    import gdown
    import requests

    retrying = sys.modules["gdown.download"]
    for name in ("SAM_CHECKPOINT", "SAM_NO_DOWNLOAD", "SAM_HF_REPO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(retrying, "_wait_or_cancel", lambda **kw: None)

    def offline(**kwargs):
        state = retrying._RetryState(retries=kwargs.get("retries", 5), quiet=False)
        while True:
            retrying._wait_for_retry(retry=state, error=requests.ConnectionError("NameResolutionError: no network"))

    monkeypatch.setattr(gdown, "download", offline)
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="sam.app"):
        page = web.build_demo(str(tmp_path / "absent.pt"), download=True)
    err = capfd.readouterr().err
    assert page.sam_app.pipe is None and "Retrying" not in err, err
    lines = [r for r in caplog.records if r.name == "sam.app"]
    assert len(lines) == 1 and "NameResolutionError" in lines[0].getMessage()


def test_stderr_filter_keeps_everything_else():
    import io

    sink = io.StringIO()
    out = WithoutRetryLines(sink)
    print("Retrying (1/5) in 0.3s: boom", file=out)
    print("Downloading sam_ffhq_aging.pt ...", file=out)
    out.write("\r 40%|####")
    assert sink.getvalue() == "Downloading sam_ffhq_aging.pt ...\n\r 40%|####"


def test_the_clis_flag_spellings(monkeypatch, tmp_path):
    from app import main as app_main

    seen = {}

    def fake_build(checkpoint, device, **kwargs):
        seen.update(kwargs, checkpoint=checkpoint)
        raise SystemExit(0)

    monkeypatch.setattr(web.server, "build_demo", fake_build)
    for argv in (["--checkpoint_path", "x.pt", "--int8_style_heads", "--no_download"],
                 ["--checkpoint", "x.pt", "--int8-style-heads", "--no-download"]):
        seen.clear()
        with pytest.raises(SystemExit):
            app_main(argv)
        assert seen["checkpoint"] == "x.pt" and seen["int8_style_heads"] and seen["download"] is False, argv


def test_each_panel_has_its_status_line(demo):
    ids = _by_id(demo)
    expected = {"on_photo": "status", "on_age": "status", "on_full": "status", "on_chosen": "group-status",
                "on_group_age": "group-status", "on_group_full": "group-status", "on_strip": "strip-status",
                "on_mix": "mix-status", "on_video": "lifespan-status", "on_clip": "clip-status"}
    statuses = {ids[i] for i in expected.values()}
    for name, elem_id in expected.items():
        outputs = [d.outputs for d in demo.fns.values() if getattr(d.fn, "__name__", "") == name]
        assert outputs, name
        for out in outputs:
            assert ids[elem_id] in out and not (statuses - {ids[elem_id]}) & set(out), name
    out = asyncio.run(_wired(demo, "on_clip")(None, 70, "largest", 256, 0, 0, False, "auto", None))
    assert list(out) == [ids["clip-status"]] and "Add a video first" in out[ids["clip-status"]]


def test_messages_are_not_toasts_and_go_with_their_photo(page, tmp_path, faceless, toasts):
    updates = list(_wired(page.app.demo, "on_photo")(faceless, False, 40, False))
    assert "No face found" in updates[-1][page.photo.status]
    two = Image.new("RGB", (1024, 512))
    face = Image.open(ASTRONAUT).convert("RGB").resize((512, 512))
    two.paste(face, (0, 0))
    two.paste(face.resize((400, 400)), (562, 56))
    two.save(tmp_path / "two.png")
    updates = list(page.photo.on_photo(str(tmp_path / "two.png"), False, 40, False))
    assert updates[0][page.photo.status] == ""  # the previous photo's message goes with it
    assert any("2 faces found" in str(u.get(page.photo.status, "")) for u in updates)
    assert not toasts


@pytest.fixture(scope="module")
def faceless(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "wall.png"
    Image.new("RGB", (200, 160), (180, 170, 160)).save(path)
    return str(path)


def test_file_boxes_hidden_until_a_file_and_the_full_image_shown(page):
    photo, group = page.photo, page.group
    for box in (photo.full_file, photo.full_image, group.g_full_file, group.g_full_image, page.lifespan.v_files,
                page.video.c_file):
        assert box.visible is False
    first = next(page.photo.on_age(ASTRONAUT, 50, False, 0, False))
    assert first[page.photo.full_file]["visible"] is False and first[page.photo.full_image]["visible"] is False
    busy = page.photo.full_busy()
    assert busy[page.photo.full_file]["visible"] is True and busy[page.photo.full_btn]["interactive"] is False
    out = page.photo.on_full(ASTRONAUT, 50, False, 0, False)
    assert out[page.photo.full_file]["visible"] and out[page.photo.full_image]["visible"]
    assert Image.open(out[page.photo.full_image]["value"]).size == (page.full, page.full)


def test_a_failed_render_hides_its_empty_download_box(page, faceless):
    """The box is shown empty for the progress (``full_busy`` / ``file_busy``); a failure hides it again."""
    out = asyncio.run(_wired(page.app.demo, "on_full")(faceless, 50, False, 0, False, None))
    assert out[page.photo.full_file]["visible"] is False and "No face found" in out[page.photo.status]
    out = asyncio.run(_wired(page.app.demo, "on_group_full")(faceless, [], {}, None))
    assert out[page.group.g_full_file]["visible"] is False and "Choose the faces" in out[page.group.g_status]


def test_the_whole_photo_at_full_resolution_is_shown_as_an_image(page, tmp_path):
    two = Image.new("RGB", (1024, 512))
    face = Image.open(ASTRONAUT).convert("RGB").resize((512, 512))
    two.paste(face, (0, 0))
    two.paste(face.resize((400, 400)), (562, 56))
    two.save(tmp_path / "two.png")
    assert page.group.g_full_image.visible is False
    out = asyncio.run(_wired(page.app.demo, "on_group_full")(str(tmp_path / "two.png"), [0, 1], {0: 20, 1: 80}, None))
    assert out[page.group.g_full_file]["visible"] and out[page.group.g_full_image]["visible"]
    shown = Image.open(out[page.group.g_full_image]["value"])
    assert shown.size == (1024, 512)
    assert out[page.group.g_full_file]["value"] == out[page.group.g_full_image]["value"]


def test_cancel_only_while_a_video_renders(demo, page):
    assert page.lifespan.v_cancel.interactive is False and page.video.c_cancel.interactive is False
    on, off = video_running(), video_idle()
    assert [u["interactive"] for u in on] == [False, True] and [u["interactive"] for u in off] == [True, False]
    assert on_cancel()[1:] == off
    fns = demo.fns.items()
    clip, lifespan = page.video, page.lifespan
    for button, cancel, name in ((clip.c_btn, clip.c_cancel, "on_clip"),
                                 (lifespan.v_btn, lifespan.v_cancel, "on_video")):
        job_id = next(i for i, d in fns if getattr(d.fn, "__name__", "") == name)
        starts = [d for _, d in fns if d.fn == video_running and (button._id, "click") in d.targets]
        assert starts and set(starts[0].outputs) == {button, cancel}
        on_click = [d for _, d in fns if (cancel._id, "click") in d.targets]
        assert any(d.fn == on_cancel for d in on_click), name
        assert any(job_id in (d.cancels or []) for d in on_click), f"{name}'s Cancel does not cancel it"


def test_one_log_line_per_request_with_its_time(page, caplog):
    with caplog.at_level(logging.INFO, logger="sam.app"):
        list(_wired(page.app.demo, "on_age")(ASTRONAUT, 30, False, 0, False))
        asyncio.run(page.app.jobs.job(page.app.age)(ASTRONAUT, 40, None))
        asyncio.run(_wired(page.app.demo, "on_clip")(None, 70, "largest", 256, 0, 0, False, "auto", None))
    lines = [r.getMessage() for r in caplog.records if r.name == "sam.app"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("on_age done in ") and lines[0].endswith(" s")
    assert lines[1].startswith("age done in ") and lines[2].startswith("on_clip rejected after ")
    assert all(float(line.split(" in " if " in " in line else " after ")[1].split()[0]) >= 0 for line in lines)
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.slow
@needs_chromium
def test_every_tab_reachable_on_a_phone(tiny_checkpoint, tmp_path):
    """In headless Chromium at 390x844: each tab's button is visible and opens its panel (no overflow menu)."""
    shots = screenshot_dir(tmp_path)
    phone = web.build_demo(str(tiny_checkpoint), device="cpu")
    with open_page(phone, 390, 844) as tab_page:
        time.sleep(1)  # the tab bar lays itself out after load
        assert tab_page.locator("#tabs button[aria-label='More tabs']").count() == 0
        for name, inside in (("Reference style mixing", "#mix-status"), ("Lifespan video", "#video-button"),
                             ("Video", "#clip-button"), ("Ages side by side", "#strip-status")):
            tab = tab_page.get_by_role("tab", name=name, exact=True)
            assert tab.is_visible(), name
            tab.click(timeout=patient(10_000))
            tab_page.locator(inside).wait_for(state="attached", timeout=patient(10_000))
            assert tab.get_attribute("aria-selected") == "true", name
        tab_page.screenshot(path=str(shots / "app-phone-tabs.png"), full_page=False)


def _endpoint_defaults(demo) -> dict[str, dict]:
    """Each named endpoint's parameters and their defaults, as gradio_client is told them."""
    return {name: {p["parameter_name"]: p.get("parameter_default") for p in ep["parameters"]}
            for name, ep in demo.get_api_info()["named_endpoints"].items()}


def test_api_defaults_are_the_python_defaults(demo):
    """Each named endpoint's defaults (what gradio_client shows and fills in) are those of the AgeApp method it calls,
    and /video starts at the Video tab's and the CLI's age: one default per knob, wherever it is asked."""
    import inspect

    from sam.cli import build_parser

    endpoints = _endpoint_defaults(demo)
    a = demo.sam_app
    for name, method in [("/age", a.age), ("/mix", a.mix), ("/lifespan", a.lifespan), ("/video", a.video)]:
        shown = endpoints[name]
        signature = inspect.signature(method).parameters
        compared = 0
        for key, default in shown.items():
            if key not in signature or signature[key].default is inspect.Parameter.empty or default is None:
                continue
            python = signature[key].default
            if key == "size":  # None means the model's full size; no size is above it (a tiny test model's 32)
                python = a.full_size if python is None else min(python, a.full_size)
            if python is None:  # "not given" (no per-face ages, start and end of the clip): the box's 0 or ""
                continue
            assert default == python, f"{name} {key}: API default {default!r}, {method.__name__}() default {python!r}"
            compared += 1
        assert compared >= 3, f"{name}: only {compared} defaults compared"
    video = endpoints["/video"]
    cli = build_parser().parse_args(["video", "--input", "a.mp4", "--output", "b.mp4"])
    assert video["target_age"] == cli.target_age == demo.sam_page.video.c_age.value


def test_docs_api_table_shows_the_defaults(demo):
    """docs/app.md's endpoint table gives each parameter's default as the endpoint has it (sizes as for the published
    1024 px model; the tiny test model caps them at its own size)."""
    import ast
    import re
    from pathlib import Path

    table = Path(__file__).resolve().parents[1] / "docs" / "app.md"
    endpoints = _endpoint_defaults(demo)
    full = demo.sam_app.full_size
    checked = 0
    for row in table.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(/\w+)` \| (.*?) \|", row)
        if not m:
            continue
        shown = endpoints[m.group(1)]
        for name, value in re.findall(r"`(\w+)` \((`\"[^`]*\"`|-?[\d.]+|True|False)[);:]", m.group(2)):
            documented = ast.literal_eval(value.strip("`"))
            if name == "size":  # /age, /mix, /lifespan: the model's size at most (output_size is the clip's own)
                documented = min(documented, full)
            assert shown[name] == documented, f"docs/app.md {m.group(1)} {name}: documented {documented!r}, " \
                                              f"the endpoint's {shown[name]!r}"
            checked += 1
    assert checked >= 20, f"only {checked} documented defaults found in docs/app.md"


@pytest.mark.slow
@needs_chromium
def test_the_page_is_accessible(tiny_checkpoint, tmp_path):
    """In headless Chromium, with a photo dropped: axe-core finds no serious or critical violation on any tab; every
    visible button and the slider have a name and take the keyboard's focus; the slider's arrow keys and its number
    box's Enter render a new preview, as letting go of it does."""
    axe_module = pytest.importorskip("axe_playwright_python.sync_playwright",
                                     reason="pip install axe-playwright-python")
    from tests.browser import patient

    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    with open_page(demo, 1400, 1100) as page:
        page.locator("input[type=file]").first.set_input_files(ASTRONAUT)
        page.locator("#result img").wait_for(timeout=patient(60_000))
        page.wait_for_function("() => document.querySelector('#result-metrics').innerText.startsWith('Age ')",
                               timeout=patient(60_000))
        axe = axe_module.Axe()
        found = {}
        for tab in (None, "Reference style mixing", "Lifespan video", "Video", "Ages side by side"):
            if tab:
                page.get_by_role("tab", name=tab, exact=True).click()
                time.sleep(0.5)
            for v in axe.run(page).response["violations"]:
                if v["impact"] in ("serious", "critical"):
                    found[v["id"]] = [n["target"] for n in v["nodes"]][:4]
        assert found == {}, found
        unnamed = page.evaluate("""() => [...document.querySelectorAll('button, input[type=range]')]
            .filter(b => b.offsetParent !== null)
            .filter(b => b.tabIndex < 0 || !(b.getAttribute('aria-label') || b.innerText.trim() ||
                                               (b.labels && b.labels.length)))
            .map(b => b.outerHTML.slice(0, 80))""")
        assert unnamed == []
        before = page.locator("#result-metrics").inner_text()
        page.locator("#target-age input[type=range]").focus()
        for _ in range(3):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("s => document.querySelector('#result-metrics').innerText.split(':')[0] !== s",
                               arg=before.split(":")[0], timeout=patient(30_000))
        box = page.locator("#target-age input[type=number]")
        box.fill("20")
        box.press("Enter")
        page.wait_for_function("() => document.querySelector('#result-metrics').innerText.startsWith('Age 20')",
                               timeout=patient(30_000))
