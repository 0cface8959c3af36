"""A photo's first look: the two fast encoders side by side (sam.pipeline.SideBySide) and the prepacked style heads
of the bfloat16 copies (sam.network.onednn). Tiny model; the speed itself is measured by bench/first_preview.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sam.network import onednn
from sam.network.model import add_age_channel
from sam.network.precision import apply_precision, cpu_flags, fast_encoder, resolve_precision
from sam.pipeline import AgingPipeline, SideBySide, to_tensor

FACE = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))


@pytest.fixture
def bf16_pipe(tiny_model, monkeypatch):
    monkeypatch.setenv("SAM_CPU_BF16", "1")
    apply_precision(tiny_model, resolve_precision("auto", "cpu"))
    assert tiny_model.precision.fast == torch.bfloat16 != tiny_model.precision.exact
    return AgingPipeline(tiny_model)


def sequential_codes(pipe: AgingPipeline, ages: list[int]) -> torch.Tensor:
    """The first look's codes computed one encoder after the other (the way it was done before)."""
    m = pipe.model
    with torch.inference_mode():
        rgb = to_tensor(FACE, pipe.input_size)[None]
        pre = m.encode_pretrained(rgb, fast=True)
        return m.encode(add_age_channel(rgb.expand(len(ages), -1, -1, -1), ages),
                        pretrained_codes=pre.expand(len(ages), -1, -1), fast=True)


def test_first_look_runs_the_encoders_side_by_side_with_the_same_codes(bf16_pipe, monkeypatch):
    torch.set_num_threads(2)
    seen = []
    real_run = SideBySide.run

    def spy(self, first, second):
        seen.append(threading.current_thread().name)
        return real_run(self, first, second)

    monkeypatch.setattr(SideBySide, "run", spy)
    codes = bf16_pipe.first_look(FACE, [20, 70])
    assert seen, "the two encoders did not run side by side"
    assert codes.shape == (2, bf16_pipe.n_styles, bf16_pipe.model.config.style_dim)
    assert torch.equal(codes, sequential_codes(bf16_pipe, [20, 70]))  # same sums, bit for bit
    assert torch.get_num_threads() == 2  # the caller's thread count is left as it was
    made_later = []
    t = threading.Thread(target=lambda: made_later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert made_later == [2]  # and so is the default of threads made afterwards
    assert bf16_pipe.cached_ages(FACE) == []  # nothing cached: the exact encoding follows


def test_first_look_is_the_exact_code_when_there_is_no_fast_dtype(tiny_model):
    pipe = AgingPipeline(tiny_model)  # float32 throughout
    assert torch.equal(pipe.first_look(FACE, [40]), pipe.latents(FACE, [40]))


def test_side_by_side_raises_an_error_of_either_pass():
    pair = SideBySide()

    def boom() -> torch.Tensor:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        pair.run(lambda: torch.zeros(1), boom)


def test_prepacked_heads_give_the_plain_heads_codes(bf16_pipe):
    """The packed bfloat16 copy against an unpacked bfloat16 copy of the same encoder: within bfloat16 rounding,
    for one face and for a batch (the key ages and videos run batches)."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN")
    m = bf16_pipe.model
    packed = fast_encoder(m)
    flags = cpu_flags()
    if not packed.heads_channels_last and not ({"avx512bw", "avx512vl", "avx512dq"} <= flags
                                               or "avx_ne_convert" in flags):
        pytest.skip("oneDNN reorders bfloat16 weights only on CPUs with AVX512-BW/VL/DQ or AVX-NE-CONVERT")
    assert packed.heads_channels_last and isinstance(packed.styles[0].convs[0], onednn.PackedConv2d)
    plain = m.encoder.__class__(m.config.input_nc, m.config.n_styles, packed.cfg)
    plain.load_state_dict(m.encoder.state_dict())
    plain = plain.to(torch.bfloat16).eval()
    rgb = to_tensor(FACE, bf16_pipe.input_size)[None]
    for ages in ([30], [5, 40, 75, 99]):
        x = add_age_channel(rgb.expand(len(ages), -1, -1, -1), ages).to(torch.bfloat16)
        with torch.inference_mode():
            a, b = packed(x), plain(x)
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 0.02 * max(1.0, b.abs().max().item())
    assert not isinstance(m.encoder.styles[0].convs[0], onednn.PackedConv2d)  # the exact encoder is untouched


def test_packing_that_disagrees_is_not_used(tiny_model, monkeypatch):
    enc = tiny_model.encoder.__class__(tiny_model.config.input_nc, tiny_model.config.n_styles, tiny_model.encoder.cfg)
    enc = enc.to(torch.bfloat16).eval()
    monkeypatch.setattr(onednn.PackedConv2d, "forward", lambda self, x: torch.full((1, 1, 1, 1), 1e3))
    assert onednn.pack_style_heads(enc) is False
    assert not enc.heads_channels_last and isinstance(enc.styles[0].convs[0], torch.nn.Conv2d)


def test_packing_skips_heads_that_are_not_plain_convolutions(tiny_model):
    enc = tiny_model.encoder.__class__(tiny_model.config.input_nc, tiny_model.config.n_styles, tiny_model.encoder.cfg)
    enc.styles[0].convs[1] = torch.nn.ReLU()
    assert onednn.pack_style_heads(enc.eval()) is False
