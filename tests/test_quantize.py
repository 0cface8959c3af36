"""The opt-in int8 style heads: what is replaced, how far the codes move, and the CLI flag."""

import torch
from PIL import Image

from sam.cli import main
from sam.network.quantize import is_quantized, quantize_style_heads
from sam.pipeline import AgingPipeline

from .test_cli import ASTRONAUT, S


def test_style_heads_become_int8_and_codes_stay_close(tiny_model):
    n = tiny_model.config.encoder.input_size
    x = torch.rand(1, 4, n, n) * 2 - 1
    heads = [m for enc in (tiny_model.encoder, tiny_model.pretrained_encoder) for m in enc.styles.modules()
             if isinstance(m, torch.nn.Conv2d)]
    body_before = {k: v.clone() for k, v in tiny_model.encoder.body.state_dict().items()}
    with torch.inference_mode():
        exact = tiny_model.encode(x)
    assert not is_quantized(tiny_model)
    assert quantize_style_heads(tiny_model) == len(heads) > 0
    assert is_quantized(tiny_model) and quantize_style_heads(tiny_model) == 0  # idempotent
    for k, v in tiny_model.encoder.body.state_dict().items():  # the IR-SE body stays float32
        torch.testing.assert_close(v, body_before[k])
    with torch.inference_mode():
        approx = tiny_model.encode(x)
    spread = (exact - tiny_model.latent_avg).pow(2).mean().sqrt()
    rel = float((approx - exact).pow(2).mean().sqrt() / spread)
    assert 1e-4 < rel < 0.2, rel  # int8 moves the codes (so it really ran), but only a little


def test_pipeline_and_cli_flag(tiny_checkpoint, tmp_path):
    pipe = AgingPipeline.from_pretrained(tiny_checkpoint, device="cpu", int8_style_heads=True)
    assert is_quantized(pipe.model)
    (img,) = pipe(Image.open(ASTRONAUT).resize((S, S)), [30])
    assert img.size == (S, S)
    rc = main(["inference", "--checkpoint_path", str(tiny_checkpoint), "--data_path", str(ASTRONAUT),
               "--exp_dir", str(tmp_path / "exp"), "--target_age", "30", "--device", "cpu",
               "--int8_style_heads"])
    assert rc == 0 and (tmp_path / "exp" / "inference_results" / "30" / "astronaut.png").exists()
