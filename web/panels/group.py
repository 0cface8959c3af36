"""Everyone in the picture: the whole photo with the chosen faces aged, each face its own age, in a before/after
slider; Full resolution of the whole photo. The faces are chosen under the photo's face picker
(:class:`~web.panels.photo.PhotoPanel` builds that choice; its handlers are here)."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

from sam.ages import to_age
from sam.requests import RequestError
from web.jobs import file_hidden, file_shown
from web.panels.panel import Panel
from web.uploads import UnreadableUpload

__all__ = ["GroupPanel"]


class GroupPanel(Panel):
    """The group panel (hidden until faces are chosen)."""

    def build(self) -> None:
        self.group_ages = gr.State({})  # face number -> age, for the faces aged together
        with gr.Group(visible=False, elem_id="group-box") as self.group_box:
            gr.Markdown("### Everyone in the picture\nThe age slider above sets the age of everyone chosen, or of one "
                        "face: click its thumbnail (or pick it here) to give it its own age.")
            with gr.Row(elem_id="group-row"):
                self.g_who = gr.Radio([("everyone", "all")], value="all", label="The age slider sets the age of",
                                      elem_id="group-who")
                self.g_info = gr.Markdown("", elem_id="group-ages")
            self.g_status = gr.Markdown("", elem_id="group-status")
            self.g_view = gr.ImageSlider(label="Before / after: drag the line", type="pil", format="png",
                                         interactive=False, elem_id="group-slider", max_height=640)
            with gr.Row():
                self.g_full_btn = gr.Button("Full resolution (whole photo)", elem_id="group-full-button")
                self.g_full_file = gr.File(label="Download", interactive=False, elem_id="group-full-file",
                                           visible=False)
            self.g_full_image = gr.Image(label="Full resolution (whole photo)", format="png", interactive=False,
                                         visible=False, elem_id="group-full-image")

    # ------------------------------------------------------------------------------------------ handlers

    @staticmethod
    def group_ages_text(faces: list[int], ages: dict) -> str:
        return "Ages: " + ", ".join(f"face {i} → **{ages[i]}**" for i in faces)

    def on_group_photo(self, image: Any, aligned: bool) -> dict:
        """A new photo: the group choice offered when it has several faces (nothing chosen yet). The browser's repeat
        of the event changes nothing (it would undo what the visitor chose meanwhile)."""
        app, photo = self.app, self.page.photo
        if not self.page.latest.photo_event("on_group_photo", image, bool(aligned)):
            return {self.g_status: gr.skip()}
        hide = {photo.group_pick: gr.update(visible=False), photo.chosen: gr.update(choices=[], value=[]),
                photo.everyone: False, self.group_box: gr.update(visible=False), self.group_ages: {},
                self.g_view: None, self.g_full_file: file_hidden(), self.g_full_image: file_hidden(),
                self.g_status: ""}
        if image is None or aligned or app.pipe is None or isinstance(image, UnreadableUpload):
            return hide
        try:
            found = app.sessions.photo(image).faces
        except (ValueError, OSError):
            return hide  # the single-face flow says what is wrong
        if len(found) < 2:
            return hide
        names = [(f"{i} (best)" if i == 0 else str(i), i) for i in range(len(found))]
        return {**hide, photo.group_pick: gr.update(visible=True), photo.chosen: gr.update(choices=names, value=[])}

    def on_everyone(self, image: Any, flag: bool) -> dict:
        app, chosen = self.app, self.page.photo.chosen
        if image is None or app.pipe is None:
            return {chosen: []}
        return {chosen: list(range(len(app.sessions.photo(image).faces))) if flag else []}

    def group_update(self, image: Any, faces: list[int], ages: dict, first: bool = False):
        """The interpolated preview when every face has one, then the exact preview (both: the whole photo). Faces
        whose picture at their age is new are rendered one at a time, each shown as it is done, with a count and an
        estimate on the status line; the others come from the faces' kept pictures."""
        g = self.app.group(image, faces)
        wanted = [ages[i] for i in faces]
        info = self.group_ages_text(faces, ages)
        hidden = {self.g_full_file: file_hidden(), self.g_full_image: file_hidden()}
        quick = None if first else g.preview(wanted, quick=True)
        if quick is not None:
            yield {self.g_view: (g.photo.image, quick), self.g_info: info + " (interpolated preview; exact follows…)",
                   self.g_status: "", **hidden}
        new = sum(s.kept_face(a) is None for s, a in zip(g.sessions, wanted))
        if new > 1:
            yield {self.g_status: f"Ageing {new} faces, one at a time…", **hidden}
        began = time.monotonic()
        for done, total, picture in g.previews(wanted, first=first):
            if done < total:
                left = (time.monotonic() - began) / done * (total - done)
                yield {self.g_view: (g.photo.image, picture),
                       self.g_status: f"Ageing the faces: {done} of {total} done, about {left:.0f} s left…"}
            else:
                yield {self.g_view: (g.photo.image, picture), self.g_info: info, self.g_status: "", **hidden}
        g.start_warm_up()

    def on_chosen(self, image: Any, faces: list[int], target: Any, ages: dict, who: str):
        faces = sorted(int(i) for i in faces or [])
        if not faces or image is None:
            yield {self.group_box: gr.update(visible=False), self.g_view: None, self.group_ages: {}}
            return
        a = to_age(target)
        ages = {i: ages.get(i, a) for i in faces}
        who = who if who == "all" or (who is not None and int(who) in faces) else "all"
        choices = [("everyone", "all"), *[(f"face {i}", str(i)) for i in faces]]
        yield {self.group_box: gr.update(visible=True), self.group_ages: ages,
               self.g_who: gr.update(choices=choices, value=who), self.g_info: self.group_ages_text(faces, ages)}
        yield from self.group_update(image, faces, ages, first=True)

    def on_group_pick(self, faces: list[int], evt: gr.SelectData) -> dict:
        idx = int(evt.index) if evt is not None and evt.index is not None else None
        if idx is None or idx not in [int(i) for i in faces or []]:
            return {self.g_who: gr.skip()}
        return {self.g_who: str(idx)}

    def on_group_age(self, image: Any, faces: list[int], target: Any, ages: dict, who: str):
        faces = sorted(int(i) for i in faces or [])
        if not faces or image is None:
            yield {self.g_status: gr.skip()}
            return
        a = to_age(target)
        ages = {i: ages.get(i, a) for i in faces}
        for i in faces if who in (None, "all") else [int(who)]:
            ages[i] = a
        yield {self.group_ages: ages}
        yield from self.group_update(image, faces, ages)

    def on_group_full(self, image: Any, faces: list[int], ages: dict, *, progress: Any = None,
                      should_stop: Any = None) -> dict:
        faces = sorted(int(i) for i in faces or [])
        if not faces:
            raise RequestError("choose the faces to age first")
        g = self.app.group(image, faces)
        out = g.render([ages.get(i, ages.get(str(i), 60)) for i in faces], progress=progress,
                       should_stop=should_stop)
        path = self.app.new_path("-group.png")
        out.save(path)
        return {self.g_full_file: file_shown(str(path)), self.g_full_image: file_shown(str(path)), self.g_status: ""}
