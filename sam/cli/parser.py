"""The flags of every ``python -m sam`` command, with the published SAM scripts' names, and the checks of the values
that are read once per run (ages, faces, per-face ages)."""

from __future__ import annotations

import argparse
import re

from sam.ages import AgeError, to_ages
from sam.cli.evaluate import cmd_evaluate
from sam.cli.photos import (
    cmd_align,
    cmd_inference,
    cmd_lifespan,
    cmd_reference_guided,
    cmd_side_by_side,
    cmd_style_mixing,
)
from sam.cli.video import MP4_ENDINGS, cmd_video
from sam.cli.weights import cmd_random_checkpoint, cmd_weights
from sam.network import PRECISIONS
from sam.requests import ALL, RequestError, read_face_ages, read_faces
from sam.video.probe import VIDEO_FORMAT_NAMES

__all__ = ["DEFAULT_AGES", "build_parser", "parse_ages", "parse_face_ages", "parse_faces", "plain"]

DEFAULT_AGES = "0,10,20,30,40,50,60,70,80,90,100"
DESCRIPTION = """Command-line tools: ``python -m sam <command>``, with the published SAM scripts' flag names.

Commands: ``inference``, ``side-by-side``, ``reference-guided``, ``style-mixing``, ``lifespan``, ``align``,
``evaluate``, ``weights``, ``random-checkpoint``; and ``video``, which takes one clip (``--input``, ``--output``).
The others take a folder (or one file) of photos; unaligned photos are aligned first (``--align``, the default;
``--aligned`` to skip). Files that are not images and photos without a face are skipped with a one-line reason;
existing outputs are kept unless ``--overwrite``; a summary ends every run. The exit code is non-zero only when
nothing could be processed.
"""


def parse_ages(spec: str) -> list[int]:
    try:
        ages = to_ages(a for a in str(spec).split(",") if a.strip())
    except AgeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (in {spec!r})") from None
    if not ages:
        raise argparse.ArgumentTypeError(f"give at least one age, got {spec!r}")
    return ages


def parse_faces(spec: str) -> str:
    """``--faces``: ``best``, ``all`` or face numbers such as ``1,3`` (checked now; against each photo later)."""
    text = str(spec).strip()
    if text.lower() in ("all", "everyone"):
        return ALL
    try:
        read_faces(text)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text or "best"


