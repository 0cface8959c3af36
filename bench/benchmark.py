"""Speed and memory benchmark of the default (exact) inference path and the bfloat16 fast path, with a calibration
workload.

    python bench/benchmark.py [--checkpoint /tmp/sam_seed0.pt] [--threads 2] [--device cpu] [--quick] [--bf16 auto]

Times, with the full-size checkpoint (the seed-0 synthetic one is built in a temporary folder when none is given):
load + peak RSS, one (image, age) at 1024, an 11-age sweep, an exact slider preview at 256 (new age of a seen photo),
an interpolated preview (generator only), and a lifespan video (11 key ages x 10 frames, 256 px). Machines like this
one vary by 10-20 % between runs, so a fixed calibration workload (dense 3x3 convolutions) is timed in the same run
and every line also shows its achieved GFLOP/s and the ratio to the calibration's GFLOP/s. Short steps are timed
several times with a new age or photo each time (no cache helps) and the fastest run is reported. On CPU the
opt-in int8 style heads (``sam/network/quantize.py``) are timed last, with their error against the exact path.

bfloat16 (``sam/network/precision.py``, what ``precision="auto"`` uses for previews and videos on CPUs with native
bfloat16):
the slider previews, a 1024 px generator pass and the lifespan video are timed in float32 and bfloat16 alternately
(same run, so machine load affects both alike; the process CPU time of all threads is recorded too, as it is less
sensitive to other work on the machine), and each bfloat16 line shows its PSNR against float32 (images as
displayed: clamped to [-1, 1]) and the largest difference of the W+ codes. ``--bf16 auto`` (default) runs them on
CPUs with native bfloat16 only (elsewhere bfloat16 is emulated and very slow).

Every results file names the machine: CPU model, the ISA extensions that matter (AVX2, AVX-512, AVX512-BF16, AMX),
core count, torch version, threads and the load average at start and end (other work on the machine slows it).

FLOPs are counted with ``torch.utils.flop_counter`` on a meta-device copy of the model (shapes only, no compute).
Writes ``bench/results/<date>-<device>-<cpu or gpu slug>.md`` and ``.json`` (results of different CPUs kept apart).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam.network.checkpoint import load_model  # noqa: E402
from sam.network.model import SAM  # noqa: E402
from sam.network.precision import FP32, Precision, cpu_has_native_bf16, cpu_model, fast_encoder, isa_summary  # noqa: E402
from sam.pipeline import AgingPipeline, to_pil  # noqa: E402
from sam.video.lifespan import make_lifespan  # noqa: E402

AGES11 = list(range(0, 101, 10))


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def calibration(device: str, reps: int = 3) -> float:
    """GFLOP/s of a fixed dense workload: 3x3 convs 256 -> 256 channels on a 64x64 map, batch 2."""
    x = torch.randn(2, 256, 64, 64, device=device)
    w = torch.randn(256, 256, 3, 3, device=device) * 0.02
    flops = 2 * 2 * 256 * 256 * 9 * 64 * 64
    with torch.inference_mode():
        torch.nn.functional.conv2d(x, w, padding=1)
        sync(device)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(4):
                torch.nn.functional.conv2d(x, w, padding=1)
            sync(device)
            best = min(best, (time.perf_counter() - t) / 4)
    return flops / best / 1e9


def image_error(got: torch.Tensor, want: torch.Tensor) -> dict:
    """Max relative error and PSNR (images in [-1, 1]) of an approximation."""
    diff = (got.float() - want.float()).abs()
    mse = float(((got.float() - want.float()) / 2).pow(2).mean())
    return {"max_rel_err": round(float(diff.max() / want.abs().max()), 4),
            "psnr_db": round(10 * math.log10(1 / mse), 1) if mse > 0 else float("inf")}


def psnr_displayed(got: torch.Tensor, want: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] as displayed (clamped), peak-to-peak 2."""
    mse = float((got.float().clamp(-1, 1) - want.float().clamp(-1, 1)).pow(2).mean())
    return round(10 * math.log10(4 / mse), 1) if mse > 0 else float("inf")


