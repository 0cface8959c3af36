"""Faces followed over a clip: each person keeps one number from the first frame they are seen in to the last.

dlib's detector runs on key frames only (every ``key_every`` frames); between them each face is followed by placing
the 68-point shape predictor in a box carried along by the face's own landmarks. On a key frame, detections are
matched to the tracks by box overlap (IoU), then by distance for a face that was lost. A face the detector misses is
looked for again around its last place with a lower threshold; when it is really gone (covered, turned away) it is
not aged and the detector runs on every frame for a while; when it comes back within two face widths of where it
left (at any later time) it gets its old number again. Each person's landmarks go through a
:class:`~sam.video.smoothing.OneEuroFilter`; their codes and colour through :class:`~sam.video.smoothing.CodeSmoother`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from sam.faces.detect import MIN_EXTRA_FACE_SCORE, Face, box_iou, detect_faces, predict_landmarks
from sam.requests import RequestError
from sam.video.smoothing import CodeSmoother, OneEuroFilter

__all__ = ["Track", "FaceTracker"]


def _landmark_frame(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """A face's centre and size from its landmarks (the eye-mouth layout, stable under small expressions)."""
    centre = lm.mean(axis=0)
    return centre, float(np.sqrt(((lm - centre) ** 2).sum(axis=1).mean()))


@dataclass(eq=False)
class Track:
    """One person over the clip: a stable number, the current box and landmarks, and the per-person filters."""

    id: int
    box: np.ndarray  # left, top, right, bottom (source pixel edges), a detector-like box
    raw: np.ndarray  # the latest landmarks as predicted (68 x 2)
    landmark_filter: OneEuroFilter
    anchor: tuple[np.ndarray, np.ndarray, float]  # box, landmark centre and size when the box was last set
    missed: int = 0  # key frames in a row without a matching detection
    active: bool = True
    frames: int = 0  # frames this person was aged in
    smooth: np.ndarray | None = None  # the latest smoothed landmarks
    pretrained: CodeSmoother = field(default_factory=CodeSmoother)
    code: CodeSmoother = field(default_factory=CodeSmoother)
    colour: CodeSmoother = field(default_factory=CodeSmoother)
    cut: bool = False  # jumped (a cut, or back elsewhere): its next frame is a key frame for the codes
    key: Any = None  # the codes of its last key frame (kept by :class:`sam.video.keyframes.KeyFrameCoder`)

    def set_box(self, box: np.ndarray, lm: np.ndarray) -> None:
        centre, size = _landmark_frame(lm)
        self.box = np.asarray(box, dtype=np.float64)
        self.anchor = (self.box.copy(), centre, size)

    def follow(self) -> None:
        """Carry the box along with the landmarks (shift and scale since it was last set by the detector)."""
        box, c0, s0 = self.anchor
        c1, s1 = _landmark_frame(self.raw)
        k = s1 / max(s0, 1e-6)
        bc = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        half = np.array([(box[2] - box[0]) / 2, (box[3] - box[1]) / 2]) * k
        centre = c1 + (bc - c0) * k
        self.box = np.concatenate([centre - half, centre + half])


