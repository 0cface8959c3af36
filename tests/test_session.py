"""The face session's first look at a new photo (sam.session.photo): the best face from a quick detection for the first
preview, then the full detection for the face picker, with the numbering of faces unchanged (0 = the best)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import sam.session.photo as session_module
from sam.faces.detect import detect_faces
from sam.pipeline import AgingPipeline
from sam.session import SessionCache

ASTRONAUT = str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png")


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return AgingPipeline.from_pretrained(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="module")
def astronaut_face():
    return detect_faces(ASTRONAUT)[0]


def _recording(monkeypatch, answer=None) -> list[int]:
    """Replace the session's detector; returns the list of upsampling counts it was called with."""
    calls: list[int] = []

    def detect(img, upsample=1, **kw):
        calls.append(upsample)
        return answer(upsample) if answer else detect_faces(img, upsample, **kw)

    monkeypatch.setattr(session_module, "detect_faces", detect)
    return calls


def test_the_first_face_comes_from_a_quick_look_that_the_full_look_confirms(pipe, monkeypatch):
    calls = _recording(monkeypatch)
    cache = SessionCache(pipe)
    first = cache.session(ASTRONAUT)
    assert calls == [0]  # no upsampling: about 4x cheaper than the full look
    photo = cache.photo(ASTRONAUT)
    assert not photo.faces_known
    faces = photo.faces  # the full look (the face picker)
    assert calls == [0, 1] and faces[0] is first.face
    assert photo.best_face_confirmed()
    assert cache.session(ASTRONAUT) is first  # alignment and codes kept
    assert calls == [0, 1]


def test_a_quick_guess_that_the_full_look_overturns_is_replaced(pipe, monkeypatch, astronaut_face):
    shifted = dataclasses.replace(astronaut_face, box=tuple(np.add(astronaut_face.box, (60, 0, 60, 0))),
                                  landmarks=astronaut_face.landmarks + np.array([60.0, 0.0]), score=2.0)
    # the quick look sees only the astronaut's face; the full look ranks another face first
    _recording(monkeypatch, lambda up: [astronaut_face] if up == 0 else [shifted, astronaut_face])
    cache = SessionCache(pipe)
    guess = cache.session(ASTRONAUT)
    assert guess.face is astronaut_face
    photo = cache.photo(ASTRONAUT)
    assert photo.faces[0] is shifted and not photo.best_face_confirmed()
    best = cache.session(ASTRONAUT)
    assert best is not guess and best.face is shifted
    assert cache.session(ASTRONAUT, face_index=1).face is astronaut_face  # the quick face keeps its place


def test_a_photo_the_quick_look_finds_nothing_in_gets_the_full_look(pipe, monkeypatch, astronaut_face):
    calls = _recording(monkeypatch, lambda up: [] if up == 0 else [astronaut_face])
    s = SessionCache(pipe).session(ASTRONAUT)
    assert calls == [0, 1] and s.face is astronaut_face


def test_no_face_after_both_looks_is_said_in_words(pipe, monkeypatch):
    _recording(monkeypatch, lambda up: [])
    with pytest.raises(session_module.NoFaceError, match="no face found"):
        SessionCache(pipe).session(ASTRONAUT)
