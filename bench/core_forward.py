"""Load time, peak memory and one (image, age) forward pass at 1024 px with a full-size checkpoint.

    python bench/core_forward.py --checkpoint /tmp/sam_seed0.pt [--device cpu] [--threads 2]

Without --checkpoint, the seed-0 synthetic checkpoint is built in a temporary folder by ``sam.network.synthetic``.
Prints a small Markdown table; peak RSS is the process maximum.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam.network.checkpoint import load_model  # noqa: E402
from sam.network.model import add_age_channel  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB -> GiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None
    path = args.checkpoint
    if path is None:
        from sam.network import synthetic

        tmp = tempfile.TemporaryDirectory()
        path = synthetic.save(Path(tmp.name) / "sam_seed0.pt", seed=0)
    rows = []
    rss0 = peak_rss_gb()
    t = time.perf_counter()
    net = load_model(path, device=args.device)
    rows.append(("load checkpoint", time.perf_counter() - t, peak_rss_gb()))
    x4 = add_age_channel(torch.rand(1, 3, 256, 256, device=args.device) * 2 - 1, [40])
    with torch.inference_mode():
        for label in ("forward 1024 (first)", "forward 1024 (second)"):
            t = time.perf_counter()
            net(x4, resize=False, randomize_noise=False)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            rows.append((label, time.perf_counter() - t, peak_rss_gb()))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"RSS before load {rss0:.2f} GiB\n")
    print("| step | seconds | peak RSS (GiB) |\n|---|---|---|")
    for name, sec, rss in rows:
        print(f"| {name} | {sec:.2f} | {rss:.2f} |")


if __name__ == "__main__":
    main()