class FaceTracker:
    """Faces followed over a clip (see the module notes). ``faces="largest"`` keeps one person: the best face of
    the first key frame with a face (found again by position when lost); ``"all"`` follows everyone found."""

    def __init__(self, faces: str = "largest", key_every: int = 5, max_missed: int = 2, smooth: bool = True,
                 min_cutoff: float = 0.4, beta: float = 4.0, code_tau: float = 0.2, max_faces: int = 8):
        if faces not in ("largest", "all"):
            raise RequestError(f"faces must be 'largest' or 'all', got {faces!r}")
        self.faces = faces
        self.key_every = max(1, int(key_every))
        self.max_missed = max(0, int(max_missed))
        self.smooth = smooth
        self.min_cutoff, self.beta, self.code_tau = min_cutoff, beta, code_tau
        self.max_faces = max_faces
        self.tracks: list[Track] = []
        self.detect_seconds = 0.0
        self.landmark_seconds = 0.0
        self._since_key = 0

    def _new_track(self, face: Face) -> Track:
        tr = Track(id=len(self.tracks), box=np.asarray(face.box, dtype=np.float64), raw=face.landmarks.copy(),
                   landmark_filter=OneEuroFilter(self.min_cutoff, self.beta, 1.0),
                   anchor=(np.zeros(4), np.zeros(2), 1.0), pretrained=CodeSmoother(self.code_tau),
                   code=CodeSmoother(self.code_tau), colour=CodeSmoother(self.code_tau))
        tr.set_box(np.asarray(face.box), face.landmarks)
        self.tracks.append(tr)
        return tr

    def _match(self, found: list[Face]) -> set[int]:
        """Assign detections to tracks; returns the ids of tracks seen on this key frame."""
        seen: set[int] = set()
        boxes = [np.asarray(f.box, dtype=np.float64) for f in found]
        # 1. overlap with active tracks, best pairs first
        pairs = sorted(((box_iou(t.box, b), ti, fi) for ti, t in enumerate(self.tracks) if t.active
                        for fi, b in enumerate(boxes)), reverse=True)
        used: set[int] = set()
        for iou, ti, fi in pairs:
            if iou < 0.3 or ti in seen or fi in used:
                continue
            self._take(self.tracks[ti], found[fi], reset=False)
            seen.add(ti)
            used.add(fi)
        # 2. lost tracks (or active ones that moved fast) found again by distance, within two face sizes
        for fi, face in enumerate(found):
            if fi in used:
                continue
            c = np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
            best, best_d = None, math.inf
            for ti, t in enumerate(self.tracks):
                if ti in seen:
                    continue
                tc = np.array([(t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2])
                d = float(np.linalg.norm(c - tc)) / max(t.box[2] - t.box[0], 1.0)
                if d < best_d:
                    best, best_d = ti, d
            if best is not None and (best_d < 2.0 or self.faces == "largest"):
                self._take(self.tracks[best], face, reset=best_d > 0.5)
                seen.add(best)
                used.add(fi)
        # 3. new people
        if self.faces == "all":
            for fi, face in enumerate(found):
                if fi not in used and len(self.tracks) < self.max_faces:
                    seen.add(self._new_track(face).id)
        elif not self.tracks and found:
            seen.add(self._new_track(found[0]).id)
        return seen

    def _take(self, tr: Track, face: Face, reset: bool) -> None:
        if reset or not tr.active:
            tr.landmark_filter.reset()  # a jump (came back elsewhere): no glide from the old place
            tr.cut = True
        tr.raw = face.landmarks.copy()
        tr.set_box(np.asarray(face.box), face.landmarks)
        tr.missed = 0
        tr.active = True

    def _confirm(self, frame: Image.Image, tr: Track) -> bool:
        """Look again around a track the detector missed, with a lower threshold (a face turned or blurred for
        a moment); takes the face when found."""
        b = tr.box
        m = 0.5 * (b[2] - b[0])
        x0, y0 = max(0, int(b[0] - m)), max(0, int(b[1] - m))
        x1, y1 = min(frame.width, int(b[2] + m)), min(frame.height, int(b[3] + m))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return False
        for face in detect_faces(frame.crop((x0, y0, x1, y1)), min_score=-0.5):
            box = np.asarray(face.box) + [x0, y0, x0, y0]
            if box_iou(box, b) >= 0.3:
                lm = face.landmarks + [x0, y0]
                self._take(tr, Face(tuple(box), face.score, lm, face.detector_index), reset=False)
                return True
        return False

    def step(self, frame: Image.Image, t: float, key: bool | None = None) -> list[Track]:
        """Track the faces into ``frame`` (time ``t`` seconds); returns the people seen in it, with fresh landmarks
        (``raw``) and smoothed ones (``smooth``). A person the detector misses is looked for again around their
        last place; if not there, they are left out (not aged) but keep their number for ``max_missed`` key
        frames' time, while the detector runs on every frame."""
        if key is None:  # a key frame: every key_every-th, and every frame while a person is missing
            key = self._since_key == 0 or any(tr.active and tr.missed for tr in self.tracks)
        detected: set[int] = set()
        if key:
            self._since_key = 0
            t0 = time.perf_counter()
            found = detect_faces(frame)
            found = (found[:1] + [f for f in found[1:] if f.score >= MIN_EXTRA_FACE_SCORE])[: self.max_faces]
            detected = self._match(found)
            for tr in self.tracks:
                if tr.active and tr.id not in detected:
                    if tr.missed == 0 and self._confirm(frame, tr):
                        detected.add(tr.id)  # a doubtful detection where the face was: still there
                        continue
                    tr.missed += 1  # not seen: kept (and its number), but not aged until found again
                    if tr.missed > self.max_missed * self.key_every:
                        tr.active = False
            self.detect_seconds += time.perf_counter() - t0
        self._since_key = (self._since_key + 1) % self.key_every
        t0 = time.perf_counter()
        out = []
        w, h = frame.size
        for tr in self.tracks:
            if not tr.active or tr.missed:
                continue
            if tr.id not in detected:
                tr.follow()
                b = tr.box
                if b[2] <= 0 or b[3] <= 0 or b[0] >= w or b[1] >= h or b[2] - b[0] < 8:
                    tr.active = False  # left the picture
                    continue
                tr.raw = predict_landmarks(frame, tuple(b))
            if self.smooth:
                # beta per face size (in pixels): the same behaviour for a small face and a large one
                tr.landmark_filter.beta = self.beta / max(tr.anchor[2], 1.0)
                tr.smooth = tr.landmark_filter(t, tr.raw)
            else:
                tr.smooth = tr.raw.copy()
            out.append(tr)
        self.landmark_seconds += time.perf_counter() - t0
        return out