def parse_face_ages(spec: str) -> str:
    """``--face_ages``: one age per chosen face, e.g. ``60,,25`` (blank: the target age); checked now."""
    try:
        read_face_ages(spec, list(range(len(str(spec).split(",")))), 0)
    except RequestError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def plain(text: str) -> str:
    """``text`` with its reST markup taken off (``code``, :func:`name`, `name`): what ``--help`` prints."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"`{1,2}([^`]+)`{1,2}", r"\1", text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sam", description=plain(DESCRIPTION),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")

    model = argparse.ArgumentParser(add_help=False)
    g = model.add_argument_group("model")
    g.add_argument("--checkpoint_path", "--checkpoint", dest="checkpoint_path", default=None,
                   help="SAM checkpoint (default: found or downloaded as 'python -m sam weights' does)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--int8_style_heads", "--int8-style-heads", dest="int8_style_heads", action="store_true",
                   help="approximate: int8 encoder style heads, faster on CPU, not exact "
                        "(docs/speed.md, Approximate modes)")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto (default; fp32 for evaluate): exact float32 outputs, bfloat16 for lifespan videos and "
                        "video clips below full size on CPUs with native bfloat16; fp32: exact everywhere; bf16 / "
                        "fp16: everything reduced (docs/precision.md)")

    data = argparse.ArgumentParser(add_help=False)
    g = data.add_argument_group("inputs and outputs")
    g.add_argument("--test_batch_size", type=int, default=4,
                   help="ages encoded per batch (and images decoded per batch on a GPU; one at a time on CPU)")
    g.add_argument("--test_workers", type=int, default=0, help="accepted for compatibility with the published scripts")
    g.add_argument("--data_path", required=True, help="a folder of photos, or one photo")
    g.add_argument("--exp_dir", required=True, help="output folder")
    g.add_argument("--n_images", type=int, default=None, help="only the first N files")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: keep them)")
    al = g.add_mutually_exclusive_group()
    al.add_argument("--align", dest="align", action="store_true", default=True,
                    help="detect and FFHQ-align the best face of each photo (default)")
    al.add_argument("--aligned", dest="align", action="store_false", help="inputs are already aligned faces")
    g.add_argument("--align_size", type=int, default=256, help=argparse.SUPPRESS)

    def add(name: str, func, help: str, parents, **defaults) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=func, **defaults)
        return p

    def faces_args(p) -> None:
        p.add_argument("--faces", type=parse_faces, default="best",
                       help="whom to age: best (the best face, default), all, or face numbers such as 1,3 (best "
                            "first: 0 is the best face, as 'align --all_faces' numbers them)")

    def ages(p, default=DEFAULT_AGES, help="target ages, comma-separated"):
        p.add_argument("--target_age", type=parse_ages, default=parse_ages(default), help=f"{help} (default {default})")

    p = add("inference", cmd_inference, "age every photo to every target age", [model, data])
    ages(p)
    p.add_argument("--couple_outputs", action="store_true", help="also write input|output pairs")
    p.add_argument("--resize_outputs", action="store_true", help="256 px outputs instead of 1024")
    faces_args(p)
    p.add_argument("--paste_back", action="store_true",
                   help="write the whole photo with the face (or every face of --faces) aged and pasted back")
    p.add_argument("--face_ages", type=parse_face_ages, default=None,
                   help="with --faces and --paste_back: one age per chosen face, in their order, e.g. 60,25,,70 "
                        "(blank: the first --target_age); writes inference_results/face_ages/")

    p = add("side-by-side", cmd_side_by_side, "one strip per photo: input, then every target age", [model, data])
    ages(p)
    p.add_argument("--resize_outputs", action="store_true", help="256 px cells instead of 1024")

    p = add("reference-guided", cmd_reference_guided, "age and take the masked styles from reference faces",
            [model, data])
    ages(p)
    p.add_argument("--ref_images_paths_file", required=True, help="text file, one reference image path per line")
    p.add_argument("--latent_mask", default="8,9", help="W+ rows to inject, e.g. 8,9 or 8-17 or a preset name")
    p.add_argument("--mix_alpha", type=float, default=None, help="blend weight of the reference (default: replace)")
    p.add_argument("--resize_outputs", action="store_true", help="256 px outputs")

    p = add("style-mixing", cmd_style_mixing, "age and inject random styles into the masked W+ rows", [model, data])
    ages(p, "60", "one target age")
    p.add_argument("--n_outputs_to_generate", type=int, default=5, help="random styles per photo (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random styles (default 0)")
    p.add_argument("--latent_mask", default="8-17",
                   help="W+ rows to inject, e.g. 8-17 (default: the fine rows, colour and texture) or 8,9")
    p.add_argument("--mix_alpha", type=float, default=None, help="blend weight of the random style (default: replace)")
    p.add_argument("--resize_outputs", action="store_true", help="256 px outputs")

    p = add("lifespan", cmd_lifespan, "one lifespan MP4 per photo", [model, data])
    ages(p, help="key ages")
    p.add_argument("--frames_per_step", type=int, default=10, help="frames between consecutive key ages")
    p.add_argument("--fps", type=float, default=20, help="frames per second (default 20)")
    p.add_argument("--output_size", type=int, default=256,
                   help="frame side in px, 8 up to the model's output size (default 256)")
    p.add_argument("--boomerang", action="store_true", help="play forward then backward")
    p.add_argument("--gif", action="store_true", help="also write a GIF")
    p.add_argument("--label", action="store_true", help="burn the age into each frame")
    faces_args(p)
    p.set_defaults(paste_back=True)  # several faces: one video of the whole photo

    p = add("video", cmd_video, f"age the faces of a video clip ({VIDEO_FORMAT_NAMES}): tracked, steady, the "
            "sound kept; writes H.264 MP4", [model])
    p.add_argument("--input", required=True, help="the clip")
    p.add_argument("--output", required=True, help=f"the MP4 to write (a name ending in {', '.join(MP4_ENDINGS)})")
    p.add_argument("--target_age", type=float, default=70, help="age to show (default 70)")
    p.add_argument("--faces", choices=["largest", "all"], default="largest",
                   help="whom to age: largest (one person, the best face; default) or all")
    p.add_argument("--output_size", type=int, choices=[256, 1024], default=256,
                   help="side the face is rendered at before it is pasted back (default 256)")
    p.add_argument("--start", type=float, default=None, help="age from this second on (earlier frames: unchanged)")
    p.add_argument("--end", type=float, default=None, help="age until this second (later frames: unchanged)")
    p.add_argument("--preview", action="store_true", help="quick low-resolution pass (long side 480 px)")
    p.add_argument("--key_frames", default="auto",
                   help="frames whose faces go through the encoders: auto (default: when the face changes, at least "
                        "every 0.4 s; codes in between interpolated) or N (every N frames; 1: every frame)")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it exists")

    p = add("align", cmd_align, "FFHQ-align the faces of a folder of photos", [data])
    p.add_argument("--output_size", type=int, default=256, help="side of the aligned faces in px (default 256)")
    p.add_argument("--all_faces", action="store_true", help="every face (name_face0.png, ...) instead of the best one")

    p = add("evaluate", cmd_evaluate, "age every face to every target and measure apparent age and identity "
            "(CSV, Markdown report, plot, worst cases; resumable)", [model, data],
            default_precision="fp32")  # measurements stay exact and comparable across CPUs unless asked
    ages(p)
    p.add_argument("--output_size", type=int, default=256,
                   help="side of the rendered faces (default 256, the fast path; the metrics use 64-150 px chips)")
    p.add_argument("--worst", type=int, default=6, help="cases per section in worst_cases.png (default 6)")

    p = add("weights", cmd_weights, "find (or download), load and check the SAM checkpoint", [])
    p.add_argument("--checkpoint_path", "--checkpoint", dest="checkpoint_path", default=None,
                   help="where it is or goes (default: $SAM_CHECKPOINT, weights/, or the user cache folder)")
    p.add_argument("--no_download", "--no-download", dest="no_download", action="store_true",
                   help="only check; never download")
    p.add_argument("--check", metavar="PATH", default=None,
                   help="check this file (never downloads): exit 1 with the reason unless it is the published model")
    p = add("random-checkpoint", cmd_random_checkpoint,
            "write a random-weights checkpoint in the published layout (to try the tools without real weights)", [])
    p.add_argument("--out", required=True, help="the .pt file to write")
    p.add_argument("--size", choices=["tiny", "full"], default="tiny",
                   help="tiny: 32 px output, seconds per image; full: the published 1024 px size (2.3 GB)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return ap
