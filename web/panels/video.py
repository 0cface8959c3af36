"""The Video tab: the people in a clip aged (tracked, steady, the sound kept: :mod:`sam.video.clip`), with the frames
done and the time left on the progress bar, and Cancel."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from sam.video.probe import VIDEO_FORMAT_NAMES, VIDEO_SUFFIXES
from web.endpoints import default
from web.jobs import file_shown
from web.panels.panel import Panel
from web.service import AgeApp

__all__ = ["VideoPanel"]


class VideoPanel(Panel):
    """The *Video* tab."""

    def build(self) -> None:
        full, limits, api = self.page.full, self.app.limits, AgeApp.video
        gr.Markdown(f"Age the people in a clip: faces are followed from frame to frame, and the sound is kept. "
                    f"{VIDEO_FORMAT_NAMES}, up to {limits.clip_max_seconds:g} s and {limits.clip_max_mb} MB; this "
                    "takes a while on a CPU (the bar shows frames done and time left).")
        self.c_status = gr.Markdown("", elem_id="clip-status")
        with gr.Row():
            with gr.Column():
                self.c_in = gr.File(label="Your video", file_types=sorted(VIDEO_SUFFIXES), elem_id="clip-input")
                self.c_age = gr.Slider(0, 100, value=default(api, "target_age"), step=1, label="Target age",
                                       elem_id="clip-age")
                self.c_faces = gr.Radio([("the main face", "largest"), ("every face", "all")],
                                        value=default(api, "faces"), label="Whom to age")
                self.c_size = gr.Dropdown([s for s in (256, 1024) if s <= full] or [full],
                                          value=min(default(api, "output_size"), full), label="Face resolution (px)")
                with gr.Row():
                    self.c_start = gr.Number(default(api, "start"), label="From second", minimum=0)
                    self.c_end = gr.Number(default(api, "end"), label="To second (0: the end)", minimum=0)
                self.c_preview = gr.Checkbox(default(api, "preview"), label="quick preview (480 px)")
                self.c_keys = gr.Dropdown([("auto (fast, as steady)", "auto"), ("every frame (slow)", "1")],
                                          value="auto", label="Faces encoded on", elem_id="clip-keys")
                with gr.Row():
                    self.c_btn = gr.Button("Age the video", variant="primary", elem_id="clip-button")
                    self.c_cancel = gr.Button("Cancel", variant="stop", elem_id="clip-cancel", interactive=False)
            with gr.Column():
                self.c_out = gr.Video(label="Aged video", autoplay=True, interactive=False, elem_id="clip-video")
                self.c_file = gr.File(label="Download", interactive=False, elem_id="clip-file", visible=False)

    def on_clip(self, clip: Any, target: Any, who: str, side: Any, start: Any, end: Any, preview: bool,
                keys: Any = "auto", *, progress=None, should_stop=None, owner=None, address=None) -> dict:
        """The Video tab: the people in a clip aged; the bar shows frames done and time left."""
        began = [0.0, 0]  # when and at which frame the ageing started (after any wait in line)

        def frames_done(done: int, total: int, note: str | None = None) -> None:  # frames done and time left
            if progress is None:
                return
            if note is not None or not began[0]:
                began[:] = [time.monotonic(), done] if note is None else [0.0, 0]
                progress(done, total, note)
                return
            made = done - began[1]
            left = (time.monotonic() - began[0]) / max(made, 1) * (total - done)
            progress(done, total, f"ageing frames, about {left:.0f} s left" if made >= 3 else None)

        res = self.app.age_video(clip, target, who, side, start, end, preview, keys, progress=frames_done,
                                 should_stop=should_stop, owner=owner, address=address)
        people = len(res.faces)
        return {self.c_out: str(res.path), self.c_file: file_shown(str(res.path)),
                self.c_status: f"Video ready: {res.frames} frames at {float(res.fps):.3g} fps, {people} "
                               f"{'person' if people == 1 else 'people'} aged, sound {res.audio}."}
