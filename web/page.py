"""The page: its panels in their places (:mod:`web.panels`) and every event wired to its handler, in one place.

Quick work (sliders, face picks, full-resolution renders, mixing) and long work (videos, the ages strip) run in two
Gradio concurrency groups; both only start events: which network pass runs next is decided by the app's scheduler
(interactive first; one video at a time, in arrival order: :mod:`sam.serving.scheduler`). Each panel's failures go to
its own status line.
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from sam.requests import RequestError
from sam.serving.scheduler import LONG
from web import glue
from web.endpoints import GROWN_ENDPOINTS
from web.jobs import file_busy, file_hidden
from web.latest import Latest
from web.messages import BUSY_MESSAGE, NOT_UPLOADED, PRIVACY, SETUP_HELP, log, readable
from web.panels import ApiPanel, GroupPanel, LifespanPanel, MixingPanel, PhotoPanel, StripPanel, VideoPanel
from web.service import AgeApp
from web.visitors import address_of

__all__ = ["Page", "build_demo"]

HIDDEN = {"api_visibility": "undocumented"}  # the page's own events: not part of the named API


def build_demo(checkpoint: str | os.PathLike | None = None, device: str | None = None, *,
               problem: str | None = None, app: AgeApp | None = None, int8_style_heads: bool = False,
               download: bool = False, precision: str = "auto", warm: bool = False) -> gr.Blocks:
    """The Blocks page (:class:`Page`). Loads the model from ``checkpoint`` (downloading it first only with
    ``download``, as the app's start does); without it the page still loads and says so (the details go to the
    log). ``warm``: see :meth:`AgeApp.load`."""
    app = app or AgeApp.load(checkpoint, device, problem, int8_style_heads=int8_style_heads, download=download,
                             precision=precision, warm=warm)
    if app.problem:
        log.warning("%s", app.problem)
    return Page(app).build()


class Page:
    """The page over one :class:`AgeApp`: the panels (``photo``, ``group``, ``strip``, ``mixing``, ``lifespan``,
    ``video``, ``api``), each building its components and holding its handlers, and :meth:`wire`."""

    def __init__(self, app: AgeApp):
        self.app = app
        self.n_styles = app.pipe.n_styles if app.pipe else 18
        self.full = app.full_size
        self.full_label = f"Full resolution ({self.full} px)"
        limits = app.limits
        self.quick = {"concurrency_limit": limits.quick_concurrency, "concurrency_id": "quick"}
        self.slow = {"concurrency_limit": limits.long_concurrency, "concurrency_id": "long"}
        self.hidden = HIDDEN
        self.latest = Latest(lambda: getattr(glue.current_request(), "session_hash", None))  # what is still wanted
        self.photo = PhotoPanel(self)
        self.group = GroupPanel(self)
        self.strip = StripPanel(self)
        self.mixing = MixingPanel(self)
        self.lifespan = LifespanPanel(self)
        self.video = VideoPanel(self)
        self.api = ApiPanel(self)

    @property
    def panels(self) -> list[Any]:
        return [self.photo, self.group, self.strip, self.mixing, self.lifespan, self.video, self.api]

    def build(self) -> gr.Blocks:
        app = self.app
        max_age = app.limits.output_max_age_s
        with gr.Blocks(title="SAM age transformation", delete_cache=(max_age, max_age)) as demo:
            demo.sam_app = app  # for tests and embedding
            demo.sam_page = self
            app.demo = demo
            gr.Markdown("# SAM: see a face at any age\nDrop a photo, move the slider. Re-implementation of *Only a "
                        f"Matter of Style* (Alaluf et al., SIGGRAPH 2021). {PRIVACY}")
            if app.problem:
                gr.Markdown(SETUP_HELP, elem_id="weights-problem")
            self.photo.build()
            self.group.build()
            with gr.Tabs(overflow_behavior="wrap", elem_id="tabs"):  # on a phone every tab stays a button
                with gr.Tab("Ages side by side"):
                    self.strip.build()
                with gr.Tab("Reference style mixing"):
                    self.mixing.build()
                with gr.Tab("Lifespan video"):
                    self.lifespan.build()
                with gr.Tab("Video"):
                    self.video.build()
            self.wire()
            self.api.build()
        close = demo.close

        def close_and_clean(*args: Any, **kwargs: Any) -> None:
            try:
                close(*args, **kwargs)
            finally:
                app.cleanup()

        demo.close = close_and_clean
        glue.on_file_outside_uploads(demo, _refuse_outside_uploads)  # a sentence, not an empty error and a traceback
        glue.default_missing_inputs(demo, GROWN_ENDPOINTS)  # older raw-HTTP clients get the new inputs' defaults
        return demo

    # ------------------------------------------------------------------------------------------ the wiring

    def wire(self) -> None:
        """Every page event (undocumented endpoints; the named API is :class:`~web.panels.api.ApiPanel`). Each
        handler that takes the photo runs through :meth:`Latest.only_fresh <web.latest.Latest.only_fresh>`: an answer
        for an older photo, or for an older choice of the same face or group, never reaches the page."""
        self._wire_photo()
        self._wire_group()
        self._wire_tabs()

    def _wire_photo(self) -> None:
        p, stream, job, quick, fresh = self.photo, self.app.jobs.stream, self.app.jobs.job, self.quick, self.latest
        face = {c: "face" for c in (p.aligned_view, p.result, p.input_info, p.result_info, p.full_file, p.full_image,
                                    p.age, p.face_index)}
        face_outputs = {p.aligned_view, p.result, p.input_info, p.result_info, p.full_file, p.full_image, p.age,
                        p.status}
        photo_in = [p.photo, p.already, p.age, p.paste]
        s, m, v = self.strip, self.mixing, self.lifespan
        for trigger in (p.photo.change, p.already.change):
            trigger(self.on_new_photo, [p.photo, p.already],
                    {s.strip, s.strip_info, s.strip_status, m.mixed_out, m.plain_out, m.mixed_info, m.plain_info,
                     m.mix_status, v.video, v.v_files, v.v_status}, queue=False, **HIDDEN)
            trigger(stream(fresh.only_fresh(p.on_photo, p.status, face), p.status), photo_in,
                    {p.picker, p.face_index, *face_outputs}, **quick, **HIDDEN,
                    show_progress_on=[p.aligned_view, p.result])
        p.picker.select(stream(fresh.only_fresh(p.on_pick, p.status, face, starts=("face",)), p.status),
                        [*photo_in, p.face_index], {p.face_index, *face_outputs}, **quick, **HIDDEN,
                        show_progress_on=[p.aligned_view, p.result])
        sel = [p.photo, p.age, p.already, p.face_index, p.paste]
        preview_outputs = {p.result, p.result_info, p.full_file, p.full_image, p.status}
        on_age = stream(fresh.only_fresh(p.on_age, p.status, face, starts=("face",)), p.status)
        p.age.release(on_age, [*sel, p.chosen], preview_outputs, trigger_mode="always_last", show_progress="minimal",
                      **quick, **HIDDEN)
        p.paste.change(on_age, [*sel, p.chosen], preview_outputs, show_progress="minimal", **quick, **HIDDEN)
        p.paste.change(p.full_button, [p.paste, p.already], p.full_btn, queue=False, **HIDDEN)
        (p.full_btn.click(p.full_busy, None, {p.full_btn, p.full_file}, queue=False, **HIDDEN)
         .then(job(fresh.only_fresh(p.on_full, p.status, said=p.status), page=p.status, desc="rendering",
                   hide_on_failure=[p.full_file]), sel, {p.full_file, p.full_image, p.status}, **quick, **HIDDEN,
               show_progress_on=[p.full_file])
         .then(p.full_button, [p.paste, p.already], p.full_btn, queue=False, **HIDDEN))

    def on_new_photo(self, image: Any, aligned: bool) -> dict:
        """A new photo (not the browser's repeat of its event): the results of the previous one go (the ages strip,
        style mixing, the lifespan video); answers still coming for it are dropped (:class:`~web.latest.Latest`)."""
        s, m, v = self.strip, self.mixing, self.lifespan
        if not self.latest.photo_event("on_new_photo", image, bool(aligned)):
            return {s.strip_status: gr.skip()}
        return {s.strip: None, s.strip_info: "", s.strip_status: "", m.mixed_out: None, m.plain_out: None,
                m.mixed_info: "", m.plain_info: "", m.mix_status: "", v.video: None, v.v_files: file_hidden(),
                v.v_status: ""}

    def _wire_group(self) -> None:
        """Several faces: previews and Full resolution are interactive work, like the single face's."""
        p, g, stream, job, quick = self.photo, self.group, self.app.jobs.stream, self.app.jobs.job, self.quick
        fresh = self.latest
        group_out = {g.group_box, g.group_ages, g.g_who, g.g_info, g.g_view, g.g_full_file, g.g_full_image,
                     g.g_status}
        group = {c: "group" for c in (*group_out, p.chosen)}
        for trigger in (p.photo.change, p.already.change):
            trigger(fresh.only_fresh(g.on_group_photo, g.g_status), [p.photo, p.already],
                    {p.group_pick, p.chosen, p.everyone, *group_out}, **quick, **HIDDEN)
        p.everyone.input(fresh.only_fresh(g.on_everyone, p.chosen, group, starts=("group",)), [p.photo, p.everyone],
                         p.chosen, **quick, **HIDDEN)
        group_in = [p.photo, p.chosen, p.age, g.group_ages, g.g_who]
        p.chosen.change(stream(fresh.only_fresh(g.on_chosen, g.g_status, group, starts=("group",)), g.g_status),
                        group_in, group_out, trigger_mode="always_last", **quick, **HIDDEN,
                        show_progress_on=[g.g_view])
        p.picker.select(g.on_group_pick, p.chosen, g.g_who, queue=False, **HIDDEN)
        p.age.release(stream(fresh.only_fresh(g.on_group_age, g.g_status, group, starts=("group",)), g.g_status),
                      group_in, group_out, trigger_mode="always_last", show_progress="minimal", **quick, **HIDDEN)
        (g.g_full_btn.click(file_busy, None, g.g_full_file, queue=False, **HIDDEN)
         .then(job(fresh.only_fresh(g.on_group_full, g.g_status, said=g.g_status), page=g.g_status,
                   desc="rendering every face", unit="steps", hide_on_failure=[g.g_full_file]),
               [p.photo, p.chosen, g.group_ages], {g.g_full_file, g.g_full_image, g.g_status}, **quick, **HIDDEN,
               show_progress_on=[g.g_full_file]))

    def _wire_tabs(self) -> None:
        """The ages strip, style mixing, and the two kinds of video (the button off and Cancel on while one
        renders)."""
        p, s, m, v, c = self.photo, self.strip, self.mixing, self.lifespan, self.video
        job, quick, slow, fresh = self.app.jobs.job, self.quick, self.slow, self.latest
        s.strip_btn.click(job(fresh.only_fresh(s.on_strip, s.strip_status, said=s.strip_status), page=s.strip_status,
                              desc="rendering ages", level=LONG),
                          [p.photo, s.strip_ages, p.already, p.face_index], {s.strip, s.strip_info, s.strip_status},
                          **slow, **HIDDEN, show_progress_on=[s.strip])
        m.preset.change(m.on_preset, m.preset, m.custom, queue=False, **HIDDEN)
        m.mix_btn.click(job(fresh.only_fresh(m.on_mix, m.mix_status, said=m.mix_status), page=m.mix_status,
                            desc="mixing"),
                        [p.photo, m.reference, p.age, m.preset, m.custom, m.alpha, p.already, p.face_index,
                         m.ref_aligned], {m.mixed_out, m.plain_out, m.mixed_info, m.plain_info, m.mix_status},
                        **quick, **HIDDEN, show_progress_on=[m.mixed_out])
        lifespan = [v.v_btn, v.v_cancel]
        v_event = (v.v_btn.click(video_running, None, lifespan, queue=False, **HIDDEN)
                   .then(job(fresh.only_fresh(v.on_video, v.v_status, said=v.v_status), page=v.v_status,
                             desc="rendering frames", unit="frames", level=LONG),
                         [p.photo, v.v_start, v.v_end, v.v_between, v.v_fps, v.v_size, v.v_boom, v.v_gif, v.v_label,
                          p.already, p.face_index, p.chosen], {v.video, v.v_files, v.v_status}, **slow, **HIDDEN,
                         show_progress_on=[v.video]))
        v_event.then(video_idle, None, lifespan, queue=False, **HIDDEN)
        v.v_cancel.click(on_cancel, None, [v.v_status, *lifespan], cancels=[v_event], queue=False, **HIDDEN)
        clip_buttons = [c.c_btn, c.c_cancel]
        c_event = (c.c_btn.click(video_running, None, clip_buttons, queue=False, **HIDDEN)
                   .then(job(c.on_clip, page=c.c_status, desc="ageing frames", unit="frames", level=LONG),
                         [c.c_in, c.c_age, c.c_faces, c.c_size, c.c_start, c.c_end, c.c_preview, c.c_keys],
                         {c.c_out, c.c_file, c.c_status}, **slow, **HIDDEN, show_progress_on=[c.c_out]))
        c_event.then(video_idle, None, clip_buttons, queue=False, **HIDDEN)
        c.c_cancel.click(on_cancel, None, [c.c_status, *clip_buttons], cancels=[c_event], queue=False, **HIDDEN)


