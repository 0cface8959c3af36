"""Several faces of one photo aged together (issue 22): the multi-face paste (sam.faces.paste.paste_faces), the one rule
for ``faces`` and per-face ages (sam.session), the app's ``/age`` and ``/lifespan`` and the CLI, on a real group
photo with six faces (insightface's ``t1.jpg``, shipped in its wheel: requirements-dev.txt) and a tiny checkpoint."""

from __future__ import annotations

import asyncio
import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import web
from sam.faces import align, detect, paste
from sam.requests import RequestError, read_face_ages, read_faces
from sam.session import GroupSession, Photo
from tests.browser import needs_chromium, open_page, patient, screenshot_dir
from tests.conftest import TINY

S = TINY.output_size


def _group_photo() -> Path | None:
    """insightface's six-face photo, found without importing the package (its import pulls in OpenCV)."""
    spec = importlib.util.find_spec("insightface")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "images" / "t1.jpg"
        if path.is_file():
            return path
    return None


GROUP = _group_photo()
needs_group = pytest.mark.skipif(GROUP is None, reason="insightface (requirements-dev.txt) ships the group photo")


@pytest.fixture(scope="module")
def photo() -> Photo:
    if GROUP is None:
        pytest.skip("insightface (requirements-dev.txt) ships the group photo")
    return Photo.load(GROUP)


@pytest.fixture(scope="module")
def sam_app(tiny_checkpoint) -> web.AgeApp:
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    yield demo.sam_app
    demo.close()


def _changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max(axis=-1) > 0


def _inner(face: detect.Face, shrink: float = 0.25) -> tuple[slice, slice]:
    left, top, right, bottom = face.box
    dx, dy = shrink * face.width, shrink * face.height
    return slice(int(top + dy), int(bottom - dy)), slice(int(left + dx), int(right - dx))


def _far(size: tuple[int, int], faces: list[detect.Face], k: float = 0.55) -> np.ndarray:
    """Pixels farther than ``k`` face widths (about half a face width) from every face's detector box."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]] + 0.5
    far = np.ones((size[1], size[0]), bool)
    for f in faces:
        left, top, right, bottom = f.box
        dx = np.maximum(np.maximum(left - xs, xs - right), 0)
        dy = np.maximum(np.maximum(top - ys, ys - bottom), 0)
        far &= np.hypot(dx, dy) > k * f.width
    return far


# --------------------------------------------------------------------------------------------- the photo


@needs_group
def test_all_six_faces_are_found(photo):
    assert len(photo.faces) == 6
    widths = [f.width for f in photo.faces]
    assert min(widths) > 80  # the six people, not patches on clothes or chips on the table


# --------------------------------------------------------------------------------------------- the paste


def _flat(colour: tuple[int, int, int], side: int = 64) -> Image.Image:
    return Image.new("RGB", (side, side), colour)


@needs_group
def test_paste_faces_changes_every_face_and_nothing_far(photo):
    aligned = [align.align_face(photo.image, face=f) for f in photo.faces]
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    pairs = [(a, _flat(c)) for a, c in zip(aligned, colours)]
    out = paste.paste_faces(photo.image, pairs, color_match=False)
    assert out.size == photo.image.size
    changed = _changed(out, photo.image)
    for f, c in zip(photo.faces, colours):
        rows, cols = _inner(f)
        assert changed[rows, cols].mean() > 0.99
        got = np.asarray(out, np.float64)[rows, cols].reshape(-1, 3).mean(axis=0)
        assert np.abs(got - c).max() < 20  # each face its own paste, not its neighbour's
    assert not changed[_far(out.size, photo.faces)].any()
    # a stable order: the same result whatever order the faces come in
    assert np.array_equal(np.asarray(out), np.asarray(paste.paste_faces(photo.image, pairs[::-1], color_match=False)))
    # one face with paste_back's mask shape: paste_back's blend (to rounding)
    one = np.asarray(paste.paste_faces(photo.image, pairs[:1], color_match=False, extent=0.96, order=8), np.int16)
    single = np.asarray(paste.paste_back(photo.image, aligned[0], pairs[0][1]), np.int16)
    assert np.abs(one - single).max() <= 1


def test_close_faces_hand_over_smoothly():
    """Two faces whose crops overlap: each centre keeps its own face, and between them the share of one face falls
    steadily to the other's (no seam, no jump)."""
    base = Image.new("RGB", (400, 240), (128, 128, 128))
    side = 256
    k = 0.5  # the aligned square is 128 px in the photo
    a = align.AlignedFace(image=_flat((128, 128, 128), side), quad=np.zeros((4, 2)), face=None, source_size=base.size,
                          output_size=side, transform_size=side, matrix=np.array([[k, 0, 80.0], [0, k, 56.0]]))
    b = replace(a, matrix=np.array([[k, 0, 80.0 + 0.75 * side * k], [0, k, 56.0]]))  # 96 px apart: 32 px overlap
    out = np.asarray(paste.paste_faces(base, [(a, _flat((255, 0, 0))), (b, _flat((0, 0, 255)))], color_match=False),
                     np.float64)
    row = out[120]
    assert row[144, 0] > 240 and row[144, 2] < 15  # centre of a
    assert row[240, 2] > 240 and row[240, 0] < 15  # centre of b
    red = row[144:241, 0]
    assert np.all(np.diff(red) <= 1)  # red falls steadily from a's centre to b's
    assert np.abs(np.diff(row[144:241], axis=0)).max() < 40  # no jump anywhere on the way
    assert np.array_equal(out[:, :70], np.asarray(base, np.float64)[:, :70])  # outside both crops: untouched


