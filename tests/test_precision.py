"""Reduced precision (sam.network.precision): CPU detection, what ``auto`` picks, where each dtype is used, and the
error of the bfloat16 path against float32 (tiny model here; the full-size seed-0 checkpoint in the slow test)."""

import contextlib
import copy
import math
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from sam.network import precision as P
from sam.network.checkpoint import load_model
from sam.network.stylegan2 import Generator
from sam.pipeline import AgingPipeline, to_pil

from .conftest import randomize_

AUTO_BF16 = P.Precision("auto", torch.float32, torch.bfloat16, "test: a CPU with native bfloat16")

# Bounds of the bfloat16 path against float32, stated in docs/precision.md. Measured: PSNR 36-47 dB and a
# W+ difference of 0.6-0.8 % of the largest code value on tiny random models (seeds 0-3); 40.8 dB and 0.034 on
# the full-size seed-0 checkpoint.
MIN_PSNR_DB = 30.0
MAX_CODE_DIFF = 0.02  # times the largest absolute code value


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] as displayed (clamped), peak-to-peak 2."""
    mse = float((a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).pow(2).mean())
    return 10 * math.log10(4 / mse) if mse > 0 else math.inf


CPUINFO_ZEN4 = "model name\t: AMD EPYC 9454 48-Core Processor\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
CPUINFO_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx2 fma\n"
CPUINFO_SPR = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"


def test_cpu_flags_and_native_bf16_detection(monkeypatch):
    monkeypatch.delenv("SAM_CPU_BF16", raising=False)
    assert P.cpu_model(CPUINFO_ZEN4) == "AMD EPYC 9454 48-Core Processor"
    assert P.cpu_has_native_bf16(P.cpu_flags(CPUINFO_ZEN4))
    assert P.cpu_has_native_bf16(P.cpu_flags(CPUINFO_SPR))  # AMX without the AVX-512 bf16 flag
    assert not P.cpu_has_native_bf16(P.cpu_flags(CPUINFO_AVX2))
    assert not P.cpu_has_native_bf16(P.cpu_flags(""))  # unknown: never guess
    isa = P.isa_summary(P.cpu_flags(CPUINFO_AVX2))
    assert isa["AVX2"] and not isa["AVX-512"] and not isa["AVX512-BF16"] and not isa["AMX-BF16"]


@pytest.mark.parametrize("native", ["0", "1"])
def test_auto_picks_bf16_only_for_fast_work_on_native_cpus(monkeypatch, native):
    monkeypatch.setenv("SAM_CPU_BF16", native)
    p = P.resolve_precision("auto", "cpu")
    assert p.exact == torch.float32  # full-size results stay exact
    assert p.fast == (torch.bfloat16 if native == "1" else torch.float32)
    # asked for explicitly, bf16 is used everywhere; on a CPU without it, with a warning that it is slow
    with pytest.warns(RuntimeWarning, match="emulated") if native == "0" else contextlib.nullcontext():
        bf = P.resolve_precision("bf16")
    assert bf.exact == bf.fast == torch.bfloat16
    assert P.resolve_precision("fp32").fast == torch.float32
    assert P.resolve_precision(None) == P.FP32
    with pytest.raises(ValueError, match="precision"):
        P.resolve_precision("int4")
    with pytest.raises(ValueError, match="int8"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P.precision_for("bf16", "cpu", int8_style_heads=True)
    assert P.precision_for("auto", "cpu", int8_style_heads=True).fast == torch.float32


@pytest.fixture
def face() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))


@pytest.fixture
def auto_pipe(tiny_model) -> AgingPipeline:
    P.apply_precision(tiny_model, AUTO_BF16)
    return AgingPipeline(tiny_model, batch_size=2)


@torch.inference_mode()
def test_auto_keeps_exact_results_float32(tiny_model, face):
    """Under auto, everything not labelled fast is bit-identical to a plain float32 model of the same weights."""
    plain = AgingPipeline(copy.deepcopy(tiny_model))  # never given a precision: float32 throughout
    auto = AgingPipeline(P.apply_precision(tiny_model, AUTO_BF16))
    codes = auto.latents(face, [30, 70])
    torch.testing.assert_close(codes, plain.latents(face, [30, 70]), rtol=0, atol=0)
    torch.testing.assert_close(auto.render(codes), plain.render(codes), rtol=0, atol=0)
    torch.testing.assert_close(auto.render(codes, size=16), plain.render(codes, size=16), rtol=0, atol=0)
    assert auto.model.encoder.input_layer[0].weight.dtype == torch.float32


@torch.inference_mode()
def test_fast_work_runs_in_bf16_within_bounds(auto_pipe, face):
    model = auto_pipe.model
    keys = set(model.state_dict())
    fast_codes = auto_pipe.latents(face, [30, 70], fast=True)  # the bf16 copy of the age encoder
    enc = auto_pipe.encode(face)
    assert set(enc.fast_codes) == {30, 70} and not enc.age_codes  # cached apart from the exact codes
    assert fast_codes.dtype == torch.float32
    exact_codes = auto_pipe.latents(face, [30, 70])
    diff = float((fast_codes - exact_codes).abs().max())
    assert 0 < diff <= MAX_CODE_DIFF * float(exact_codes.abs().max())
    # an exact code, once known, is preferred by fast calls
    torch.testing.assert_close(auto_pipe.latents(face, [30], fast=True), exact_codes[:1], rtol=0, atol=0)
    fast_img = auto_pipe.render(fast_codes, fast=True)
    exact_img = auto_pipe.render(exact_codes)
    assert fast_img.dtype == torch.float32
    assert MIN_PSNR_DB <= psnr(fast_img, exact_img) < math.inf  # bf16 was used, and stays close
    # the copy is not part of the model's state (the checkpoint layout is unchanged) and is made once
    assert set(model.state_dict()) == keys
    assert P.fast_encoder(model) is P.fast_encoder(model)
    assert P.fast_encoder(model).input_layer[0].weight.dtype == torch.bfloat16
    assert model.encoder.input_layer[0].weight.dtype == torch.float32


@torch.inference_mode()
def test_explicit_bf16_converts_the_encoders(tiny_checkpoint):
    net = load_model(tiny_checkpoint, precision="bf16")
    ref = load_model(tiny_checkpoint, precision="fp32")
    assert net.encoder.input_layer[0].weight.dtype == torch.bfloat16
    assert net.pretrained_encoder.body[0].res_layer[1].weight.dtype == torch.bfloat16
    assert net.decoder.convs[0].conv.weight.dtype == torch.float32  # the modulation reads float32 weights
    assert P.fast_encoder(net) is net.encoder  # no second copy
    x4 = torch.rand(1, 4, 64, 64) * 2 - 1
    x4[:, 3] = 0.4
    out, codes = net(x4, randomize_noise=False, return_latents=True)
    want, want_codes = ref(x4, randomize_noise=False, return_latents=True)
    assert out.dtype == codes.dtype == torch.float32
    assert float((codes - want_codes).abs().max()) <= MAX_CODE_DIFF * float(want_codes.abs().max())
    assert psnr(out, want) >= MIN_PSNR_DB


@pytest.mark.parametrize("rows", [5, None])
def test_bf16_generator_keeps_rgb_sum_float32(rows):
    """Bands or whole levels, the bf16 generator returns a float32 image close to the float32 one."""
    torch.manual_seed(0)
    g = randomize_(Generator(64, 16, 2, channel_multiplier=1, channel_max=8)).eval()
    g.band_rows = rows
    w = torch.randn(1, g.n_latent, 16)
    with torch.no_grad():
        a, _ = g([w], input_is_latent=True, randomize_noise=False)
        b, _ = g([w], input_is_latent=True, randomize_noise=False, dtype=torch.bfloat16)
    assert b.dtype == torch.float32
    assert MIN_PSNR_DB <= psnr(b, a) < math.inf


def test_cli_and_app_take_precision(monkeypatch):
    from sam.cli import build_parser

    args = build_parser().parse_args(["inference", "--data_path", "x", "--exp_dir", "y", "--precision", "bf16"])
    assert args.precision == "bf16"
    lifespan = build_parser().parse_args(["lifespan", "--data_path", "x", "--exp_dir", "y"])
    evaluate = build_parser().parse_args(["evaluate", "--data_path", "x", "--exp_dir", "y"])
    asked = []
    monkeypatch.setattr(AgingPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: asked.append(k)))
    from sam.cli import batch as cli_module

    for args in (lifespan, evaluate):
        cli_module.load_pipeline(args)
    assert [k["precision"] for k in asked] == ["auto", "fp32"]  # evaluate: exact unless asked
    with pytest.raises(SystemExit):
        build_parser().parse_args(["inference", "--data_path", "x", "--exp_dir", "y", "--precision", "fp8"])
    from sam.cli import batch as cli

    seen = []
    monkeypatch.setattr(AgingPipeline, "from_pretrained", lambda *a, **k: seen.append(k["precision"]))
    for argv in (["lifespan"], ["evaluate"], ["evaluate", "--precision", "bf16"], ["inference"]):
        cli.load_pipeline(build_parser().parse_args([*argv, "--data_path", "x", "--exp_dir", "y"]))
    assert seen == ["auto", "fp32", "bf16", "auto"]


def test_pipeline_from_pretrained_passes_precision(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("SAM_CPU_BF16", "1")
    pipe = AgingPipeline.from_pretrained(tiny_checkpoint, device="cpu")
    assert pipe.precision.fast == torch.bfloat16 and pipe.precision.exact == torch.float32
    monkeypatch.setenv("SAM_CPU_BF16", "0")
    assert AgingPipeline.from_pretrained(tiny_checkpoint, device="cpu").precision.fast == torch.float32
    assert AgingPipeline.from_pretrained(tiny_checkpoint, device="cpu", precision="fp32").precision == P.FP32


@pytest.mark.slow
@torch.inference_mode()
def test_full_size_bf16_preview_within_bounds(seed0_checkpoint):
    """The seed-0 full-size checkpoint: bf16 exact-preview pipeline (age encoder + generator to 256) vs fp32."""
    net = load_model(seed0_checkpoint, precision=AUTO_BF16)
    pipe = AgingPipeline(net)
    g = torch.Generator().manual_seed(0)
    face = to_pil(torch.rand(3, 256, 256, generator=g) * 2 - 1)[0]
    fast = pipe.latents(face, [63], fast=True)
    exact = pipe.latents(face, [63])
    assert 0 < float((fast - exact).abs().max()) <= MAX_CODE_DIFF * float(exact.abs().max())
    assert psnr(pipe.render(fast, size=256, fast=True), pipe.render(exact, size=256, fast=True)) >= MIN_PSNR_DB


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_on_cuda(monkeypatch, bf16):
    """On CUDA, auto previews in bfloat16 where the GPU has it, else float32 (float16 only when asked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    p = P.resolve_precision("auto", "cuda")
    assert p.exact == torch.float32 and p.fast == (torch.bfloat16 if bf16 else torch.float32)
    assert P.resolve_precision("fp16", "cuda").fast == torch.float16


@pytest.mark.filterwarnings("ignore:precision 'bf16'")  # emulated bf16 on this CPU: said, not the point here
@pytest.mark.parametrize("cpu_bf16", ["0", "1"])
def test_the_pipeline_and_load_model_resolve_precision_alike(tiny_checkpoint, monkeypatch, cpu_bf16):
    """AgingPipeline.from_pretrained is a call into load_model: the same arguments give the same precision (and the
    same dtypes in the networks), or the same refusal."""
    monkeypatch.setenv("SAM_CPU_BF16", cpu_bf16)
    seen = set()
    for precision in ("auto", "fp32", "bf16", "fp16"):
        for int8 in (False, True):
            kw = dict(device="cpu", precision=precision, int8_style_heads=int8)
            try:
                net = load_model(tiny_checkpoint, **kw)
            except ValueError as exc:
                with pytest.raises(ValueError, match="^" + re.escape(str(exc)) + "$"):
                    AgingPipeline.from_pretrained(tiny_checkpoint, **kw)
                continue
            pipe = AgingPipeline.from_pretrained(tiny_checkpoint, **kw)
            assert pipe.precision == net.precision, kw
            dtypes = {k: v.dtype for k, v in net.state_dict().items()}
            assert {k: v.dtype for k, v in pipe.model.state_dict().items()} == dtypes, kw
            seen.add(net.precision)
    assert len(seen) >= 2  # the arguments do change the precision