def machine(dev: str) -> dict:
    """What ran the benchmark: CPU model and ISA extensions, cores, torch, threads; the GPU on CUDA."""
    info = {"cpu": cpu_model(), "isa": isa_summary(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_average_start": [round(v, 2) for v in os.getloadavg()]}
    if dev.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def machine_slug(info: dict) -> str:
    """``amd-epyc-avx512bf16``: the CPU model and its best relevant ISA (two "AMD EPYC"s can differ a lot)."""
    isa = info["isa"]
    tag = ("amx" if isa["AMX-BF16"] else "avx512bf16" if isa["AVX512-BF16"] else "avx512" if isa["AVX-512"]
           else "avx2" if isa["AVX2"] else "noavx")
    name = info.get("gpu") or info["cpu"]
    name = re.sub(r"\((r|tm)\)|cpu|processor|\d+-core", "", name, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug if info.get("gpu") else f"{slug}-{tag}"


def count_flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode  # imports triton: only in the FLOP-counting child process

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def model_flops(config) -> tuple[float, float, float, float]:
    """GFLOP of the encoder, the frozen encoder, the 1024 px and the 256 px generator, on a meta-device twin."""
    with torch.device("meta"):
        meta = SAM(config)
        meta.latent_avg = torch.zeros(1, config.n_styles, config.style_dim)
        x4m = torch.zeros(1, 4, config.encoder.input_size, config.encoder.input_size)
        wm = torch.zeros(1, config.n_styles, config.style_dim)
    return (count_flops(lambda: meta.encoder(x4m)), count_flops(lambda: meta.pretrained_encoder(x4m[:, :3])),
            count_flops(lambda: meta.decoder([wm], input_is_latent=True, randomize_noise=False)),
            count_flops(lambda: meta.decoder([wm], input_is_latent=True, randomize_noise=False, resolution=256)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="skip the 11-age sweep and the video")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 style heads section")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per preview step and precision (default 3)")
    ap.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                    help="time the bfloat16 fast path too (auto: on CPUs with native bfloat16)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device

    tmp = None
    path = args.checkpoint
    if path is None:
        from sam.network import synthetic

        tmp = tempfile.TemporaryDirectory()
        path = synthetic.save(Path(tmp.name) / "sam_seed0.pt", seed=0)

    rows: list[dict] = []
    host = machine(dev)
    print(f"machine: {host}", flush=True)
    cal0 = calibration(dev)
    bf16 = dev == "cpu" and (args.bf16 == "on" or (args.bf16 == "auto" and cpu_has_native_bf16()))
    # what precision="auto" gives on a CPU with native bfloat16; switched on the model between timed calls
    fast_bf16 = Precision("auto", torch.float32, torch.bfloat16, "benchmark: bf16 fast path")

    def record(name: str, seconds: float, gflop: float | None, per: int = 1, note: str = "",
               psnr: float | None = None, wdiff: float | None = None, cpu_s: float | None = None) -> None:
        s = seconds / per
        g = (gflop / per) if gflop else None
        rows.append({"step": name, "seconds": round(s, 3), "gflop": round(g, 1) if g else None,
                     "gflops_per_s": round(g / s, 1) if g else None,
                     "ratio_to_calibration": round(g / s / cal0, 2) if g else None,
                     "peak_rss_gib": round(peak_rss_gib(), 2), "note": note,
                     "psnr_vs_fp32_db": psnr, "wplus_max_diff_vs_fp32": None if wdiff is None else round(wdiff, 4),
                     "cpu_seconds": None if cpu_s is None else round(cpu_s / per, 3)})
        extra = "" if psnr is None else f"  PSNR vs fp32 {psnr} dB"
        extra += "" if wdiff is None else f", W+ max diff {wdiff:.4f}"
        print(f"{name:<44} {s:8.2f} s  {'' if g is None else f'{g / s:6.1f} GFLOP/s'}{extra}", flush=True)

    t = time.perf_counter()
    net = load_model(path, device=dev)
    sync(dev)
    record("load checkpoint", time.perf_counter() - t, None, note="mmap + meta-device init")
    pipe = AgingPipeline(net, batch_size=4)

    # FLOPs in a child process: the FLOP counter imports torch._dynamo (and triton), which would add ~0.1 GB to
    # this process's peak memory and make its RSS lines unlike a real run
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        f_enc, f_pre, f_gen, f_gen256 = pool.submit(model_flops, net.config).result()

    g = torch.Generator().manual_seed(0)
    photos = [to_pil(torch.rand(3, 256, 256, generator=g) * 2 - 1)[0] for _ in range(6)]
    photo = photos[0]

    def best_of(fn, args: list) -> float:
        """Fastest of several runs (each with its own argument, e.g. a new age, so that no cache helps)."""
        best = float("inf")
        for a in args:
            t = time.perf_counter()
            fn(a)
            sync(dev)
            best = min(best, time.perf_counter() - t)
        return best

    def use(p: Precision) -> None:
        net.precision = p

    def paired(fn, args32: list, args16: list) -> dict[str, list[float]]:
        """Float32 and (with --bf16) bfloat16 calls alternately, each with its own argument; the fastest wall time
        and the fastest process CPU time (all threads; less sensitive to other work on the machine) of each."""
        best = {"fp32": [float("inf")] * 2, "bf16": [float("inf")] * 2}
        for a32, a16 in zip(args32, args16):
            for key, p, a in (("fp32", FP32, a32), ("bf16", fast_bf16, a16)):
                if key == "bf16" and not bf16:
                    continue
                use(p)
                t, c = time.perf_counter(), time.process_time()
                fn(a)
                sync(dev)
                best[key] = [min(best[key][0], time.perf_counter() - t), min(best[key][1], time.process_time() - c)]
        use(FP32)
        return best

    reps = max(1, args.reps)
    with torch.inference_mode():
        t = time.perf_counter()
        pipe(photo, [40])
        sync(dev)
        record("one (image, age) at 1024, first call after load", time.perf_counter() - t, f_enc + f_pre + f_gen,
               note="includes one-time start-up work (oneDNN kernels, first page faults)")
        record("one (image, age) at 1024, new photo", best_of(lambda p: pipe(p, [40]), photos[1:3]),
               f_enc + f_pre + f_gen, note="best of 2 photos")
        record("one more age at 1024, same photo", best_of(lambda a: pipe(photo, [a]), [45, 55]), f_enc + f_gen,
               note="best of 2 ages")

        if not args.quick:
            photo2 = photo.transpose(0)  # a different photo: encoder cache miss
            t = time.perf_counter()
            pipe(photo2, AGES11)
            sync(dev)
            record("11-age sweep at 1024 (per age)", time.perf_counter() - t,
                   f_pre + 11 * (f_enc + f_gen), per=11)

        # Previews: float32 and (with --bf16) the bfloat16 fast path, alternately, each call with its own age
        if bf16:
            t = time.perf_counter()
            use(fast_bf16)
            fast_encoder(net)
            record("bf16: copy of the age encoder (once, first fast call)", time.perf_counter() - t, None,
                   note="weights converted once; +0.53 GB")
        ages32, ages16 = [63, 67, 73, 61, 69, 71, 65, 75][:reps], [64, 66, 74, 62, 68, 72, 76, 78][:reps]
        b = paired(lambda a: pipe(photo, [a], size=256, fast=True), ages32, ages16)
        record("exact slider preview at 256, new age", b["fp32"][0], f_enc + f_gen256, note=f"best of {reps} ages",
               cpu_s=b["fp32"][1])
        if bf16:
            code16 = pipe.encode(photo).fast_codes[64][None]
            code32 = pipe.latents(photo, [64])  # float32 now (fast codes are cached apart)
            img32 = pipe.render(code32, size=256, fast=True)
            use(fast_bf16)
            img16 = pipe.render(code16, size=256, fast=True)
            record("bf16: exact slider preview at 256, new age", b["bf16"][0], f_enc + f_gen256,
                   note=f"best of {reps} ages", psnr=psnr_displayed(img16, img32),
                   wdiff=float((code16 - code32).abs().max()), cpu_s=b["bf16"][1])
        use(FP32)

        keys = pipe.latents(photo, AGES11)
        codes = [torch.lerp(keys[6:7], keys[7:8], f) for f in [0.3, 0.5, 0.7, 0.2, 0.4, 0.6, 0.8, 0.9][:reps]]
        b = paired(lambda c: pipe.render(c, size=256, fast=True), codes, codes)
        record("interpolated preview at 256 (generator)", b["fp32"][0], f_gen256, note=f"best of {reps}",
               cpu_s=b["fp32"][1])
        code = torch.lerp(keys[6:7], keys[7:8], 0.3)
        if bf16:
            img32 = pipe.render(code, size=256, fast=True)
            use(fast_bf16)
            record("bf16: interpolated preview at 256 (generator)", b["bf16"][0], f_gen256, note=f"best of {reps}",
                   psnr=psnr_displayed(pipe.render(code, size=256, fast=True), img32), cpu_s=b["bf16"][1])
            use(FP32)
            # a full-size generator pass (bands of 64 rows at 128-1024 px), bf16 against float32
            n = max(2, reps // 2)
            b = paired(lambda c: pipe.render(c, fast=True), [code] * n, [code] * n)
            img32 = pipe.render(code)
            record("generator at 1024 (render only)", b["fp32"][0], f_gen, note=f"best of {n}", cpu_s=b["fp32"][1])
            use(fast_bf16)
            record("bf16: generator at 1024 (render only)", b["bf16"][0], f_gen, note=f"best of {n}",
                   psnr=psnr_displayed(pipe.render(code, fast=True), img32), cpu_s=b["bf16"][1])
            use(FP32)

        # What the approximate previews cost in accuracy (the default 1024 path is exact)
        interp = pipe.render(torch.lerp(keys[6:7], keys[7:8], 0.3), size=256, fast=True)
        code63 = pipe.latents(photo, [63])  # cached by the exact-preview step above
        exact63 = pipe.render(code63, size=256)  # full 1024 image, average-pooled
        fast63 = pipe.render(code63, size=256, fast=True)  # generator stopped at 256
        errors = {
            "fast 256 (generator stopped at 256) vs 1024 pooled": image_error(fast63, exact63),
            "interpolated code (age 63 from 60 and 70) vs exact code, both fast 256": image_error(interp, fast63),
        }

    if not args.quick:  # a new photo each: the key ages' encoder passes are part of the video's time
        for p, photo_v in [(FP32, photos[4])] + ([(fast_bf16, photos[5])] if bf16 else []):
            use(p)
            with tempfile.TemporaryDirectory() as d:
                t, c = time.perf_counter(), time.process_time()
                res = make_lifespan(pipe, photo_v, Path(d) / "v.mp4", AGES11, frames_per_step=10, size=256)
                took, took_cpu = time.perf_counter() - t, time.process_time() - c
            name = f"lifespan video 256 px ({res.frames} frames)"
            flop = 11 * f_enc + f_pre + res.frames * f_gen256
            if p is FP32:
                record(name, took, flop, note="11 key ages encoded, then every frame rendered", cpu_s=took_cpu)
                continue
            with torch.inference_mode():  # the key frames, bf16 against float32
                enc = pipe.encode(photo_v)
                k16 = torch.stack([enc.fast_codes[a] for a in AGES11])
                f16 = pipe.render(k16, size=256, fast=True)
                use(FP32)
                k32 = pipe.latents(photo_v, AGES11)
                f32 = pipe.render(k32, size=256, fast=True)
            record("bf16: " + name, took, flop, note="11 key ages encoded, then every frame rendered; PSNR of the "
                   "11 key frames", psnr=psnr_displayed(f16, f32), wdiff=float((k16 - k32).abs().max()),
                   cpu_s=took_cpu)
        use(FP32)

    if dev == "cpu" and not args.no_int8:  # the opt-in approximate mode: int8 style heads (sam/network/quantize.py)
        from sam.network.quantize import quantize_style_heads

        t = time.perf_counter()
        quantize_style_heads(net)
        record("int8 style heads: convert (once, after load)", time.perf_counter() - t, None)
        qpipe = AgingPipeline(net, batch_size=4)
        with torch.inference_mode():
            qpipe(photos[3], [40])  # first call: start-up work for the int8 kernels
            record("int8 style heads: one (image, age) at 1024, new photo",
                   best_of(lambda p: qpipe(p, [40]), photos[1:3]), f_enc + f_pre + f_gen, note="approximate")
            record("int8 style heads: one more age at 1024",
                   best_of(lambda a: qpipe(photo, [a]), [45, 55]), f_enc + f_gen, note="approximate")
            record("int8 style heads: slider preview at 256, new age",
                   best_of(lambda a: qpipe(photo, [a], size=256, fast=True), [64, 66, 74]), f_enc + f_gen256,
                   note="approximate")
            q63 = qpipe.latents(photo, [63])
            rel = float((q63 - code63).pow(2).mean().sqrt() / (code63 - net.latent_avg).pow(2).mean().sqrt())
            errors["int8 style heads: W+ code (age 63), RMS error relative to the code's RMS about latent_avg"] = {
                "max_rel_err": round(rel, 4), "psnr_db": None}
            errors["int8 style heads vs exact: 256 px (pooled 1024) image, age 63"] = image_error(
                qpipe.render(q63, size=256), exact63)

    cal1 = calibration(dev)
    host["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    info = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": dev if not dev.startswith("cuda") else torch.cuda.get_device_name(),
        "cpu": host["cpu"],
        "machine": host,
        "bf16_native": cpu_has_native_bf16(),
        "calibration_gflops_per_s": [round(cal0, 1), round(cal1, 1)],
        "gflop": {"encoder": round(f_enc, 1), "pretrained_encoder": round(f_pre, 1), "generator_1024": round(f_gen, 1),
                  "generator_256": round(f_gen256, 1)},
        "rows": rows,
        "approximation_errors": errors,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{'cpu' if dev == 'cpu' else 'cuda'}-{machine_slug(host)}"
    (out / f"{stem}.json").write_text(json.dumps(info, indent=1) + "\n")
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in host["isa"].items())
    md = [f"Machine: {host['cpu']} ({isa}), {host['cores']} cores" + (f", GPU {host['gpu']}" if "gpu" in host else "")
          + f"; torch {info['torch']}, {info['threads']} threads, {info['device']}; load average (1/5/15 min) "
          f"{host['load_average_start']} at start, {host['load_average_end']} at end", "",
          f"Calibration {cal0:.0f} / {cal1:.0f} GFLOP/s (start / end); GFLOP per pass: {info['gflop']}", "",
          "| step | seconds | CPU seconds | GFLOP | GFLOP/s | ratio to calibration | peak RSS GiB | PSNR vs fp32 (dB) "
          "| W+ max diff vs fp32 | note |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['step']} | {r['seconds']} | {r['cpu_seconds'] or ''} | {r['gflop'] or ''} | "
                  f"{r['gflops_per_s'] or ''} | "
                  f"{r['ratio_to_calibration'] or ''} | {r['peak_rss_gib']} | {r['psnr_vs_fp32_db'] or ''} | "
                  f"{'' if r['wplus_max_diff_vs_fp32'] is None else r['wplus_max_diff_vs_fp32']} | {r['note']} |")
    pairs = {r["step"][6:]: r for r in rows if r["step"].startswith("bf16: ")}
    speedups = [f"- {k}: {r32['seconds']} s -> {pairs[k]['seconds']} s, {r32['seconds'] / pairs[k]['seconds']:.2f}x "
                f"(process CPU time {r32['cpu_seconds']} -> {pairs[k]['cpu_seconds']} s, "
                f"{r32['cpu_seconds'] / pairs[k]['cpu_seconds']:.2f}x)"
                for k, r32 in ((r["step"], r) for r in rows) if k in pairs and r32.get("cpu_seconds")]
    if speedups:
        md += ["", "bfloat16 fast path against float32 (same run, timed alternately):", ""] + speedups
    md += ["", "Approximate previews (the default full-size path is exact):", ""]
    md += [f"- {k}: {v['max_rel_err']}" if v["psnr_db"] is None else
           f"- {k}: max relative error {v['max_rel_err']}, PSNR {v['psnr_db']} dB" for k, v in errors.items()]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