def test_paste_faces_matches_each_faces_colour():
    base = Image.new("RGB", (300, 200), (90, 120, 150))
    a = align.AlignedFace(image=_flat((90, 120, 150), 64), quad=np.zeros((4, 2)), face=None, source_size=base.size,
                          output_size=64, transform_size=64, matrix=np.array([[1.0, 0, 40.0], [0, 1.0, 60.0]]))
    b = replace(a, image=_flat((200, 60, 40), 64), matrix=np.array([[1.0, 0, 180.0], [0, 1.0, 60.0]]))
    out = np.asarray(paste.paste_faces(base, [(a, _flat((10, 10, 10))), (b, _flat((10, 10, 10)))]), np.float64)
    assert np.abs(out[92, 72] - (90, 120, 150)).max() < 6  # a's new face shifted to a's original colour
    assert np.abs(out[92, 212] - (200, 60, 40)).max() < 6  # b's to b's


# --------------------------------------------------------------------------------------------- the rules


def test_read_faces_rules():
    assert read_faces("best") is None and read_faces(None) is None and read_faces("") is None
    assert read_faces("all", 6) == list(range(6)) and read_faces("Everyone", 2) == [0, 1]
    assert read_faces("1,3", 6) == [1, 3] and read_faces([3, 1], 6) == [3, 1] and read_faces(2, 6) == [2]
    assert read_faces("[0, 5]", 6) == [0, 5]
    for value, words in [("1,7", "face 7 was asked for, but the photo has 6 face(s)"),
                         ("1,1", "face 1 is listed twice"), ("-1", "face numbers start at 0"),
                         ("1.5", "whole number"), ("some", "faces must be \"best\", \"all\" or face numbers"),
                         (",", "choose at least one face"), ([float("nan")], "must be a number")]:
        with pytest.raises(RequestError, match="(?i)" + words.replace("(", r"\(").replace(")", r"\)")):
            read_faces(value, 6)


def test_read_face_ages_rules():
    assert read_face_ages(None, [0, 1, 2], 40) == [40, 40, 40]
    assert read_face_ages("60,,25", [0, 1, 2], 40) == [60, 40, 25]
    assert read_face_ages([10.5, 90], [3, 1], 40) == [11, 90]  # round half up, as every age
    with pytest.raises(RequestError, match="no age for face 1"):
        read_face_ages("70", [0, 1], None)
    with pytest.raises(RequestError, match="3 ages were given for 2 face"):
        read_face_ages("1,2,3", [0, 1], 40)
    with pytest.raises(RequestError, match="the age of face 5 must be a number between 0 and 100"):
        read_face_ages("20,nan", [1, 5], 40)
    with pytest.raises(RequestError, match="the age of face 1 must be between 0 and 100"):
        read_face_ages([140], [1], 40)
    with pytest.raises(RequestError, match="target age must be a number"):
        read_face_ages("", [0], float("nan"))