def video_running() -> list:
    """A video's button off and its Cancel on, while it renders."""
    return [gr.update(interactive=False), gr.update(interactive=True)]


def video_idle() -> list:
    """A video's button on and its Cancel off."""
    return [gr.update(interactive=True), gr.update(interactive=False)]


def on_cancel() -> list:
    """Cancel: the panel's status line says so; the buttons as when idle."""
    return ["Video cancelled.", *video_idle()]


def _refuse_outside_uploads(exc: Exception) -> gr.Error:
    """A request naming a file that was not uploaded (``{"path": "/etc/passwd"}``, the checkpoint): a sentence for the
    client and one log line (Gradio refuses it before any handler runs, with an empty error and a traceback)."""
    log.info("request rejected: a file reference outside the uploads: %s", str(exc)[:200])
    return gr.Error(readable(RequestError(NOT_UPLOADED), markup=False), print_exception=False)


def limit_queue(demo: gr.Blocks, max_size: int) -> gr.Blocks:
    """Queue at most ``max_size`` events, with the app's shares (:meth:`web.limits.Limits.queue_refusal`: per
    address, and room kept for interactive requests); a client over that gets :data:`~web.messages.BUSY_MESSAGE`
    (Gradio's own text names internal sizes) or the share's own words."""
    limits = demo.sam_app.limits

    def admit(event: tuple[str, Any], waiting: list[tuple[str, Any]]) -> str | None:
        def who(pair: tuple[str, Any]) -> tuple[str, str | None]:
            return pair[0], address_of(pair[1])

        return limits.queue_refusal(who(event), [who(w) for w in waiting], max_size)

    return glue.limit_queue(demo, max_size, BUSY_MESSAGE, admit)
