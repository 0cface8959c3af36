"""The lifespan video: one face (or the faces chosen together) from one age to another, as an MP4 (and a GIF),
with a progress bar and Cancel."""

from __future__ import annotations

from typing import Any

import gradio as gr

from web.endpoints import default
from web.jobs import file_shown
from web.limits import VIDEO_SIZES
from web.panels.panel import Panel
from web.service import AgeApp

__all__ = ["LifespanPanel"]


class LifespanPanel(Panel):
    """The *Lifespan video* tab."""

    def build(self) -> None:
        sizes = [s for s in VIDEO_SIZES if s <= self.page.full] or [self.page.full]
        api = AgeApp.lifespan
        self.v_status = gr.Markdown("", elem_id="lifespan-status")
        with gr.Row():
            with gr.Column():
                self.v_start = gr.Slider(0, 100, value=default(api, "start_age"), step=1, label="From age")
                self.v_end = gr.Slider(0, 100, value=default(api, "end_age"), step=1, label="To age")
                self.v_between = gr.Slider(0, 30, value=8, step=1,  # the page's own: a little quicker than the API's
                                           label="Smoothness (frames between key ages, every 10 years)")
                self.v_fps = gr.Slider(5, 60, value=default(api, "fps"), step=1, label="Frames per second")
                self.v_size = gr.Dropdown(sizes, value=min(default(api, "size"), sizes[-1]), label="Resolution (px)")
                with gr.Row():
                    self.v_boom = gr.Checkbox(default(api, "boomerang"), label="boomerang (forward then back)")
                    self.v_gif = gr.Checkbox(False, label="also make a GIF")
                    self.v_label = gr.Checkbox(True, label="show the age")
                with gr.Row():
                    self.v_btn = gr.Button("Render video", variant="primary", elem_id="video-button")
                    self.v_cancel = gr.Button("Cancel", variant="stop", elem_id="video-cancel", interactive=False)
            with gr.Column():
                self.video = gr.Video(label="Lifespan", autoplay=True, loop=True, interactive=False,
                                      elem_id="lifespan-video")
                self.v_files = gr.File(label="Downloads", file_count="multiple", interactive=False, visible=False,
                                       elem_id="lifespan-files")

    def on_video(self, image: Any, start: Any, end: Any, between: Any, rate: Any, side: Any, boom: bool, gif: bool,
                 label: bool, aligned: bool, idx: int, together: list, *, progress=None, should_stop=None,
                 owner=None, address=None) -> dict:
        """The lifespan video (of one face, or of the faces chosen together)."""
        faces = sorted(int(i) for i in together or []) if not aligned else []
        res = self.app.lifespan_job(image, start, end, between, rate, side, boom, label, gif, aligned, idx,
                                    faces=faces or "best", progress=progress, should_stop=should_stop, owner=owner,
                                    address=address)
        files = [str(res.mp4)] + ([str(res.gif)] if res.gif else [])
        return {self.video: str(res.mp4), self.v_files: file_shown(files),
                self.v_status: f"Video ready: {res.frames} frames."}
