"""The page follows the visitor (issue 32), in headless Chromium at 1400 x 1400, with a deliberately slowed model:
every encoder pass and every render of a face sleeps :data:`SLOW_S` inside the model lock (as a slow machine holds
it), so the photos' own processing takes seconds, as it does with the real model on a CPU.

The visitor drops the astronaut (one face), waits for its preview, drops the six-face group photo over it and ticks
"everyone" as soon as it appears, while the group photo's own single-face processing (aligned face, preview) is still
running. Once that processing has ended: "everyone" is still ticked, the group box still shown, the six faces still
chosen; the group's progress was shown ("Ageing 6 faces, one at a time…", then "Ageing the faces: d of 6 done, about
N s left…"), and the before/after slider has the whole photo with faces 0 to 5 listed. Then face 2 gets its own age
(its thumbnail, then the age slider): exactly one face picture is rendered for it (the other five come from their
kept pictures) and the single-face panel renders nothing (it only says the slider sets the faces' ages). The time of
that step and its counts are printed (``pytest -s``). Screenshots go to :func:`tests.browser.screenshot_dir`."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

import web
from tests.browser import needs_chromium, open_page, patient, screenshot_dir
from tests.test_group import GROUP, needs_group
from web.panels.group import GroupPanel
from web.panels.photo import PhotoPanel

ASTRONAUT = str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png")
SLOW_S = 0.8  # each encoder pass of a face and each render sleeps this long, holding the model lock
SLOWED = ("encode_pretrained", "decoder")  # the model calls of AgingPipeline.encode and AgingPipeline.render
HANDLERS = {PhotoPanel.on_age.__code__: "single-face slider", PhotoPanel.show_face.__code__: "single-face photo",
            GroupPanel.on_group_age.__code__: "group slider", GroupPanel.on_chosen.__code__: "group chosen"}

# every text the group status line shows, in order (a MutationObserver: no text is missed between two polls)
WATCH_STATUS = """() => {
  window.groupStatus = [];
  const read = () => {
    const el = document.querySelector('#group-status');
    const text = el ? el.innerText.trim() : '';
    if (text && text !== window.groupStatus[window.groupStatus.length - 1]) window.groupStatus.push(text);
  };
  new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
GROUP_DONE_OR_UNTICKED = """() => {
  const box = document.querySelector('#everyone input');
  if (!box || !box.checked) return 'unticked';
  const ages = document.querySelector('#group-ages'), status = document.querySelector('#group-status');
  return document.querySelectorAll('#group-slider img').length >= 2 && !!ages && ages.innerText.includes('face 5')
    && !ages.innerText.includes('interpolated') && !!status && status.innerText.trim() === '';
}"""
NEW_SRC = "([sel, old]) => { const i = document.querySelector(sel); return !!i && !!i.src && i.src !== old; }"


def _handler() -> str:
    """The page handler a model call runs for (its caller frames), or "other" (e.g. the key-age warm-up)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code in HANDLERS:
            return HANDLERS[frame.f_code]
        frame = frame.f_back
    return "other"


def _ages(page) -> dict[int, int]:
    """Face number -> age, as the group's ages line shows them."""
    return {int(i): int(a) for i, a in re.findall(r"face (\d) → (\d+)", page.locator("#group-ages").inner_text())}


def _wait(what: str, ready, timeout_s: float) -> None:
    """A bounded wait on the server's side."""
    end = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@needs_group
@needs_chromium
def test_browser_the_page_follows_the_visitor(tiny_checkpoint, tmp_path, monkeypatch):
    began = time.monotonic()
    shots = screenshot_dir(tmp_path)
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    app, photo_panel = demo.sam_app, demo.sam_page.photo

    passes: list[tuple[str, str, float]] = []  # (model call, page handler, when) of each slowed pass, in order
    real_call = app.pipe.call

    def slow_call(model, name, *args, **kwargs):
        if name in SLOWED:
            passes.append((name, _handler(), time.monotonic()))
            time.sleep(SLOW_S)
        return real_call(model, name, *args, **kwargs)

    monkeypatch.setattr(app.pipe, "call", slow_call)
    finished: list[int] = []  # the face index of each single-face run (aligned face, preview) that ran to its end
    real_show_face = photo_panel.show_face

    def show_face(image, aligned, idx, *args, **kwargs):
        yield from real_show_face(image, aligned, idx, *args, **kwargs)
        finished.append(idx)

    monkeypatch.setattr(photo_panel, "show_face", show_face)
    events: list[tuple[str, bool, float]] = []  # (handler, new photo?, when) of each photo event the page saw
    real_photo_event = demo.sam_page.latest.photo_event

    def photo_event(handler, image, *detail):
        new = real_photo_event(handler, image, *detail)
        events.append((handler, new, time.monotonic()))
        return new

    monkeypatch.setattr(demo.sam_page.latest, "photo_event", photo_event)

    with open_page(demo, 1400, 1400) as page:
        page.evaluate(WATCH_STATUS)
        upload = page.locator("input[type=file]").first
        upload.set_input_files(ASTRONAUT)
        page.locator("#result img").wait_for(timeout=patient(60_000))
        _wait("the astronaut's processing", lambda: len(finished) == 1, patient(30_000) / 1000)
        first_result = page.locator("#result img").get_attribute("src")
        page.screenshot(path=str(shots / "visitor-1-astronaut.png"), full_page=True)

        upload.set_input_files(str(GROUP))  # the group photo over it
        everyone = page.locator("#everyone input")
        everyone.wait_for(state="visible", timeout=patient(60_000))
        still_running = len(finished) == 1  # the group photo's own single-face run has not ended
        everyone.check()
        ticked = time.monotonic()
        assert still_running, "the group photo's own processing ended before \"everyone\" appeared: slow the model more"
        page.screenshot(path=str(shots / "visitor-2-everyone-ticked.png"), full_page=True)

        # the photo's own processing ends: its single-face preview appears, the run behind it ends
        page.wait_for_function(NEW_SRC, arg=["#result img", first_result], timeout=patient(60_000))
        _wait("the group photo's processing", lambda: len(finished) == 2, patient(30_000) / 1000)
        photo_done = time.monotonic()
        # and the group's (the exact preview of all six, the status line cleared), unless "everyone" went
        page.wait_for_function(GROUP_DONE_OR_UNTICKED, timeout=patient(60_000))
        time.sleep(1.0)  # room for any late answer (e.g. the browser's repeated photo event) to arrive
        repeats = [h for h, new, t in events if not new and t > ticked]  # the browser's repeated photo event
        print(f"\n\"everyone\" ticked {photo_done - ticked:.1f} s before the photo's own processing ended; "
              f"repeated photo events after the tick: {repeats}")

        assert everyone.is_checked(), "\"everyone\" was unticked after the photo's own processing ended"
        assert page.locator("#group-box").first.is_visible()  # (Gradio gives a group's id to two nested divs)
        assert page.locator("#group-faces input:checked").count() == 6  # the six faces still chosen
        assert "on_group_photo" in repeats, f"the test missed its case: no repeated photo event after the tick {events}"
        shown = [t.splitlines()[-1] for t in page.evaluate("() => window.groupStatus")]  # (below Gradio's timer)
        statuses = [t for i, t in enumerate(shown) if i == 0 or t != shown[i - 1]]
        print("group status texts:", statuses)
        started = [int(m[1]) for t in statuses if (m := re.fullmatch(r"Ageing (\d) faces, one at a time…", t))]
        steps = [(int(m[1]), int(m[2])) for t in statuses
                 if (m := re.fullmatch(r"Ageing the faces: (\d) of (\d) done, about \d+ s left…", t))]
        assert started and started[0] >= 5, statuses  # 6 (5 where the single-face preview was kept first)
        assert steps and all(total == started[0] for _, total in steps), statuses
        done = [d for d, _ in steps]
        assert done == sorted(set(done)) and done[0] == 1, statuses  # one face after the other, each shown
        assert page.locator("#group-slider img").count() == 2  # before / after
        ages = _ages(page)
        assert list(ages) == list(range(6)) and len(set(ages.values())) == 1, ages  # everyone alike
        start = ages[0]
        page.screenshot(path=str(shots / "visitor-3-group-done.png"), full_page=True)

        # one face's own age: its thumbnail (the single-face panel shows that face), then the slider
        group = app.group(str(GROUP), list(range(6)))
        assert all(s.pictures_rendered >= 1 for s in group.sessions)  # the page's sessions, each face rendered
        page.locator("#face-picker button.thumbnail-item").nth(2).click()
        page.wait_for_function("() => { const i = document.querySelector(\"#group-who input[value='2']\"); "
                               "return !!i && i.checked; }", timeout=patient(30_000))
        _wait("face 2 in the single-face panel", lambda: finished[-1:] == [2], patient(30_000) / 1000)
        result = page.locator("#result img").get_attribute("src")
        _wait("the key-age warm-up", lambda: app.background.running == 0, patient(60_000) / 1000)  # a quiet start
        before = [s.pictures_rendered for s in group.sessions]
        passes_before = len(passes)
        slider = page.locator("#target-age input[type=range]")
        box = slider.bounding_box()
        t0 = time.monotonic()
        page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
        page.wait_for_function("s => { const t = document.querySelector('#group-ages').innerText; "
                               "const m = t.match(/face 2 → (\\d+)/); "
                               "return !!m && Number(m[1]) !== s && !t.includes('interpolated'); }", arg=start,
                               timeout=patient(60_000))
        took = time.monotonic() - t0
        page.locator("#result-metrics").get_by_text("faces aged together").wait_for(timeout=patient(30_000))
        after = [s.pictures_rendered for s in group.sessions]
        step_passes = [(name, handler, round(t - t0, 2)) for name, handler, t in passes[passes_before:]]
        rendered = sum(after) - sum(before)
        print(f"face 2's own age: {took:.2f} s to its exact preview (model slowed {SLOW_S} s per pass); "
              f"{rendered} face picture(s) rendered, per face {[a - b for a, b in zip(after, before)]}; "
              f"slowed passes (call, handler, s after the click): {step_passes}")
        ages = _ages(page)
        assert ages[2] != start and all(ages[i] == start for i in (0, 1, 3, 4, 5)), ages  # the others keep theirs
        assert rendered == 1 and after[2] == before[2] + 1  # face 2 only: the other five from their kept pictures
        assert not [p for p in step_passes if p[1] == "single-face slider"]  # the single-face panel rendered nothing
        assert len([p for p in step_passes if p[0] == "decoder"]) <= 2  # face 2: interpolated, then exact
        assert page.locator("#result img").get_attribute("src") == result
        assert everyone.is_checked() and page.locator("#group-faces input:checked").count() == 6
        page.screenshot(path=str(shots / "visitor-4-own-age.png"), full_page=True)
    print(f"test time {time.monotonic() - began:.1f} s")
