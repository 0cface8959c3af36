"""The page follows the visitor (issue 32), on the tiny checkpoint, through the handlers as the page wires them and
with a visitor's session: the browser's repeated photo event does not undo the group choice made meanwhile, a new
photo clears the previous photo's results and drops late answers for it, the group shows progress, and one face's
own age renders only that face (the single-face panel does not render too)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

import web
from tests.test_app import ASTRONAUT, _innermost
from tests.test_group import GROUP, needs_group
from web import glue
from web.latest import STOPPED

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def page(tiny_checkpoint) -> web.Page:
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    yield demo.sam_page
    demo.close()


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory) -> str:
    two = Image.new("RGB", (1024, 512))
    face = Image.open(ASTRONAUT).convert("RGB").resize((512, 512))
    two.paste(face, (0, 0))
    two.paste(face.resize((400, 400)), (562, 56))
    path = tmp_path_factory.mktemp("img") / "two.png"
    two.save(path)
    return str(path)


def wired(page: web.Page, name: str, panel: object) -> object:
    """The function the page runs for ``panel.name`` (its wrappers included)."""
    method = getattr(panel, name)
    fns = [d.fn for d in page.app.demo.fns.values() if _innermost(d.fn) == method]
    assert fns, f"no event runs {name}"
    return fns[0]


def visitor(name: str):
    """Run the body as the page of visitor ``name``."""
    return glue.request_context(SimpleNamespace(session_hash=name, headers={}, client=None))


def shown(updates: list[dict], component: object) -> list:
    """The values ``component`` was given, in order (skips left out)."""
    return [u[component] for u in updates if component in u and u[component] != gr.skip()]


def test_the_repeated_photo_event_keeps_the_group_choice(page, two_faces):
    p, g = page.photo, page.group
    on_photo, on_group_photo = wired(page, "on_photo", p), wired(page, "on_group_photo", g)
    on_everyone, on_chosen = wired(page, "on_everyone", g), wired(page, "on_chosen", g)
    with visitor("repeat"):
        list(on_photo(ASTRONAUT, False, 40, False))
        on_group_photo(ASTRONAUT, False)
        page.on_new_photo(two_faces, False)  # the group photo replaces the first
        offered = on_group_photo(two_faces, False)
        assert offered[p.group_pick]["visible"] and len(offered[p.chosen]["choices"]) == 2
        chosen = on_everyone(two_faces, True)[p.chosen]  # "everyone" ticked at once
        assert chosen == [0, 1]
        updates = list(on_chosen(two_faces, chosen, 40, {}, "all"))
        assert shown(updates, g.group_box)[0]["visible"] and shown(updates, g.g_view)
        list(on_photo(two_faces, False, 40, False))  # the photo's own processing (the first event's) ends
        repeat = on_group_photo(two_faces, False)  # then the browser's repeat of the photo event
        assert set(repeat) == {g.g_status} and repeat[g.g_status] == gr.skip()  # nothing reset
        assert list(on_photo(two_faces, False, 40, False)) == [{p.status: gr.skip()}]  # nor redone


def test_a_new_photo_clears_the_old_results_and_drops_late_answers(page, two_faces):
    p, s, m, v = page.photo, page.strip, page.mixing, page.lifespan
    on_age, on_strip = wired(page, "on_age", p), wired(page, "on_strip", s)
    with visitor("new-photo"):
        page.on_new_photo(ASTRONAUT, False)
        strip = on_strip.handler(ASTRONAUT, ["20", "60"], False, 0)  # (the job's thread: called directly)
        assert len(strip[s.strip]) == 2
        cleared = page.on_new_photo(two_faces, False)
        assert cleared[s.strip] is None and cleared[s.strip_info] == "" and cleared[m.mixed_out] is None
        assert cleared[v.video] is None and cleared[v.v_files]["visible"] is False and cleared[v.v_status] == ""
        assert set(page.on_new_photo(two_faces, False)) == {s.strip_status}  # the repeat: nothing cleared again
        late = list(on_age(ASTRONAUT, 30, False, 0, False))  # a slider move made before the new photo
        assert not shown(late, p.result)
        assert on_strip.handler(ASTRONAUT, ["20"], False, 0) == {s.strip_status: STOPPED}


def test_group_progress_and_one_face_rendered_for_its_own_age(page, two_faces):
    p, g = page.photo, page.group
    on_chosen, on_group_age, on_age = wired(page, "on_chosen", g), wired(page, "on_group_age", g), wired(
        page, "on_age", p)
    with visitor("progress"):
        page.on_new_photo(two_faces, False)
        wired(page, "on_group_photo", g)(two_faces, False)
        updates = list(on_chosen(two_faces, [0, 1], 50, {}, "all"))  # (40: kept by the first test)
        statuses = shown(updates, g.g_status)
        assert statuses[0] == "Ageing 2 faces, one at a time…", statuses
        assert any(t.startswith("Ageing the faces: 1 of 2 done, about ") and t.endswith(" s left…") for t in statuses)
        assert statuses[-1] == "" and len(shown(updates, g.g_view)) >= 2  # the first face shown as soon as done
        group = page.app.group(two_faces, [0, 1])
        before = [sess.pictures_rendered for sess in group.sessions]
        updates = list(on_group_age(two_faces, [0, 1], 75, {0: 50, 1: 50}, "1"))  # face 1 gets its own age
        assert shown(updates, g.group_ages)[-1] == {0: 50, 1: 75}
        after = [sess.pictures_rendered for sess in group.sessions]
        assert after[0] == before[0] and after[1] == before[1] + 1  # face 0's picture came from its cache
        alone = page.app.session(two_faces, False, 0)
        rendered = alone.pictures_rendered
        single = list(on_age(two_faces, 75, False, 0, False, [0, 1]))  # the same slider move, single-face panel
        assert not shown(single, p.result) and "faces aged together" in shown(single, p.result_info)[0]
        assert alone.pictures_rendered == rendered


def test_the_lifespan_bar_says_what_happens_before_the_first_frame(page):
    """The key ages are encoded before any frame exists: the bar says so at once, then counts the frames."""
    calls = []
    res = page.app.lifespan_job(ASTRONAUT, 30, 50, 2, 10, 32, progress=lambda *a: calls.append(a))
    assert calls[0] == (0, res.frames, "encoding the key ages (the frames follow)…")
    assert calls[-1][:2] == (res.frames, res.frames) and len(calls) > 2


@needs_group
def test_the_faces_found_stay_said(page):
    """On the six-face photo the full look ranks another face best than the quick look did, and the face shown is
    switched: the status line still says how many faces were found, and the picker's label keeps the count."""
    p = page.photo
    with visitor("six"):
        updates = list(wired(page, "on_photo", p)(str(GROUP), False, 40, False))
    said = shown(updates, p.status)
    assert said[-1].startswith("6 faces found; showing the best one"), said
    assert shown(updates, p.picker)[-1]["label"].startswith("6 faces found")
    assert page.app.sessions.photo(str(GROUP)).best_face_confirmed() is False  # (the case this is about)
