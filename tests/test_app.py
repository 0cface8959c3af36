"""The app starts and explains itself when no weights are available (offline first run)."""

import gradio as gr
import pytest

import app


def test_app_builds_without_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)
    demo = app.build_demo(str(tmp_path / "missing.pt"))
    assert isinstance(demo, gr.Blocks)
    texts = [getattr(b, "value", "") for b in demo.blocks.values()]
    assert any("not loaded" in str(t) and "missing.pt" in str(t) for t in texts)


def test_app_with_tiny_model(tiny_model, tmp_path):
    path = tmp_path / "tiny.pt"
    tiny_model.save(path)
    demo = app.build_demo(str(path))
    fn = next(d.fn for d in demo.fns.values() if d.api_name == "age")
    from PIL import Image

    out = fn(Image.new("RGB", (64, 64), (120, 90, 80)), 40)
    assert out.size == (32, 32)
    with pytest.raises(gr.Error):
        fn(None, 40)
