"""Gradio app: drop an aligned face photo, move the age slider. (Minimal first version; the full UI with
alignment, reference mixing and lifespan videos is tracked in the app issue.) Thin: model logic lives in ``sam/``.

    python app.py [--checkpoint weights/sam_ffhq_aging.pt] [--port 7860]
"""

from __future__ import annotations

import argparse

import gradio as gr

from sam.model import CheckpointError
from sam.pipeline import AgingPipeline, resolve_checkpoint


def build_demo(checkpoint: str | None = None) -> gr.Blocks:
    path = resolve_checkpoint(checkpoint)
    pipe: AgingPipeline | None = None
    problem = ""
    try:
        pipe = AgingPipeline.from_pretrained(path)
    except (FileNotFoundError, CheckpointError) as exc:
        problem = str(exc)

    def age(image, target_age):
        if pipe is None:
            raise gr.Error(problem)
        if image is None:
            raise gr.Error("Upload an aligned face photo first.")
        try:
            return pipe(image, [int(target_age)], size=min(256, pipe.output_size))[0]
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    with gr.Blocks(title="SAM age transformation") as demo:
        gr.Markdown("# SAM: age transformation\nUpload an FFHQ-aligned face and choose a target age.")
        if problem:
            gr.Markdown(f"**The model is not loaded.** {problem}")
        with gr.Row():
            inp = gr.Image(type="pil", label="Aligned face")
            out = gr.Image(type="pil", label="Result", format="png")
        slider = gr.Slider(0, 100, value=60, step=1, label="Target age")
        slider.release(age, [inp, slider], out, api_name="age")
    return demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="SAM checkpoint (default: $SAM_CHECKPOINT or weights/)")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=7860)
    args = ap.parse_args()
    build_demo(args.checkpoint).queue(default_concurrency_limit=1).launch(server_name=args.host,
                                                                         server_port=args.port)


if __name__ == "__main__":
    main()