# --------------------------------------------------------------------------------------------- the app


def _run(fn, *args):
    return asyncio.run(fn.__self__.jobs.job(fn)(*args, None))


@needs_group
def test_age_all_faces_pasted_back(sam_app, photo):
    out = sam_app.age(str(GROUP), 70, None, False, 0, True, "all")
    assert out.size == photo.image.size
    changed = _changed(out, photo.image)
    for f in photo.faces:
        rows, cols = _inner(f)
        assert changed[rows, cols].mean() > 0.9
    assert not changed[_far(out.size, photo.faces)].any()


@needs_group
def test_age_chosen_faces_only(sam_app, photo):
    out = sam_app.age(str(GROUP), 70, None, False, 0, True, "1,3")
    changed = _changed(out, photo.image)
    chosen = [photo.faces[1], photo.faces[3]]
    for i, f in enumerate(photo.faces):
        rows, cols = _inner(f)
        assert (changed[rows, cols].mean() > 0.9) == (i in (1, 3))
    assert not changed[_far(out.size, chosen)].any()


@needs_group
def test_per_face_ages(sam_app, photo):
    young_old = np.asarray(sam_app.age(str(GROUP), 50, None, False, 0, True, "1,3", "10,90"))
    old_young = np.asarray(sam_app.age(str(GROUP), 50, None, False, 0, True, "1,3", "90,10"))
    same_old = np.asarray(sam_app.age(str(GROUP), 90, None, False, 0, True, "1,3"))
    r1, c1 = _inner(photo.faces[1])
    r3, c3 = _inner(photo.faces[3])
    assert np.array_equal(young_old[r3, c3], same_old[r3, c3])  # face 3 at 90 in both
    assert not np.array_equal(young_old[r1, c1], same_old[r1, c1])  # face 1 at 10, not 90
    assert not np.array_equal(young_old[r1, c1], old_young[r1, c1])
    # a group of one face is that face's own render pasted back
    g = sam_app.sessions.group(str(GROUP), "2")
    assert isinstance(g, GroupSession) and g.faces == [2]


@needs_group
@pytest.mark.parametrize(("args", "words"), [
    (("1,9",), "face 9 was asked for, but the photo has 6 face(s)"),
    (("1,1",), "face 1 is listed twice"),
    (("-2",), "face numbers start at 0"),
    (("all", "20,nan"), "the age of face 1 must be a number between 0 and 100"),
    (("1,3", "20,30,40"), "3 ages were given for 2 face(s)"),
    (("best", "20,30"), "per-face ages need faces"),
])
def test_bad_group_requests_are_told_in_words(sam_app, args, words):
    with pytest.raises(gr.Error) as info:
        _run(sam_app.age, str(GROUP), 50, None, False, 0, True, *args)
    message = str(info.value.message)
    assert words.lower() in message.lower() and "Traceback" not in message


def test_aligned_input_has_one_face(sam_app):
    astronaut = str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png")
    with pytest.raises(gr.Error, match="aligned face crop has one face"):
        _run(sam_app.age, astronaut, 50, None, True, 0, True, "all")


