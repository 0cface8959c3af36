"""Speed of the video job (``sam/clip.py``): frames per second and the cost per frame of each stage.

    python bench/video_benchmark.py [--checkpoint PATH | --full] [--seconds 4] [--size 320x240] [--threads 1]
                                    [--output_size 256] [--device cpu]

The clip is the tests' one (``tests/clipmaker.py``: the astronaut photo still, then moved, scaled and tilted, with
noise and a sine-tone sound track). Without ``--checkpoint`` the tiny random-weights model is used (a 32 px
generator: it measures the video plumbing, detection and tracking, not the real networks); ``--full`` builds the
full-size seed-0 synthetic checkpoint (2.3 GB, the published layout and cost) in a temporary folder.

Stages, per frame (ms): read (decode), detect (dlib HOG on key frames, averaged over all frames), align (landmarks
by the shape predictor, One Euro filter, FFHQ warp), encode (frozen encoder + SAM encoder), render (generator),
paste (colour shift + feathered paste-back), write (H.264 encode and the audio mux). Prints a Markdown table and
writes ``bench/results/<date>-video-<model>.md`` and ``.json``; the CPU is named from ``/proc/cpuinfo``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam.clip import age_clip, probe_clip  # noqa: E402
from sam.model import SAM, TINY_CONFIG, random_init_  # noqa: E402
from sam.pipeline import AgingPipeline  # noqa: E402
from tests.clipmaker import make_clip  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", default=None, help="a SAM checkpoint (default: the tiny random one)")
    g.add_argument("--full", action="store_true", help="the full-size seed-0 synthetic checkpoint (built, 2.3 GB)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", default="320x240", help="clip frame size WxH (default 320x240)")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--output_size", type=int, default=256, help="face render size (capped at the model's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="sam-video-bench-") as tmp:
        tmp = Path(tmp)
        if args.full:
            from sam import synthetic

            ckpt, model_name = synthetic.save(tmp / "sam_seed0.pt", seed=0), "full"
        elif args.checkpoint:
            ckpt, model_name = Path(args.checkpoint), "checkpoint"
        else:
            ckpt, model_name = tmp / "tiny.pt", "tiny"
            random_init_(SAM(TINY_CONFIG)).save(ckpt)
        pipe = AgingPipeline.from_pretrained(ckpt, download=False, device=args.device)
        src = make_clip(tmp / "clip.mp4", seconds=args.seconds, fps=args.fps, size=(w, h),
                        still=args.seconds * 0.4)
        info = probe_clip(src)
        t0 = time.perf_counter()
        res = age_clip(pipe, info, tmp / "out.mp4", 70, output_size=args.output_size)
        wall = time.perf_counter() - t0
    per = {k: v / res.frames * 1000 for k, v in res.seconds.items()}
    row = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(), "device": args.device, "threads": args.threads, "model": model_name,
        "model_output_size": pipe.output_size, "face_render_size": min(args.output_size, pipe.output_size),
        "clip": f"{w}x{h}, {res.frames} frames, {float(res.fps):g} fps", "precision": "fp32",
        "frames_per_second": res.frames / wall, "wall_s": wall, "ms_per_frame": per,
    }
    lines = [
        f"# Video job benchmark ({row['date']})", "",
        f"CPU: {row['cpu']} ({args.threads} torch thread{'s' * (args.threads > 1)}), device {args.device}; model: "
        f"{model_name} ({pipe.output_size} px generator, faces rendered at {row['face_render_size']} px, fp32); "
        f"clip {row['clip']}.", "",
        f"**{row['frames_per_second']:.2f} frames/s** ({wall:.1f} s for {res.frames} frames)", "",
        "| stage | ms per frame |", "|---|---:|",
        *(f"| {k} | {v:.1f} |" for k, v in per.items()),
        f"| **total** | {sum(per.values()):.1f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"{dt.date.today().isoformat()}-video-{model_name}"
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps(row, indent=2) + "\n")
        print(f"written: {stem}.md, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
