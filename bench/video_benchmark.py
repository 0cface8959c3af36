"""Speed and accuracy of the video job (``sam/video/clip.py``): before/after in one run, on the same clip.

    python bench/video_benchmark.py [--checkpoint PATH | --full] [--seconds 2.4] [--size 640x480] [--threads 2]
                                    [--output_size 256] [--key_frames auto] [--before every-frame|COMMIT]
                                    [--device cpu]

The clip is the tests' one (``tests/clipmaker.py``: the astronaut photo still for 40 % of the time, then moved,
scaled and tilted, with noise and a sine-tone sound track). Without ``--checkpoint`` the tiny random-weights model
is used (it measures the plumbing, not the networks); ``--full`` builds the full-size seed-0 synthetic checkpoint
(2.3 GB, the published layout and cost) in a temporary folder.

Runs of the same clip, same threads, same precision (``auto``), one after the other in one process:

* **every frame**: this code with ``key_frames=1`` and no threads: the landed algorithm of commit 920ea10 (both
  encoders on every frame, one stage after another); ``tests/test_clip.py`` checks that its codes are those of
  920ea10's per-frame loop bit for bit. It is **before** (default ``--before every-frame``), and its codes are the
  accuracy reference;
* with ``--before COMMIT`` *before* is that commit itself, run from a temporary ``git worktree`` in a subprocess
  (model load not timed; a third run, and the every-frame output is compared with it);
* **after**: this code as shipped (``key_frames=auto``, threads).

Reported: frames/s (frames / wall time of ``age_clip``), ms per frame per stage (time spent in each; with threads
the stages overlap, so they add up to more than the wall time), key frames, and the accuracy of *after* against
*before*: PSNR of the face region (each frame's tracked face box, all frames), the largest code difference against
every-frame codes, and the flicker figure of ``tests/test_clip.py`` (mean absolute difference between consecutive
frames inside the face box: on the still segment, as the test, and over the whole clip) as a ratio after / before.
Writes ``bench/results/<date>-video-<model>-<cpu>.md`` and ``.json``; the CPU is named from ``/proc/cpuinfo``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.benchmark import machine, machine_slug  # noqa: E402
from sam.network.model import SAM, TINY_CONFIG, random_init_  # noqa: E402
from sam.pipeline import AgingPipeline  # noqa: E402
from sam.video.clip import age_clip  # noqa: E402
from sam.video.probe import probe_clip, read_frames  # noqa: E402
from tests.clipmaker import make_clip  # noqa: E402

# Run in the old commit's worktree: the same job, timed the same way (frames / wall of age_clip).
BEFORE_SCRIPT = """
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from sam.clip import age_clip, probe_clip  # the old path: it works in old and new trees alike
from sam.pipeline import AgingPipeline
torch.set_num_threads(int(sys.argv[5]))
pipe = AgingPipeline.from_pretrained(sys.argv[2], download=False, device=sys.argv[6])
info = probe_clip(sys.argv[3])
t0 = time.perf_counter()
res = age_clip(pipe, info, sys.argv[4], 70, output_size=int(sys.argv[7]))
wall = time.perf_counter() - t0
print("RESULT " + json.dumps({"wall": wall, "frames": res.frames, "seconds": res.seconds}))
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_before(commit: str, ckpt: Path, clip: Path, out: Path, threads: int, device: str, size: int) -> dict:
    """``age_clip`` of ``commit``, from a temporary worktree, in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="sam-before-") as wt:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", wt, commit], check=True,
                       capture_output=True)
        try:
            done = subprocess.run([sys.executable, "-c", BEFORE_SCRIPT, wt, str(ckpt), str(clip), str(out),
                                   str(threads), device, str(size)], capture_output=True, text=True, cwd=wt)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", wt], capture_output=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the run of {commit} failed:\n{done.stderr[-3000:]}")
    return json.loads(line[7:])


def frames_of(path: Path) -> np.ndarray:
    return np.stack([a.astype(np.float64) for a in read_frames(probe_clip(path))])


def crop(a: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return a[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]


def face_psnr(a: np.ndarray, b: np.ndarray, boxes: dict[int, np.ndarray]) -> float:
    err = [((crop(a[i], box) - crop(b[i], box)) ** 2).ravel() for i, box in boxes.items()]
    mse = float(np.concatenate(err).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def flicker(frames: np.ndarray, box: np.ndarray) -> float:
    """As ``tests/test_clip.py``: mean absolute difference between consecutive frames inside ``box``."""
    crops = np.array([crop(f, box) for f in frames])
    return float(np.abs(np.diff(crops, axis=0)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", default=None, help="a SAM checkpoint (default: the tiny random one)")
    g.add_argument("--full", action="store_true", help="the full-size seed-0 synthetic checkpoint (built, 2.3 GB)")
    ap.add_argument("--seconds", type=float, default=2.4, help="clip length (default 2.4: 60 frames at 25 fps)")
    ap.add_argument("--size", default="640x480", help="clip frame size WxH (default 640x480)")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--output_size", type=int, default=256, help="face render size (capped at the model's)")
    ap.add_argument("--key_frames", default="auto", help="the after run's key frames: auto or N (default auto)")
    ap.add_argument("--before", default="every-frame",
                    help="every-frame (default: this code with key_frames=1, no threads) or a commit, e.g. 920ea10")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="sam-video-bench-") as tmp:
        tmp = Path(tmp)
        if args.full:
            from sam.network import synthetic

            ckpt, model_name = synthetic.save(tmp / "sam_seed0.pt", seed=0), "full"
        elif args.checkpoint:
            ckpt = Path(args.checkpoint)
            model_name = "full" if "sam_seed0" in ckpt.name else "checkpoint"
        else:
            ckpt, model_name = tmp / "tiny.pt", "tiny"
            random_init_(SAM(TINY_CONFIG)).save(ckpt)
        still = args.seconds * 0.4
        src = make_clip(tmp / "clip.mp4", seconds=args.seconds, fps=args.fps, size=(w, h), still=still)
        info = probe_clip(src)

        if args.before != "every-frame":
            print(f"before ({args.before}) ...", file=sys.stderr, flush=True)
            before = run_before(args.before, ckpt, src, tmp / "before.mp4", args.threads, args.device,
                                args.output_size)
        pipe = AgingPipeline.from_pretrained(ckpt, download=False, device=args.device)
        print("every frame (key_frames=1, no threads) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        ref = age_clip(pipe, info, tmp / "ref.mp4", 70, output_size=args.output_size, key_frames=1, overlap=False,
                       trace=True)
        ref_wall = time.perf_counter() - t0
        if args.before == "every-frame":
            before = {"wall": ref_wall, "frames": ref.frames, "seconds": ref.seconds}
            (tmp / "before.mp4").write_bytes(ref.path.read_bytes())
        print(f"after (key_frames={args.key_frames}, threads) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        new = age_clip(pipe, info, tmp / "new.mp4", 70, output_size=args.output_size, key_frames=args.key_frames,
                       trace=True)
        wall = time.perf_counter() - t0
        a_before, a_ref, a_new = frames_of(tmp / "before.mp4"), frames_of(ref.path), frames_of(new.path)

    boxes = {f.frame: f.box for f in new.trace if f.face == 0}
    still_frames = [i for i in boxes if 0.2 * args.fps <= i < still * args.fps]  # as the test: settled, still
    still_box = np.mean([boxes[i] for i in still_frames], axis=0)
    all_box = np.mean(list(boxes.values()), axis=0)
    codes_ref = {(f.frame, f.face): f.code for f in ref.trace}
    diffs = [(f.code - codes_ref[(f.frame, f.face)]).abs().max().item() for f in new.trace
             if (f.frame, f.face) in codes_ref]
    scale = max(c.abs().max().item() for c in codes_ref.values())
    fl = {name: (flicker(a[still_frames], still_box), flicker(a, all_box))
          for name, a in (("before", a_before), ("after", a_new))}
    n = new.frames
    row = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(), "device": args.device, "threads": args.threads, "model": model_name,
        "precision": str(pipe.precision), "model_output_size": pipe.output_size, "face_render_size": args.output_size,
        "clip": f"{w}x{h}, {n} frames, {float(info.fps):g} fps ({still:g} s still, then moving)",
        "before": {"what": args.before if args.before != "every-frame" else
                   "this code, key_frames=1, no threads (920ea10's algorithm, bit-exact codes)",
                   "frames_per_second": before["frames"] / before["wall"],
                   "wall_s": before["wall"], "ms_per_frame": {k: v / before["frames"] * 1000
                                                              for k, v in before["seconds"].items()}},
        "every_frame": {"frames_per_second": ref.frames / ref_wall, "wall_s": ref_wall,
                        "face_psnr_vs_before_db": face_psnr(a_ref, a_before, boxes)},
        "after": {"key_frames_option": args.key_frames, "frames_per_second": n / wall, "wall_s": wall,
                  "key_frames": new.key_frames,
                  "ms_per_frame": {k: v / n * 1000 for k, v in new.seconds.items()}},
        "speedup": (n / wall) / (before["frames"] / before["wall"]),
        "accuracy": {
            "face_psnr_db": face_psnr(a_new, a_before, boxes),
            "largest_code_difference": max(diffs), "largest_code_value": scale,
            "flicker_still": {"before": fl["before"][0], "after": fl["after"][0],
                              "ratio": fl["after"][0] / fl["before"][0]},
            "flicker_clip": {"before": fl["before"][1], "after": fl["after"][1],
                             "ratio": fl["after"][1] / fl["before"][1]},
        },
    }
    b, af, acc = row["before"], row["after"], row["accuracy"]
    stages = list(dict.fromkeys([*b["ms_per_frame"], *af["ms_per_frame"]]))
    lines = [
        f"# Video job benchmark ({row['date']})", "",
        f"CPU: {row['cpu']} ({args.threads} torch threads), device {args.device}; model: {model_name} "
        f"({pipe.output_size} px generator, faces rendered at {args.output_size} px, precision {row['precision']}); "
        f"clip {row['clip']}.", "",
        f"**before ({b['what']}): {b['frames_per_second']:.2f} frames/s; after "
        f"(key_frames={args.key_frames}, threads): {af['frames_per_second']:.2f} frames/s: "
        f"{row['speedup']:.2f}x** ({af['key_frames']} key frames of {n})", "",
        "| stage (ms per frame) | before | after |", "|---|---:|---:|",
        *(f"| {k} | {b['ms_per_frame'].get(k, 0):.1f} | {af['ms_per_frame'].get(k, 0):.1f} |" for k in stages),
        f"| **wall** | {1000 / b['frames_per_second']:.1f} | {1000 / af['frames_per_second']:.1f} |", "",
        "Accuracy of after against before (every-frame encoding):", "",
        "| figure | value |", "|---|---:|",
        f"| face-region PSNR | {acc['face_psnr_db']:.1f} dB |",
        f"| largest code difference (max abs, W+) | {acc['largest_code_difference']:.4f} "
        f"(largest code value {scale:.2f}) |",
        f"| flicker, still segment (before / after, grey levels) | {fl['before'][0]:.2f} / {fl['after'][0]:.2f}: "
        f"ratio {acc['flicker_still']['ratio']:.2f} |",
        f"| flicker, whole clip | {fl['before'][1]:.2f} / {fl['after'][1]:.2f}: ratio "
        f"{acc['flicker_clip']['ratio']:.2f} |",
        f"| every-frame path of this code vs before: face PSNR | "
        f"{row['every_frame']['face_psnr_vs_before_db']:.1f} dB |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        report.save(f"video-{model_name}", machine_slug(machine("cpu")), text, row)  # the CPU named as elsewhere
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
