"""The app's service: the named API and the page's work over one pipeline (:class:`AgeApp`).

One :class:`AgeApp` per server owns the model pipeline, the order of model work (its
:class:`~sam.serving.scheduler.Scheduler`, whose lock the pipeline takes for every pass), the photos' sessions
(:class:`~sam.session.SessionCache`), the background warm-ups, and the results folder (swept hourly, removed when the
server stops). Its public methods are the HTTP API's endpoints (``/age``, ``/mix``, ``/lifespan``, ``/video``): their
signatures are the one declaration of each endpoint's parameters and defaults (the page's API panel and the docs'
table read them). Every value is checked by :mod:`sam.requests`; every failure is an exception in words.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sam.ages import short_text, to_age
from sam.network.checkpoint import CheckpointError
from sam.pipeline import AgingPipeline
from sam.requests import RequestError, is_best, read_flag, read_number, read_size
from sam.serving import zerogpu
from sam.serving.scheduler import BACKGROUND, Scheduler
from sam.session import (
    PREVIEW_SIZE,
    Background,
    FaceSession,
    GroupSession,
    SessionCache,
    lifespan_frames,
    warm_up,
)
from sam.video.clip import ClipResult, age_clip
from sam.video.lifespan import LifespanResult
from sam.video.probe import check_header, check_span, probe_clip
from web import glue
from web.jobs import Jobs
from web.limits import Limits
from web.messages import ModelNotLoaded, WithoutRetryLines
from web.uploads import clip_path, readable_upload

__all__ = ["AgeApp"]

log = logging.getLogger("sam.app")


def _warm_up(pipe: AgingPipeline, measures: Any, should_stop: Callable[[], bool]) -> None:
    """The start-up warm-up (:func:`sam.session.background.warm_up`), after importing matplotlib: Gradio imports it on
    its event loop at the first event (to choose a plotting backend), which held the first visitor's upload up by
    ~0.3 s."""
    with contextlib.suppress(ImportError):
        import matplotlib.pyplot  # noqa: F401
    warm_up(pipe, measures, should_stop)


class AgeApp:
    """The page's and the API's work over one pipeline; per-photo state lives in :class:`SessionCache`."""

    def __init__(self, pipe: AgingPipeline | None, problem: str = "", workdir: str | os.PathLike | None = None,
                 warm: bool = False, limits: Limits | None = None, scheduler: Scheduler | None = None):
        self.limits = limits or Limits()
        self.scheduler = scheduler or self.limits.scheduler()
        if pipe is not None:
            pipe.lock = self.scheduler.lock  # every network pass in this app's order (sam.serving.scheduler)
        self.pipe = pipe
        self.problem = problem
        self.jobs = Jobs(self.scheduler)
        self.background = Background(lambda: self.scheduler.priority(BACKGROUND), self.scheduler.stopping.is_set)
        self.sessions = SessionCache(pipe, self.limits.cache_entries, background=self.background)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sam-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        self._closed = threading.Event()
        self.demo: gr.Blocks | None = None  # the page, once built (for cleaning its cache)
        self.own_dirs: list[Path] = []  # removed with the results when the server stops (e.g. its upload folder)
        threading.Thread(target=self._sweep_loop, name="sam-results-sweep", daemon=True).start()
        if warm and pipe is not None:  # the first visitor should not pay for first-call set-up costs
            self.background.start("sam-warm-up", lambda stop: _warm_up(pipe, self.sessions.measures, stop),
                                  "warm-up skipped")

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, device: str | None = None,
             problem: str | None = None, int8_style_heads: bool = False, download: bool = False,
             precision: str = "auto", warm: bool = False, limits: Limits | None = None) -> AgeApp:
        """The app over the checkpoint's pipeline (or, when it cannot be loaded, a page that says so). ``warm``: run
        every network once in the background at start, so the first visitor does not pay first-call costs."""
        limits = limits or Limits()
        if problem:
            return cls(None, f"The model is not loaded. {problem}", limits=limits)
        scheduler = limits.scheduler()
        try:
            with contextlib.redirect_stderr(WithoutRetryLines(sys.stderr)):  # a failed download: one log line
                pipe = AgingPipeline.from_pretrained(checkpoint, download=download,
                                                     device=device or zerogpu.default_device(),
                                                     int8_style_heads=int8_style_heads, precision=precision,
                                                     lock=scheduler.lock, **zerogpu.pipeline_options())
            log.info("precision: %s (%s)", pipe.precision.name, pipe.precision.reason)
        except CheckpointError as exc:  # the message says what to do (missing file: how to get it)
            return cls(None, f"The model is not loaded: {exc}", limits=limits)
        except ValueError as exc:  # e.g. int8 style heads asked for on a GPU
            return cls(None, f"The model is not loaded: {exc}.", limits=limits)
        return cls(pipe, warm=warm, limits=limits, scheduler=scheduler)

    # ------------------------------------------------------------------------------------------ life

    def cleanup(self) -> None:
        """Remove this app's results and the uploads Gradio cached for its page (when the server stops)."""
        self._closed.set()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.demo is not None:
            glue.delete_cached_files(self.demo)
        for folder in self.own_dirs:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self, background_wait_s: float = 5.0) -> None:
        """Stop the background work (a thread killed inside a torch call at interpreter exit aborts the process)
        and remove the results (at exit, and after :meth:`shutdown`)."""
        self.scheduler.stop()
        self.background.stop(timeout=background_wait_s)
        self.cleanup()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop like a hosted server is stopped (SIGTERM): every running job ends at its next frame (waiting ones at
        once) and removes its partial files; then the server closes and results and uploads are deleted."""
        timeout = self.limits.stop_wait_s if timeout is None else timeout
        self.scheduler.stop()
        if not self.scheduler.running.wait_idle(timeout):
            log.warning("%d job(s) still running after %.0f s; stopping anyway", self.scheduler.running.count,
                        timeout)
        try:
            if self.demo is not None:
                self.demo.close()  # also calls cleanup (see web.page)
        finally:
            self.close()

    def sweep(self, max_age_s: float | None = None) -> int:
        """Delete results older than ``max_age_s`` (default: the limits' hour); how many were deleted."""
        cutoff = time.time() - (self.limits.output_max_age_s if max_age_s is None else max_age_s)
        gone = 0
        for old in self.workdir.glob("sam-*"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
                    gone += 1
            except OSError:
                pass
        return gone

    def _sweep_loop(self) -> None:
        while not self._closed.wait(self.limits.sweep_every_s):
            self.sweep()

    # ------------------------------------------------------------------------------------------ helpers

    @property
    def full_size(self) -> int:
        return self.pipe.output_size if self.pipe else 1024

    def _require_model(self) -> None:
        if self.pipe is None:
            raise ModelNotLoaded(self.problem_for_people(), print_exception=False)

    def session(self, image: Any, already_aligned: Any = False, face_index: Any = 0,
                what: str = "photo") -> FaceSession:
        """One face of a photo (:meth:`SessionCache.session`)."""
        readable_upload(image)
        self._require_model()
        return self.sessions.session(image, already_aligned, face_index, what)

    def group(self, image: Any, faces: Any, already_aligned: Any = False, face_index: Any = 0) -> GroupSession:
        """Several faces of a photo, aged together (:meth:`SessionCache.group`)."""
        readable_upload(image)
        self._require_model()
        if read_flag(already_aligned, "already_aligned"):
            raise RequestError("an aligned face crop has one face: several faces need a photo with \"already "
                               "aligned\" off")
        return self.sessions.group(image, faces, face_index)

    def problem_for_people(self) -> str:
        """The model-missing message for API clients, without server paths (the operator's details are in the log;
        the page shows :data:`web.messages.SETUP_HELP`)."""
        return "The model is not loaded on this server, so photos cannot be aged yet."

    def new_path(self, suffix: str) -> Path:
        return self.workdir / f"sam-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}{suffix}"

    # ------------------------------------------------------------------------------------------ the named API

    def age(self, image: Any, target_age: Any = 60, size: Any = None, already_aligned: Any = False,
            face_index: Any = 0, paste_back: Any = False, faces: Any = "best", ages: Any = "") -> Image.Image:
        """Show the person in a photo at another age: the aged face, or the whole photo with the face (or several
        faces) aged and put back.

        Args:
            image: a photo with a face (JPEG, PNG or WebP; an aligned face crop with already_aligned)
            target_age: the age to show, 0 to 100 (rounded to whole years)
            size: the side of the aged face in pixels, 8 to 1024 (default: 1024, the model's full resolution)
            already_aligned: true when the image is already an FFHQ-aligned face crop (no face detection)
            face_index: which face of the photo, 0 being the best (largest, clearest) face
            paste_back: true for the whole photo with the aged face put back, false for the face alone
            faces: "best" for the one face of face_index; "all" for every face; or face numbers such as "1,3": the
                whole photo with each of those faces aged
            ages: with faces, one age per listed face ("60,25"); blank entries take target_age

        Returns:
            the aged image (PNG)
        """
        if is_best(faces):
            if ages not in (None, "") and not (isinstance(ages, (list, tuple)) and not ages):
                raise RequestError("per-face ages need faces: \"all\" or face numbers such as \"1,3\"")
            s = self.session(image, already_aligned, face_index)
            return s.render(to_age(target_age), size=read_size(size, s.pipe.output_size),
                            paste=read_flag(paste_back, "paste_back"))
        g = self.group(image, faces, already_aligned, face_index)
        return g.render(g.ages(target_age, ages), size=read_size(size, g.pipe.output_size))

    def mix(self, image: Any, reference: Any, target_age: Any = 60, latent_mask: Any = "fine", alpha: Any = 1.0,
            size: Any = None, already_aligned: Any = False, reference_aligned: Any = False) -> Image.Image:
        """Show the person at another age with the look of a second face mixed in (style mixing: colour and lighting,
        hair and texture, or face shape).

        Args:
            image: a photo with the face to age
            reference: a photo of the face whose look to take
            target_age: the age to show, 0 to 100
            latent_mask: what to take: "fine" (colour and lighting), "middle" (hair and texture), "coarse" (face
                shape and pose), "all", or style layers such as "8-17" or "0,2,5"
            alpha: how much of the reference's look, 0 to 1
            size: the side of the result in pixels, 8 to 1024 (default 1024)
            already_aligned: true when image is already an FFHQ-aligned face crop
            reference_aligned: true when reference is already an FFHQ-aligned face crop

        Returns:
            the aged, mixed face (PNG)
        """
        s = self.session(image, already_aligned, 0)
        if reference is None or (isinstance(reference, str) and not reference.strip()):
            raise RequestError("add a reference photo for style mixing")
        ref = self.session(reference, reference_aligned, 0, what="reference photo")
        return s.mix(ref, target_age, latent_mask, alpha, size=read_size(size, s.pipe.output_size))[0]

    def lifespan(self, image: Any, start_age: Any = 0, end_age: Any = 100, frames_between: Any = 10, fps: Any = 20,
                 size: Any = 256, boomerang: Any = False, already_aligned: Any = False, face_index: Any = 0,
                 faces: Any = "best", *, progress: Callable | None = None, should_stop: Callable | None = None,
                 owner: str | None = None, address: str | None = None) -> str:
        """A video of the person growing older (or younger) from start_age to end_age; with faces, the whole photo
        with every chosen face aging together.

        Args:
            image: a photo with a face
            start_age: the first age, 0 to 100
            end_age: the last age, 0 to 100
            frames_between: frames between two key ages (key ages every 10 years), 0 to 60
            fps: frames per second, 1 to 60
            size: the side of the face in pixels, 8 to 1024
            boomerang: true to play forward, then back
            already_aligned: true when image is already an FFHQ-aligned face crop
            face_index: which face of the photo, 0 being the best face
            faces: "best" (the face of face_index), "all", or face numbers such as "1,3"

        Returns:
            the video (H.264 MP4)
        """
        return str(self.lifespan_job(image, start_age, end_age, frames_between, fps, size, boomerang,
                                     already_aligned=already_aligned, face_index=face_index, faces=faces,
                                     progress=progress, should_stop=should_stop, owner=owner, address=address).mp4)

    def video(self, clip: Any, target_age: Any = 70, faces: Any = "largest", output_size: Any = 256,
              start: Any = 0, end: Any = 0, preview: Any = False, *, key_frames: Any = "auto",
              progress: Callable | None = None, should_stop: Callable | None = None, owner: str | None = None,
              address: str | None = None) -> str:
        """Age the people in a video clip: faces followed from frame to frame, steady, the sound kept
        (:mod:`sam.video.clip`).

        Args:
            clip: a video (MP4, MOV, M4V, WebM, MKV, AVI or GIF) within the server's limits of length and size
            target_age: the age to show, 0 to 100
            faces: "largest" (the main face) or "all"
            output_size: the side the face is rendered at before it is put back: 256 or 1024 pixels
            start: age from this second on (earlier frames are kept as they are)
            end: age until this second; 0 for the end of the clip
            preview: true for a quick pass at 480 pixels

        Returns:
            the aged video (H.264 MP4)
        """
        return str(self.age_video(clip, target_age, faces, output_size, start, end, preview, key_frames,
                                  progress=progress, should_stop=should_stop, owner=owner, address=address).path)

    # ------------------------------------------------------------------------------------------ the long jobs

    def lifespan_job(self, image: Any, start_age: Any = 0, end_age: Any = 100, frames_between: Any = 10,
                     fps: Any = 20, size: Any = 256, boomerang: Any = False, label: bool = False,
                     gif: bool = False, already_aligned: Any = False, face_index: Any = 0, faces: Any = "best", *,
                     progress: Callable | None = None, should_stop: Callable | None = None,
                     owner: str | None = None, address: str | None = None) -> LifespanResult:
        """The lifespan job, after its turn in the long-job line: one face, or with ``faces`` (``"all"``, ``"1,3"``)
        the whole photo with those faces aging together."""
        one = is_best(faces)
        whole = self.session(image, already_aligned, face_index) if one else \
            self.group(image, faces, already_aligned, face_index)
        _, between, frames = lifespan_frames(start_age, end_age, frames_between)
        side = read_size(size, whole.pipe.output_size, PREVIEW_SIZE)
        self.limits.check_lifespan(1 if one else len(whole.sessions), frames, side, between)
        flag = read_flag(boomerang, "boomerang")
        mp4 = self.new_path(".mp4")
        kind = "lifespan" if one else "group lifespan"  # each kind its own pace (seconds per frame)
        with self.jobs.long_turn(owner, kind, frames, should_stop, progress, address) as step:
            step(0, frames, "encoding the key ages (the frames follow)…")  # (a few seconds before the first frame)
            return whole.lifespan(mp4, start_age, end_age, between, fps, size, flag, label,
                                  gif_path=mp4.with_suffix(".gif") if gif else None, progress=step,
                                  should_stop=should_stop)

    def age_video(self, clip: Any, target_age: Any = 70, faces: Any = "largest", output_size: Any = 256,
                  start: Any = 0, end: Any = 0, preview: Any = False, key_frames: Any = "auto", *,
                  progress: Callable | None = None, should_stop: Callable | None = None,
                  owner: str | None = None, address: str | None = None) -> ClipResult:
        """The video job. Every value and the clip's header are checked first, in milliseconds (:attr:`limits`:
        size, length, rate, frame size); the frames are counted by decoding in the job's own turn in the line of
        long jobs (one at a time, in arrival order, at most :attr:`Limits.max_videos_per_address` per address), then
        the people are aged. Frames are worked on with the long side at most ``clip_max_side``."""
        limits = self.limits
        path = clip_path(clip, limits.clip_max_mb)
        self._require_model()
        age = to_age(target_age)
        who = str(faces or "largest").strip().lower()
        if who not in ("largest", "all"):
            raise RequestError(f"faces must be \"largest\" or \"all\", got {short_text(faces, 20)}")
        side = read_number(output_size, "output size", 8, 1024, integer=True, default=256)
        first = read_number(start, "start", 0, limits.clip_max_seconds, default=0)
        last = read_number(end, "end", 0, limits.clip_max_seconds, default=0) or None  # 0: to the end
        quick = read_flag(preview, "preview")
        keys = "auto" if key_frames in (None, "") or str(key_frames).strip().lower() == "auto" else read_number(
            key_frames, "key frames", 1, 100, integer=True, default=1)
        header = check_header(path, limits.clip_limits())
        if header.duration:
            check_span(first, last, header.duration)  # a span outside the clip is refused before the wait
        kind = "video" if keys == "auto" else f"video, faces encoded every {keys} frames"  # its own pace
        units = header.frames or limits.clip_max_frames
        with self.jobs.long_turn(owner, kind, units, should_stop, progress, address) as step:
            info = probe_clip(path, limits=limits.clip_limits(), should_stop=should_stop)  # decodes: in its turn
            check_span(first, last, info.duration)
            return age_clip(self.pipe, info, self.new_path(".mp4"), age, faces=who, output_size=side, start=first,
                            end=last, preview=quick, max_side=limits.clip_max_side, key_frames=keys, progress=step,
                            should_stop=should_stop)
