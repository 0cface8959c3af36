"""The named HTTP API's hidden inputs, one set per endpoint of :data:`web.endpoints.ENDPOINTS`, made from the
:class:`~web.service.AgeApp` method each endpoint calls (names and defaults as its signature declares them). Files
are decoded by the safe loader; numbers arrive unrounded, so NaN or Infinity from a raw HTTP client reach our
checks, not Gradio's."""

from __future__ import annotations

from typing import Any

import gradio as gr

from sam.serving.scheduler import INTERACTIVE
from web.endpoints import ENDPOINTS, parameters
from web.panels.panel import Panel

__all__ = ["ApiPanel"]

FILES = {"image", "reference", "clip"}  # parameters that take an uploaded file
TEXTS = {"faces", "ages", "latent_mask"}  # parameters that take words or lists
LABELS = {"clip": "video"}  # a label other than the parameter's name


class ApiPanel(Panel):
    """The named endpoints for ``gradio_client`` and raw HTTP: ``/age``, ``/mix``, ``/lifespan``, ``/video``."""

    def component(self, name: str, value: Any) -> gr.components.Component:
        """The hidden input of one parameter (``value``: its default; ``size`` ``None`` is the model's size)."""
        label = LABELS.get(name, name)
        if name in FILES:
            return gr.File(label=label, type="filepath")
        if name in TEXTS:
            return gr.Textbox("" if value is None else value, label=label)
        if isinstance(value, bool):
            return gr.Checkbox(value, label=label)
        if name == "size":  # full resolution unless the endpoint says less (no more than the model's size)
            value = self.page.full if value is None else min(value, self.page.full)
        return gr.Number(value, label=label)

    def build(self) -> None:
        page, app = self.page, self.app
        events = []
        with gr.Column(visible=False):
            trigger = gr.Button("api")
            cancel = gr.Button("cancel")
            for ep in ENDPOINTS:
                method = getattr(app, ep.method)
                inputs = [self.component(p.name, None if p.default is p.empty else p.default)
                          for p in parameters(method)]
                output = (gr.Image(label="image", format="png", type="pil") if ep.output == "image"
                          else gr.Video(label="video"))
                run = app.jobs.job(method, desc=ep.desc, unit=ep.unit, level=ep.level)
                group = page.quick if ep.level == INTERACTIVE else page.slow
                events.append(trigger.click(run, inputs, output, api_name=ep.name, api_description=ep.description,
                                            **group))
        # gradio_client's job.cancel() stops the server's work only when an event cancels that endpoint
        cancel.click(None, None, None, cancels=events, queue=False, **page.hidden)
