"""The page on a wide screen and on a phone (issue 32), in headless Chromium on the tiny checkpoint: every face of the
six-face photo is in the face picker with its number visible (not cut off, not under the gallery's label), the
picker's label keeps the count, a phone shows the preview after a drop (and the preview and slider come before the
aligned face), the strip shows every age and its table's header on one line, and a second photo leaves nothing of
the first one's results. Screenshots go to $SAM_SCREENSHOT_DIR (default: a temporary folder)."""

from __future__ import annotations

import pytest

import web
from tests.browser import needs_chromium, open_page, patient, screenshot_dir
from tests.test_app import ASTRONAUT
from tests.test_group import GROUP, needs_group

pytestmark = [pytest.mark.slow, needs_chromium, needs_group]

LINES = """(sel) => { const el = document.querySelector(sel); const range = document.createRange();
  range.selectNodeContents(el); return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; }"""
"""How many lines the text of the element ``sel`` takes."""


RECTS = """(sels) => sels.map(sel => [...document.querySelectorAll(sel)].map(el => {
  const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }))"""
"""The boxes of every element of each selector, measured at one moment (the page may scroll between two calls)."""


def inside(inner: dict, outer: dict) -> bool:
    return (inner["x"] >= outer["x"] - 0.5 and inner["y"] >= outer["y"] - 0.5
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5)


def faces_all_visible(page) -> None:
    """Six thumbnails, each wholly inside the picker, below its label, captioned with its number."""
    thumbs = page.locator("#face-picker button.thumbnail-item")
    thumbs.nth(5).wait_for(timeout=patient(60_000))
    page.wait_for_timeout(500)  # (the gallery settles)
    shown, (picker,), (label,) = page.evaluate(RECTS, ["#face-picker button.thumbnail-item", "#face-picker",
                                                       "#face-picker [data-testid='block-label']"])
    assert len(shown) == 6
    for i, t in enumerate(shown):
        assert inside(t, picker), (i, t, picker)  # not cut off, not scrolled away
        assert t["y"] >= label["y"] + label["height"] - 0.5, (i, t, label)  # the number is not under the label
        assert t["width"] >= 60, t
        assert thumbs.nth(i).inner_text().strip() == f"face {i}"
    assert "6 faces found" in page.locator("#face-picker [data-testid='block-label']").inner_text()


IN_VIEW = """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
  return r.top >= -1 && r.top < innerHeight - 100; }"""
"""Whether the top of the element ``sel`` is on the screen (with 100 px of it showing)."""


def render_strip(page) -> None:
    page.get_by_role("tab", name="Ages side by side").click()
    page.get_by_role("button", name="Render the strip").click()
    page.locator("#strip-metrics table").wait_for(timeout=patient(120_000))


def test_a_phone_shows_the_preview_every_face_number_and_the_whole_strip(tiny_checkpoint, tmp_path):
    shots = screenshot_dir(tmp_path)
    with open_page(web.build_demo(str(tiny_checkpoint), device="cpu"), 390, 844) as page:
        page.locator("input[type=file]").first.set_input_files(ASTRONAUT)
        page.locator("#result img").wait_for(timeout=patient(60_000))
        page.wait_for_function(IN_VIEW, arg="#result", timeout=patient(10_000))  # (before: 1.5 screens below)
        (result,), (aligned,) = page.evaluate(RECTS, ["#result", "#aligned"])
        assert result["y"] < aligned["y"]  # the preview and the slider before the aligned face
        page.screenshot(path=str(shots / "phone-after-drop.png"))

        render_strip(page)
        frames, (strip,) = page.evaluate(RECTS, ["#strip-gallery button.thumbnail-item", "#strip-gallery"])
        assert len(frames) == 11 and all(inside(f, strip) for f in frames)  # every age shown, none scrolled away
        assert page.evaluate(LINES, "#strip-metrics th") == 1  # "target" on one line
        page.screenshot(path=str(shots / "phone-strip.png"), full_page=True)

        page.locator("input[type=file]").first.set_input_files(str(GROUP))
        faces_all_visible(page)
        page.wait_for_function("() => !document.querySelector('#strip-metrics table')", timeout=patient(10_000))
        assert page.locator("#strip-gallery button.thumbnail-item").count() == 0  # the old photo's strip is gone
        (picker,), (result,), (aligned,) = page.evaluate(RECTS, ["#face-picker", "#result", "#aligned"])
        assert picker["y"] < result["y"] < aligned["y"]
        page.screenshot(path=str(shots / "phone-group.png"), full_page=True)


def test_a_wide_screen_shows_every_face_number_and_nothing_of_the_previous_photo(tiny_checkpoint, tmp_path):
    shots = screenshot_dir(tmp_path)
    with open_page(web.build_demo(str(tiny_checkpoint), device="cpu"), 1400, 1000) as page:
        page.locator("input[type=file]").first.set_input_files(ASTRONAUT)
        page.locator("#result img").wait_for(timeout=patient(60_000))
        render_strip(page)
        page.get_by_role("tab", name="Lifespan video").click()
        page.locator("#video-button").click()
        page.locator("#lifespan-files a").first.wait_for(timeout=patient(120_000))
        assert page.locator("#lifespan-files button, #lifespan-video button[aria-label*='lear']").count() == 0
        assert "Video ready" in page.locator("#lifespan-status").inner_text()

        page.locator("input[type=file]").first.set_input_files(str(GROUP))
        faces_all_visible(page)
        page.wait_for_function("() => !document.querySelector('#lifespan-video video')", timeout=patient(10_000))
        assert page.locator("#lifespan-status").inner_text().strip() == ""
        assert not page.locator("#lifespan-files").is_visible()
        page.get_by_role("tab", name="Ages side by side").click()
        assert page.locator("#strip-gallery button.thumbnail-item").count() == 0
        assert page.locator("#strip-metrics table").count() == 0
        page.screenshot(path=str(shots / "wide-second-photo.png"), full_page=True)
