"""The ages strip: the face at several ages side by side, each with its measured age and identity."""

from __future__ import annotations

from typing import Any

import gradio as gr

from web.limits import STRIP_AGES
from web.panels.panel import Panel

__all__ = ["StripPanel"]


class StripPanel(Panel):
    """The *Ages side by side* tab."""

    def build(self) -> None:
        self.strip_status = gr.Markdown("", elem_id="strip-status")
        self.strip_ages = gr.CheckboxGroup([str(a) for a in STRIP_AGES], value=[str(a) for a in STRIP_AGES],
                                           label="Ages")
        self.strip_btn = gr.Button("Render the strip")
        self.strip = gr.Gallery(label="Ages side by side", columns=6, format="png", height="auto",
                                elem_id="strip-gallery")
        self.strip_info = gr.Markdown("", elem_id="strip-metrics")

    def on_strip(self, image: Any, ages: Any, aligned: bool, idx: int, *, progress=None, should_stop=None) -> dict:
        s = self.app.session(image, aligned, idx)
        shown = s.strip(ages or [], progress=progress, should_stop=should_stop)
        lines = s.describe([im for _, im in shown])
        table = ""
        if any(lines):
            rows = [f"| age {a} | {line} |" for (a, _), line in zip(shown, lines, strict=True)]
            table = f"{s.input_caption()}\n\n| target | measured |\n|---|---|\n" + "\n".join(rows)
        return {self.strip: [(im, f"age {a}") for a, im in shown], self.strip_info: table, self.strip_status: ""}
