"""Several faces in one photo (sam.session.GroupSession): how long the six-face photo takes, from upload to the
whole photo with everyone aged.

Times, on one photo (insightface's ``t1.jpg``, 1280x886, six faces of about 110 px; ``--photo`` for another):
finding and aligning the faces, the first group preview (fast frozen-encoder pass per face, faces rendered at
256 px with the generator stopped early, pasted back), the exact group preview, an interpolated group preview
(after the key ages on both sides are known: the generator alone), and the full-resolution render of every face
pasted back. Results go to ``bench/results/<date>-group-<machine>.md`` / ``.json``.

    python bench/group_benchmark.py --checkpoint /tmp/sam-full/sam_seed0.pt [--photo family.jpg] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report  # noqa: E402
from sam.pipeline import AgingPipeline  # noqa: E402
from sam.session import SessionCache  # noqa: E402


def group_photo() -> Path:
    spec = importlib.util.find_spec("insightface")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "images" / "t1.jpg"
        if path.is_file():
            return path
    raise SystemExit("no --photo given and insightface (requirements-dev.txt) is not installed")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def timed(fn) -> tuple[float, object]:
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--photo", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--repeats", type=int, default=2, help="runs of the exact and interpolated previews")
    ap.add_argument("--no-full", action="store_true", help="skip the full-resolution render")
    ap.add_argument("--no-save", action="store_true", help="print only")
    args = ap.parse_args(argv)
    photo = Path(args.photo) if args.photo else group_photo()
    load_s, pipe = timed(lambda: AgingPipeline.from_pretrained(args.checkpoint, download=False, device=args.device,
                                                               precision=args.precision))
    cache = SessionCache(pipe)
    rows: dict[str, float] = {}
    rows["find and align the faces"], group = timed(lambda: cache.group(str(photo), "all"))
    n = len(group.faces)
    ages = group.ages(70)
    rows["first group preview (fast encodings)"], _ = timed(lambda: group.preview(ages, first=True))
    rows["exact encodings of every face"], _ = timed(lambda: [s.encoded for s in group.sessions])
    exact = [timed(lambda k=k: group.preview(group.ages(40 + 10 * k)))[0] for k in range(args.repeats)]
    rows["exact group preview (codes + render + paste)"] = statistics.median(exact)
    one = group.ages(40)  # every face at 40 (kept from the first exact preview), then face 2 alone at 75
    one[2 % n] = 75
    rendered = group.pictures_rendered
    rows["one face's own age (the others' pictures kept)"], _ = timed(lambda: group.preview(one))
    counts = {"faces rendered for one face's own age": group.pictures_rendered - rendered}
    rendered = group.pictures_rendered
    rows["every face at a new age (for comparison)"], _ = timed(lambda: group.preview(group.ages(85)))
    counts["faces rendered for a new age of everyone"] = group.pictures_rendered - rendered
    for s in group.sessions:  # the key ages on both sides of 63-64 (the background warm-up's work)
        s.warm_key_ages([60, 70])
    quick = [timed(lambda k=k: group.preview(group.ages(63 + k), quick=True))[0] for k in range(args.repeats)]
    rows["interpolated group preview (generator + paste)"] = statistics.median(quick)
    faces = [s.face_image for s in group.sessions]
    rows["paste only (six 256 px faces into the photo)"], _ = timed(lambda: group.paste(faces))
    if not args.no_full:
        rows["full resolution: every face at 1024 px, pasted"], full = timed(lambda: group.render(ages))
    machine = cpu_name()
    lines = [f"# Group photo: {n} faces ({photo.name}, {group.photo.image.width}x{group.photo.image.height})", "",
             f"- machine: {machine}, {torch.get_num_threads()} torch threads; precision {pipe.precision.name} "
             f"({pipe.precision.reason}); checkpoint loaded in {load_s:.1f} s",
             "- the machine is shared with other engineers' work (run niced): treat the times as upper bounds", "",
             "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in rows.items()]
    lines += ["", "| count | faces |", "|---|---:|", *[f"| {k} | {v} |" for k, v in counts.items()]]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_save:
        slug = "-".join(w for w in machine.lower().replace("(r)", "").split()[:3] if w.isalnum()) or "cpu"
        report.save("group", slug, text, {"photo": str(photo.name), "faces": n, "seconds": rows, "counts": counts,
                                          "machine": machine, "threads": torch.get_num_threads(),
                                          "precision": pipe.precision.name, "load_s": load_s})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