@needs_group
def test_group_lifespan_video(sam_app, photo):
    mp4 = sam_app.lifespan(str(GROUP), 20, 40, 1, 10, S, False, False, 0, "all")
    frames = np.stack(list(iio.imiter(mp4)))
    assert frames.shape[0] == 5  # keys 20, 30, 40 and one frame between each pair
    w, h = photo.image.size
    assert frames.shape[1:3] == (h // 16 * 16, w // 16 * 16)  # the whole photo (H.264-friendly sides)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 10  # the faces changed with age


# --------------------------------------------------------------------------------------------- the CLI


@needs_group
def test_cli_every_face_pasted_back(tiny_checkpoint, tmp_path, photo, capsys):
    from sam.cli import main

    data = tmp_path / "in"
    data.mkdir()
    photo.image.save(data / "group.png")  # PNG: the comparison with the photo is exact
    exp = tmp_path / "exp"
    base = ["--checkpoint_path", str(tiny_checkpoint), "--data_path", str(data), "--device", "cpu"]
    assert main(["inference", *base, "--exp_dir", str(exp), "--faces", "all", "--paste_back",
                 "--target_age", "20,70"]) == 0
    for age in (20, 70):
        out = Image.open(exp / "inference_results" / str(age) / "group.png")
        assert out.size == photo.image.size
        changed = _changed(out, photo.image)
        assert all(changed[_inner(f)].mean() > 0.9 for f in photo.faces)
        assert not changed[_far(out.size, photo.faces)].any()
    assert main(["inference", *base, "--exp_dir", str(exp), "--faces", "1,3", "--paste_back",
                 "--face_ages", "10,90"]) == 0
    assert Image.open(exp / "inference_results" / "face_ages" / "group.png").size == photo.image.size
    bad = tmp_path / "bad"
    assert main(["inference", *base, "--exp_dir", str(bad), "--faces", "0,8", "--paste_back"]) == 1
    assert "face 8 was asked for" in capsys.readouterr().err and not (bad / "inference_results").exists()
    with pytest.raises(SystemExit):
        main(["inference", *base, "--exp_dir", str(bad), "--faces", "2,2"])
    assert "listed twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["inference", *base, "--exp_dir", str(bad), "--faces", "all", "--face_ages", "nan"])
    assert "must be a number" in capsys.readouterr().err and not bad.exists()
    assert main(["lifespan", *base, "--exp_dir", str(exp), "--faces", "all", "--target_age", "0,50",
                 "--frames_per_step", "1", "--output_size", str(S)]) == 0
    frames = np.stack(list(iio.imiter(exp / "lifespan" / "group.mp4")))
    assert frames.shape[0] == 3 and frames.shape[2] == photo.image.width // 16 * 16


# --------------------------------------------------------------------------------------------- the page


@pytest.mark.slow
@needs_group
@needs_chromium
def test_browser_everyone_in_the_picture(tiny_checkpoint, tmp_path):
    """In headless Chromium: the six-face photo, "everyone", the before/after slider of the whole photo, one face
    given its own age by clicking its thumbnail, and Full resolution of the whole photo. Screenshots go to
    $SAM_SCREENSHOT_DIR (default: a temporary folder)."""
    shots = screenshot_dir(tmp_path)
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    with open_page(demo, 1400, 1400) as page:
        page.locator("input[type=file]").first.set_input_files(str(GROUP))
        thumbs = page.locator("#face-picker button.thumbnail-item")
        thumbs.nth(5).wait_for(timeout=patient(60_000))
        assert "best first" in page.locator("#face-picker").inner_text()
        page.locator("#everyone input").check()
        view = page.locator("#group-slider img")
        view.first.wait_for(timeout=patient(60_000))
        page.wait_for_function("() => document.querySelectorAll('#group-slider img').length >= 2",
                               timeout=patient(60_000))
        info = page.locator("#group-ages")
        info.get_by_text("face 5").wait_for(timeout=patient(30_000))
        ages = re.findall(r"face (\d) → (\d+)", info.inner_text())
        assert [int(i) for i, _ in ages] == list(range(6)) and len({a for _, a in ages}) == 1  # everyone alike
        start = ages[0][1]
        page.screenshot(path=str(shots / "app-group-slider.png"), full_page=True)

        thumbs.nth(2).click()  # face 2 gets its own age
        page.locator("#group-who input[value='2']").wait_for(timeout=patient(30_000))
        page.wait_for_function("() => document.querySelector(\"#group-who input[value='2']\").checked",
                               timeout=patient(30_000))
        slider = page.locator("#target-age input[type=range]")
        box = slider.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
        page.wait_for_function("s => { const t = document.querySelector('#group-ages').innerText; "
                               "return t.includes('face 2 → ') && !t.includes('face 2 → ' + s); }", arg=start,
                               timeout=patient(60_000))
        text = info.inner_text()
        assert f"face 0 → {start}" in text and f"face 5 → {start}" in text  # the others keep theirs
        page.screenshot(path=str(shots / "app-group-own-age.png"), full_page=True)

        page.locator("#group-full-button").click()
        page.locator("#group-full-file a").first.wait_for(timeout=patient(60_000))
        href = page.locator("#group-full-file a").first.get_attribute("href")
        assert href and "group" in href
        page.locator("#group-slider").screenshot(path=str(shots / "app-group-comparison.png"))
