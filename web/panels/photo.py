"""The photo panel: the photo (upload, webcam, paste, examples), its faces, the aligned face, the preview, the age
slider and Full resolution. The target age set here serves every panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from sam.ages import to_age
from web.endpoints import default
from web.jobs import file_busy, file_hidden, file_shown
from web.panels.panel import Panel
from web.service import AgeApp
from web.uploads import photo_input, readable_upload

__all__ = ["PhotoPanel", "EXAMPLES"]

EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "assets").glob("*")
                  if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


class PhotoPanel(Panel):
    """The photo and the slider. Also builds, under the face picker, the group choice (*everyone* and the faces to
    age together) that the group panel handles."""

    def build(self) -> None:
        self.status = gr.Markdown("", elem_id="status")
        self.face_index = gr.State(0)
        with gr.Row(elem_id="photo-row"):  # (its order on a phone: web/layout.py)
            with gr.Column(scale=1, elem_id="photo-col"):
                self.photo = photo_input(sources=["upload", "webcam", "clipboard"], label="Your photo", height=320)
                self.already = gr.Checkbox(False, label="already aligned (an FFHQ-style face crop: skip face "
                                           "detection)")
                self.picker = gr.Gallery(label="Faces found (numbered best first): click the one to age",
                                         visible=False, columns=6, height="auto", allow_preview=False, format="png",
                                         object_fit="contain", show_label=True, elem_id="face-picker")
                with gr.Group(visible=False, elem_id="group-pick") as self.group_pick:
                    self.everyone = gr.Checkbox(False, label="everyone: age every face of the photo",
                                                elem_id="everyone")
                    self.chosen = gr.CheckboxGroup([], label="or the faces to age together (numbers as on the "
                                                   "thumbnails, best first)", elem_id="group-faces")
                if EXAMPLES:
                    gr.Examples(EXAMPLES, inputs=self.photo, label="Examples")
            with gr.Column(scale=1, elem_id="aligned-col"):
                self.aligned_view = gr.Image(label="Aligned face (what the model sees)", format="png",
                                             interactive=False, elem_id="aligned", height=320)
                self.input_info = gr.Markdown("", elem_id="input-age")
            with gr.Column(scale=1, elem_id="result-col"):
                self.result = gr.Image(label="Result (preview)", format="png", interactive=False, height=320,
                                       elem_id="result")
                self.result_info = gr.Markdown("", elem_id="result-metrics")
                self.age = gr.Slider(0, 100, value=default(AgeApp.age, "target_age"), step=1,
                                     label="Target age (updates when you let go)", elem_id="target-age")
                self.paste = gr.Checkbox(False, label="paste back into my photo")
                self.full_btn = gr.Button(self.page.full_label, elem_id="full-button")
                self.full_file = gr.File(label="Download", interactive=False, elem_id="full-file", visible=False)
                self.full_image = gr.Image(label="Full resolution", format="png", interactive=False, visible=False,
                                           elem_id="full-image")

    # ------------------------------------------------------------------------------------------ handlers

    def on_photo(self, image: Any, aligned: bool, target: Any, pasted: bool):
        app = self.app
        if not self.page.latest.photo_event("on_photo", image, bool(aligned)):
            yield {self.status: gr.skip()}  # the browser's repeat (an empty dict reads as one missing value)
            return
        if image is None:
            yield {self.picker: gr.update(value=None, visible=False), self.face_index: 0, self.aligned_view: None,
                   self.result: None, self.input_info: "", self.result_info: "", self.full_file: file_hidden(),
                   self.full_image: file_hidden(), self.status: ""}
            return
        readable_upload(image)
        hidden = gr.update(value=None, visible=False)
        steps = self.show_face(image, aligned, 0, target, pasted, {self.picker: hidden, self.face_index: 0})
        yield next(steps)  # the first preview, from the best face of a quick look
        if not aligned and app.pipe is not None:
            photo_ = app.sessions.photo(image)
            said = {}
            if len(photo_.faces) > 1:  # the full look, for the face picker (said on the status line: a toast
                # would outlive its photo)
                n = len(photo_.faces)
                faces = [(thumb, f"face {i}") for i, thumb in enumerate(photo_.thumbnails())]
                said = {self.status: f"{n} faces found; showing the best one. Click a face to switch."}
                yield {self.picker: gr.update(value=faces, visible=True, selected_index=0,
                                              label=f"{n} faces found, numbered best first: click the one to age"),
                       **said}
            if not photo_.best_face_confirmed():  # the full look ranks another face first (the words stay)
                steps.close()
                steps = self.show_face(image, aligned, 0, target, pasted, {self.face_index: 0, **said})
        yield from steps

    def on_pick(self, image: Any, aligned: bool, target: Any, pasted: bool, shown: int, evt: gr.SelectData):
        """A face picked on the face picker (the face shown already: nothing to do; the picker's own selection of
        face 0 when it appears is one of those)."""
        idx = int(evt.index) if evt is not None and evt.index is not None else 0
        if idx == shown:
            yield {self.status: gr.skip()}
            return
        yield from self.show_face(image, aligned, idx, target, pasted, {self.face_index: idx})

    def show_face(self, image: Any, aligned: bool, idx: int, target: Any, pasted: bool, extra: dict):
        """A new face in steps, each shown as soon as it exists: the aligned face (found and aligned, no network
        yet); a first picture (the generator stopped at 64 px, scaled up); the 256 px preview from the same code;
        the age and identity readouts; then the preview from the exact code that every later slider move builds
        on, and the key-age warm-up after that."""
        s = self.app.session(image, aligned, idx)
        yield {self.aligned_view: s.face_image, self.result: None, self.input_info: "",
               self.result_info: "Ageing this face…", self.full_file: file_hidden(), self.full_image: file_hidden(),
               self.status: "", **extra}
        start = s.start_age(target)
        moved = {self.age: start} if s.input_age is not None else {}
        first = None
        for first, final in s.first_previews(start, pasted):
            yield {self.result: first, **moved,
                   self.result_info: f"Age {start}" if final else f"Age {start}: a first look, sharper in a moment…"}
            moved = {}
        yield {self.input_info: s.input_caption(), self.result_info: s.caption(start, first)}
        if not s.has_exact_encoding:
            preview = s.preview(start, pasted)
            yield {self.result: preview, self.result_info: s.caption(start, preview)}
        s.start_warm_up()

    def on_age(self, image: Any, target: Any, aligned: bool, idx: int, pasted: bool, together: Any = None):
        """The slider let go (or "paste back" ticked): the interpolated preview when there is one, then the exact
        one. While faces are chosen to age together, the slider sets their ages (the group panel) instead."""
        a = to_age(target)
        if together:
            yield {self.result_info: f"The slider now sets the ages of the faces aged together (below; {a} now). "
                                     "Untick them to age this face alone.", self.status: ""}
            return
        s = self.app.session(image, aligned, idx)
        quick = s.quick_preview(a, pasted)
        if quick is not None:
            yield {self.result: quick, self.result_info: f"Age {a}: interpolated preview; the exact result follows…",
                   self.full_file: file_hidden(), self.full_image: file_hidden(), self.status: ""}
        preview = s.preview(a, pasted)
        yield {self.result: preview, self.result_info: s.caption(a, preview), self.full_file: file_hidden(),
               self.full_image: file_hidden(), self.status: ""}

    def full_button(self, pasted: bool, aligned: bool) -> dict:
        """The Full resolution button, ready: its label says what the file will be."""
        return gr.update(interactive=True,
                         value="Full resolution (whole photo)" if pasted and not aligned else self.page.full_label)

    def full_busy(self) -> dict:
        """The Full resolution button while it renders, and the download box shown for the progress."""
        return {self.full_btn: gr.update(interactive=False, value="Rendering full resolution…"),
                self.full_file: file_busy()}

    def on_full(self, image: Any, target: Any, aligned: bool, idx: int, pasted: bool) -> dict:
        out = self.app.age(image, target, None, aligned, idx, pasted)
        path = self.app.new_path(f"-age{to_age(target)}.png")
        out.save(path)
        return {self.full_file: file_shown(str(path)), self.full_image: file_shown(str(path)), self.status: ""}
