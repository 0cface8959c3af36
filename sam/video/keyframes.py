"""The key-frame coder of the video job: the codes of every face in every frame from encoder passes on a few frames.

On a key frame both encoders run on a person's aligned face; between key frames the codes are interpolated in time
and smoothed (:class:`KeyFrameCoder`). ``key_frames="auto"`` picks the key frames from how much each aligned face
changed (its :func:`signature`), at least every :data:`KEY_MAX_SECONDS`. Also here: the records a frame carries
through the job (:class:`TrackedFrame`, :class:`TrackedFace`), from tracking to the code each face is rendered from.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sam.faces.align import AlignedFace
from sam.faces.paste import face_weights
from sam.pipeline import AgingPipeline
from sam.requests import RequestError
from sam.video.tracking import Track

__all__ = ["KeyFrameCoder", "TrackedFace", "TrackedFrame", "signature", "KEY_MAX_SECONDS", "KEY_CHANGE",
           "KEY_STILL_TAU"]

KEY_MAX_SECONDS = 0.4  # ``key_frames="auto"``: the longest gap between key frames (twice the codes' 0.2 s smoothing)
KEY_CHANGE = 4.0  # ``auto``: how much the aligned face may change (mean grey levels, 32 px) before a new key frame
KEY_STILL_TAU = 0.6  # ``auto``: a still face's key codes are averaged over time with this time constant (seconds)
_SIG_SIDE = 32
_SIG_WEIGHTS = face_weights(_SIG_SIDE) / face_weights(_SIG_SIDE).mean()


def signature(image: Image.Image) -> np.ndarray:
    """A small grey copy of an aligned face, weighted to its centre (the face, not the background at the crop's
    edges): what its key-frame change is measured on."""
    small = image.convert("L").resize((_SIG_SIDE, _SIG_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32) * _SIG_WEIGHTS.astype(np.float32)


@dataclass
class _Key:
    """A person's codes on their last key frame: the frozen encoder's (as computed) and the SAM code's residual
    (the SAM code less the smoothed frozen code and ``latent_avg``), the two things interpolated between keys."""

    t: float
    pre: torch.Tensor
    residual: torch.Tensor
    sig: np.ndarray


@dataclass(eq=False)
class TrackedFace:
    """One person in one frame, from tracking and alignment to the code it is rendered from."""

    track: Track
    aligned: AlignedFace
    sig: np.ndarray
    cut: bool  # the track jumped here: a key frame
    raw: np.ndarray
    smooth: np.ndarray
    box: np.ndarray
    pre: torch.Tensor | None = None  # the smoothed frozen code
    code: torch.Tensor | None = None  # the smoothed W+ code rendered
    key: bool = False  # went through the encoders

    @property
    def side(self) -> float:
        """The face's side in the frame (pixels): the aligned crop's size mapped back."""
        m = self.aligned.matrix
        return float(self.aligned.output_size * math.sqrt(abs(np.linalg.det(m[:, :2]))))


@dataclass(eq=False)
class TrackedFrame:
    """One decoded frame with the people tracked in it (``faces``; none outside the aged span)."""

    index: int
    t: float
    image: Image.Image
    faces: list[TrackedFace]
    in_span: bool


class KeyFrameCoder:
    """The codes of every face in every frame from encoder passes on key frames only.

    On a key frame both encoders run (the frozen one, then SAM's on the smoothed frozen code); between key frames
    the frozen code and the SAM residual are interpolated linearly in time, then smoothed per frame exactly as
    every-frame codes would be (:class:`~sam.video.smoothing.CodeSmoother`), so with ``key_frames=1`` this is
    every-frame encoding.
    ``key_frames="auto"``: a key frame when the aligned face has changed by :data:`KEY_CHANGE` since the person's
    last one (a head turn, an open mouth, a cut), for a new person or one who jumped, and at least every
    :data:`KEY_MAX_SECONDS`; ``N``: every N frames (and for new people). Frames are held until the next key frame
    (at most the longest gap) and given back in order with each face's ``code`` set.
    """

    def __init__(self, pipe: AgingPipeline, age: int, fps: float, key_frames: int | str | None = "auto",
                 fast: bool = True, batch: int = 1):
        auto = key_frames is None or str(key_frames).strip().lower() == "auto"
        if not auto:
            try:
                n = int(key_frames)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                n = 0
            if isinstance(key_frames, float) and key_frames != n or n < 1:
                raise RequestError(f"key frames must be 'auto' or a whole number >= 1, got {str(key_frames)[:20]!r}")
        self.max_gap = max(1, round(KEY_MAX_SECONDS * fps)) if auto else n
        self.change = KEY_CHANGE if auto else math.inf
        self.pipe, self.age, self.fast, self.batch = pipe, age, fast, max(1, int(batch))
        self.held: list[TrackedFrame] = []
        self.key_faces = 0  # faces encoded
        self.key_frames = 0
        self.seconds = 0.0

    def _is_key(self, fr: TrackedFrame) -> bool:
        if len(self.held) + 1 >= self.max_gap:
            return True
        return any(f.cut or f.track.key is None or float(np.abs(f.sig - f.track.key.sig).mean()) >= self.change
                   for f in fr.faces)

    def push(self, fr: TrackedFrame) -> list[TrackedFrame]:
        """Take the next frame; returns the frames whose codes are now known (in order, maybe none)."""
        if not fr.faces and not self.held:
            return [fr]
        key = self._is_key(fr)
        self.held.append(fr)
        return self._resolve() if key else []

    def flush(self) -> list[TrackedFrame]:
        """The end of the clip: the last held frame becomes a key frame."""
        return self._resolve() if self.held else []

    def _still_weight(self, f: TrackedFace, t: float) -> float:
        """How much of a key frame's own codes to take (1: all). A face that has not changed by :data:`KEY_CHANGE`
        since its last key frame (``auto`` only): ``1 - exp(-gap / KEY_STILL_TAU)``, the rest from the last key's
        (averaged) codes. Its codes change only by the encoders' jitter then, which a key frame every 0.4 s,
        interpolated, would otherwise show as slow flicker; a change, a cut or a new person takes the codes whole."""
        key = f.track.key
        if not math.isfinite(self.change) or KEY_STILL_TAU <= 0 or key is None or f.cut or t <= key.t:
            return 1.0
        if float(np.abs(f.sig - key.sig).mean()) >= self.change:
            return 1.0
        return 1.0 - math.exp(-(t - key.t) / KEY_STILL_TAU)

    @staticmethod
    def _lerp(left: torch.Tensor, t0: float, right: torch.Tensor | None, t1: float, t: float) -> torch.Tensor:
        if right is None or t1 <= t0:
            return left
        return torch.lerp(left, right, (t - t0) / (t1 - t0))

    @torch.inference_mode()
    def _resolve(self) -> list[TrackedFrame]:
        frames, self.held = self.held, []
        last = frames[-1]
        t0 = time.perf_counter()
        pipe = self.pipe
        images = [f.aligned.image for f in last.faces]
        pre = pipe.encode_frames(images, batch=self.batch)
        weights = [self._still_weight(f, last.t) for f in last.faces]
        for i, f in enumerate(last.faces):  # a still face: its key frozen code averaged with the previous key's
            if weights[i] < 1.0:
                pre[i : i + 1] = torch.lerp(f.track.key.pre, pre[i : i + 1], weights[i])
        ends: dict[int, int] = {id(f.track): i for i, f in enumerate(last.faces)}
        # Two passes over the held frames, not one: the key frame's SAM codes (codes_at) need its faces' smoothed
        # frozen codes, which come last in the first pass (each smoother takes its frames in time order).
        for fr in frames:  # the frozen codes, interpolated, then smoothed in time order
            for f in fr.faces:
                tr = f.track
                i = ends.get(id(tr))
                if fr is last:
                    raw = pre[i : i + 1]
                else:
                    raw = self._lerp(tr.key.pre, tr.key.t, None if i is None else pre[i : i + 1], last.t, fr.t)
                f.pre = tr.pretrained(fr.t, raw)
        full = pipe.codes_at(images, torch.cat([f.pre for f in last.faces]) if images else pre, self.age,
                             fast=self.fast, batch=self.batch)
        avg = pipe.model.latent_avg
        residual = [full[i : i + 1] - f.pre - avg for i, f in enumerate(last.faces)]
        for i, f in enumerate(last.faces):  # a still face: its key residual averaged with the previous key's
            if weights[i] < 1.0:
                residual[i] = torch.lerp(f.track.key.residual, residual[i], weights[i])
                full[i : i + 1] = residual[i] + f.pre + avg
        for fr in frames:  # the SAM codes: the residual interpolated, then smoothed
            for f in fr.faces:
                tr = f.track
                i = ends.get(id(tr))
                if fr is last:
                    x = full[i : i + 1]
                else:
                    r = self._lerp(tr.key.residual, tr.key.t, None if i is None else residual[i], last.t, fr.t)
                    x = r + f.pre + avg
                f.code = tr.code(fr.t, x)
        for i, f in enumerate(last.faces):
            f.key = True
            f.track.key = _Key(t=last.t, pre=pre[i : i + 1], residual=residual[i], sig=f.sig)
        self.key_faces += len(images)
        self.key_frames += bool(images)
        self.seconds += time.perf_counter() - t0
        return frames
