"""Reference style mixing (paper Sec. 4.4): the look of another face (colour and lighting, hair and texture, or face
shape) applied to the aged result, at the target age chosen in the photo panel."""

from __future__ import annotations

from typing import Any

import gradio as gr

from sam.ages import to_age
from sam.network.mixing import LAYER_PRESETS as MIXING_PRESETS
from sam.network.mixing import layer_groups
from sam.requests import RequestError
from web.panels.panel import Panel
from web.uploads import photo_input

__all__ = ["MixingPanel", "LAYER_PRESETS"]

# The mixing presets of sam.network.mixing, plus a UI-only choice for typed-in layers.
LAYER_PRESETS = {**MIXING_PRESETS, "custom layers": "custom"}


class MixingPanel(Panel):
    """The *Reference style mixing* tab."""

    def build(self) -> None:
        n_styles = self.page.n_styles
        groups = layer_groups(n_styles)
        preset_labels = []
        for name, group in LAYER_PRESETS.items():
            idx = groups.get(group)
            if group == "custom" or idx:
                preset_labels.append((f"{name} ({idx[0]}-{idx[-1]})" if idx else name, name))
        gr.Markdown("Take the look of another face (colour and lighting, hair and texture, or face shape) and "
                    "apply it to the aged result, at the target age chosen above.")
        self.mix_status = gr.Markdown("", elem_id="mix-status")
        with gr.Row():
            with gr.Column():
                self.reference = photo_input(sources=["upload", "clipboard"], label="Reference photo", height=260)
                self.ref_aligned = gr.Checkbox(False, label="reference already aligned")
            with gr.Column():
                self.preset = gr.Radio(preset_labels, value=preset_labels[0][1], label="What to take from it")
                self.custom = gr.Textbox(value=f"{min(8, n_styles - 1)}-{n_styles - 1}", visible=False,
                                         label=f"Custom layers (0-{n_styles - 1}, e.g. 8-17 or 0,2,5)")
                self.alpha = gr.Slider(0, 1, value=0.7, step=0.05, label="Mix strength")
                self.mix_btn = gr.Button("Mix", variant="primary")
        with gr.Row():
            with gr.Column():
                self.mixed_out = gr.Image(label="Mixed", format="png", interactive=False, elem_id="mixed")
                self.mixed_info = gr.Markdown("", elem_id="mixed-metrics")
            with gr.Column():
                self.plain_out = gr.Image(label="Without mixing", format="png", interactive=False, elem_id="plain")
                self.plain_info = gr.Markdown("", elem_id="plain-metrics")

    def on_mix(self, image: Any, ref: Any, target: Any, chosen: str, layers: str, strength: Any, aligned: bool,
               idx: int, ref_is_aligned: bool) -> dict:
        app = self.app
        s = app.session(image, aligned, idx)
        if ref is None:
            raise RequestError("add a reference photo for style mixing")
        r = app.session(ref, ref_is_aligned, 0, what="reference photo")
        spec = layers if LAYER_PRESETS.get(chosen, chosen) == "custom" else chosen
        mixed, plain = s.mix(r, target, spec, strength, size=s.preview_size, fast=True)
        a = to_age(target)
        lines = s.describe([mixed, plain])
        return {self.mixed_out: mixed, self.plain_out: plain,
                self.mixed_info: f"Age {a}: {lines[0]}" if lines[0] else "",
                self.plain_info: f"Age {a}: {lines[1]}" if lines[1] else "", self.mix_status: ""}

    @staticmethod
    def on_preset(chosen: str) -> dict:
        return gr.update(visible=LAYER_PRESETS.get(chosen, chosen) == "custom")
