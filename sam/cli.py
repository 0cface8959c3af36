"""Command-line tools: ``python -m sam <command>``, with the published SAM scripts' flag names.

Commands: ``inference``, ``side-by-side``, ``reference-guided``, ``style-mixing``, ``lifespan``, ``align``,
``evaluate``, ``weights``, ``random-checkpoint``. Every command takes a folder (or one file) of photos; unaligned
photos are aligned first (``--align``, the default; ``--aligned`` to skip). Files that are not images and photos
without a face are skipped with a one-line reason; existing outputs are kept unless ``--overwrite``; a summary ends
every run. The exit code is non-zero only when nothing could be processed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

__all__ = ["main", "build_parser"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
DEFAULT_AGES = "0,10,20,30,40,50,60,70,80,90,100"


# --------------------------------------------------------------------------------------------------------------
# Inputs and the run loop


@dataclass
class Item:
    """One input photo, aligned (or taken as aligned)."""

    path: Path
    name: str  # output file name, e.g. "photo.png"
    original: Image.Image
    aligned: Image.Image
    alignment: object | None = None  # sam.align.AlignedFace


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    existing: int = 0  # items whose outputs were already there

    def report(self, out=None) -> None:
        out = out or sys.stderr
        print(f"\nDone: {len(self.done)}, skipped: {len(self.skipped)}, failed: {len(self.failed)}", file=out)
        if self.existing:
            print(f"  {self.existing} with outputs already there (use --overwrite to redo them)", file=out)
        for name, why in self.skipped:
            print(f"  skipped {name}: {why}", file=out)
        for name, why in self.failed:
            print(f"  FAILED  {name}: {why}", file=out)

    @property
    def exit_code(self) -> int:
        """0 when something was processed (or everything was already done), else 1."""
        return 0 if self.done or (self.existing and not self.failed) else 1


def parse_ages(spec: str) -> list[int]:
    try:
        ages = [int(float(a)) for a in str(spec).split(",") if a.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"ages must be comma-separated numbers, got {spec!r}") from None
    if not ages or any(not 0 <= a <= 100 for a in ages):
        raise argparse.ArgumentTypeError(f"ages must be between 0 and 100, got {spec!r}")
    return ages


def list_inputs(data_path: Path, n_images: int | None = None) -> list[Path]:
    if not data_path.exists():
        raise SystemExit(f"error: --data_path {data_path} does not exist")
    files = [data_path] if data_path.is_file() else sorted(p for p in data_path.iterdir() if p.is_file())
    files = [p for p in files if not p.name.startswith(".")]
    return files[:n_images] if n_images else files


def iter_items(args, summary: Summary, all_faces: bool = False) -> Iterator[Item]:
    """Load (and align) every input, recording skips with their reason."""
    from .align import align_all_faces, align_face
    from .image_io import ImageLoadError, load_image

    for path in list_inputs(Path(args.data_path), getattr(args, "n_images", None)):
        name = path.name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            summary.skipped.append((name, f"not an image file ({path.suffix or 'no extension'})"))
            continue
        try:
            img = load_image(path)
        except (ImageLoadError, OSError) as exc:
            summary.skipped.append((name, str(exc)))
            continue
        if not args.align:
            yield Item(path, name, img, img)
            continue
        try:
            if all_faces:
                faces = align_all_faces(img, output_size=args.align_size)
                for i, a in enumerate(faces):
                    yield Item(path, f"{path.stem}_face{i}.png", img, a.image, a)
            else:
                a = align_face(img, output_size=args.align_size)
                yield Item(path, name, img, a.image, a)
        except ValueError as exc:  # NoFaceError and friends
            summary.skipped.append((name, str(exc)))


def run_items(args, summary: Summary, outputs: Callable[[Item], list[Path]], work: Callable[[Item], None],
              all_faces: bool = False) -> list[float]:
    """The loop every command shares: progress bar, skip existing, per-item timing, errors kept per item."""
    from tqdm import tqdm

    times: list[float] = []
    n_files = len(list_inputs(Path(args.data_path), getattr(args, "n_images", None)))
    items = iter_items(args, summary, all_faces)
    bar = tqdm(items, desc=args.command, unit="img", total=None if all_faces else n_files, file=sys.stderr)
    for item in bar:
        outs = outputs(item)
        if outs and not args.overwrite and all(p.exists() for p in outs):
            summary.existing += 1
            continue
        t = time.perf_counter()
        try:
            work(item)
        except (ValueError, OSError) as exc:
            summary.failed.append((item.name, str(exc)))
            continue
        dt = time.perf_counter() - t
        times.append(dt)
        summary.done.append(item.name)
        bar.set_postfix_str(f"{item.name}: {dt:.2f}s")
    return times


def load_pipeline(args):
    from .model import CheckpointError
    from .pipeline import AgingPipeline, default_device, resolve_checkpoint

    path = resolve_checkpoint(args.checkpoint_path)
    try:
        return AgingPipeline.from_pretrained(path, device=args.device or default_device(),
                                             batch_size=args.test_batch_size, int8_style_heads=args.int8_style_heads,
                                             precision=getattr(args, "precision", None)
                                             or getattr(args, "default_precision", "auto"))
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    img.save(tmp, format=_format_for(path))
    tmp.replace(path)


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
            ".tiff": "TIFF"}.get(ext, "PNG")


def _png_name(name: str) -> str:
    """Output name: keep the input name for formats we write losslessly or commonly, else switch to .png."""
    p = Path(name)
    return name if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"} else p.stem + ".png"


# --------------------------------------------------------------------------------------------------------------
# Commands


def cmd_inference(args) -> int:
    pipe = load_pipeline(args)
    exp = Path(args.exp_dir)
    size = 256 if args.resize_outputs else pipe.output_size
    size = min(size, pipe.output_size)
    summary = Summary()

    def outputs(item: Item) -> list[Path]:
        n = _png_name(item.name)
        outs = [exp / "inference_results" / str(a) / n for a in args.target_age]
        if args.couple_outputs:
            outs += [exp / "inference_coupled" / str(a) / n for a in args.target_age]
        return outs

    def work(item: Item) -> None:
        from .grid import hstack

        images = pipe(item.aligned, args.target_age, size=size)
        n = _png_name(item.name)
        for age, img in zip(args.target_age, images):
            save(img, exp / "inference_results" / str(age) / n)
            if args.couple_outputs:
                save(hstack([item.aligned, img], size), exp / "inference_coupled" / str(age) / n)

    times = run_items(args, summary, outputs, work)
    if times:
        exp.mkdir(parents=True, exist_ok=True)
        std = statistics.pstdev(times) if len(times) > 1 else 0.0
        line = f"Runtime {statistics.mean(times):.4f}+-{std:.4f}"
        (exp / "stats.txt").write_text(line + f"\n(per image, {len(args.target_age)} ages, {len(times)} images)\n")
        print(line, file=sys.stderr)
    summary.report()
    return summary.exit_code


def cmd_side_by_side(args) -> int:
    pipe = load_pipeline(args)
    exp = Path(args.exp_dir) / "inference_side_by_side"
    size = min(256 if args.resize_outputs else pipe.output_size, pipe.output_size)
    summary = Summary()

    def work(item: Item) -> None:
        from .grid import hstack

        images = pipe(item.aligned, args.target_age, size=size)
        save(hstack([item.aligned, *images], size), exp / _png_name(item.name))

    run_items(args, summary, lambda it: [exp / _png_name(it.name)], work)
    summary.report()
    return summary.exit_code


def _read_reference_paths(path: str) -> list[Path]:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: --ref_images_paths_file {p} does not exist")
    lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    refs = [(p.parent / ln) if not Path(ln).is_absolute() and not Path(ln).exists() else Path(ln) for ln in lines]
    if not refs:
        raise SystemExit(f"error: {p} lists no reference images")
    return refs


def cmd_reference_guided(args) -> int:
    import torch

    from .align import align_face
    from .grid import grid
    from .image_io import load_image
    from .mixing import parse_latent_mask
    from .model import mix_styles
    from .pipeline import to_pil

    pipe = load_pipeline(args)
    n_styles = pipe.model.config.n_styles
    try:
        mask = parse_latent_mask(args.latent_mask, n_styles)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    refs = []
    for rp in _read_reference_paths(args.ref_images_paths_file):
        try:
            img = load_image(rp)
            refs.append(align_face(img, output_size=args.align_size).image if args.align else img)
        except (ValueError, OSError) as exc:
            print(f"warning: reference {rp} skipped: {exc}", file=sys.stderr)
    if not refs:
        raise SystemExit("error: none of the reference images could be used")
    ref_codes = [pipe.reference_code(r) for r in refs]
    exp = Path(args.exp_dir) / "reference_guided_inference"
    size = min(256 if args.resize_outputs else pipe.output_size, pipe.output_size)
    cell = min(size, 256)
    summary = Summary()

    def work(item: Item) -> None:
        for age in args.target_age:
            codes = pipe.latents(item.aligned, [age])
            mixed = [mix_styles(codes, mask, rc, args.mix_alpha) for rc in ref_codes] if mask else []
            images = to_pil(pipe.render(torch.cat([codes, *mixed]), size=size))
            top = [item.aligned, *refs]
            bottom = [images[0], *images[1:]]
            save(grid([top, bottom], cell), exp / str(age) / _png_name(item.name))

    run_items(args, summary, lambda it: [exp / str(a) / _png_name(it.name) for a in args.target_age], work)
    summary.report()
    return summary.exit_code


def cmd_style_mixing(args) -> int:
    import torch

    from .grid import hstack
    from .mixing import parse_latent_mask, random_w_codes
    from .model import mix_styles
    from .pipeline import to_pil

    pipe = load_pipeline(args)
    try:
        mask = parse_latent_mask(args.latent_mask, pipe.model.config.n_styles)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    age = args.target_age[0]
    injects = random_w_codes(pipe.model, args.n_outputs_to_generate, args.seed)
    exp = Path(args.exp_dir) / "style_mixing" / str(age)
    size = min(256 if args.resize_outputs else pipe.output_size, pipe.output_size)
    summary = Summary()

    def work(item: Item) -> None:
        codes = pipe.latents(item.aligned, [age])
        mixed = [mix_styles(codes, mask, injects[i : i + 1], args.mix_alpha) for i in range(injects.shape[0])]
        images = to_pil(pipe.render(torch.cat([codes, *mixed]), size=size))
        save(hstack([item.aligned, *images], min(size, 256)), exp / _png_name(item.name))

    run_items(args, summary, lambda it: [exp / _png_name(it.name)], work)
    summary.report()
    return summary.exit_code


def cmd_lifespan(args) -> int:
    from tqdm import tqdm

    from .video import make_lifespan

    pipe = load_pipeline(args)
    if args.output_size > pipe.output_size:
        raise SystemExit(f"error: --output_size {args.output_size} is larger than the model's {pipe.output_size}")
    exp = Path(args.exp_dir) / "lifespan"
    summary = Summary()

    def outputs(item: Item) -> list[Path]:
        stem = Path(item.name).stem
        return [exp / f"{stem}.mp4"] + ([exp / f"{stem}.gif"] if args.gif else [])

    def work(item: Item) -> None:
        stem = Path(item.name).stem
        with tqdm(total=None, desc=f"frames {stem}", unit="frame", leave=False, file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            make_lifespan(pipe, item.aligned, exp / f"{stem}.mp4", key_ages=args.target_age,
                          frames_per_step=args.frames_per_step, fps=args.fps, size=args.output_size,
                          boomerang=args.boomerang, label=args.label,
                          gif_path=exp / f"{stem}.gif" if args.gif else None, progress=progress)

    run_items(args, summary, outputs, work)
    summary.report()
    return summary.exit_code


def cmd_align(args) -> int:
    args.align = True
    args.align_size = args.output_size
    exp = Path(args.exp_dir) / "aligned"
    summary = Summary()

    def out(item: Item) -> Path:
        return exp / (item.name if args.all_faces else Path(item.name).stem + ".png")

    run_items(args, summary, lambda it: [out(it)], lambda it: save(it.aligned, out(it)), all_faces=args.all_faces)
    summary.report()
    return summary.exit_code


def cmd_weights(args) -> int:
    try:
        from .weights import ensure_checkpoint
    except ImportError:
        raise SystemExit("error: weights download support is not available in this version") from None
    try:
        path = ensure_checkpoint(args.checkpoint_path, download=not args.no_download)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(path)
    return 0


def cmd_random_checkpoint(args) -> int:
    """A checkpoint in the published layout with random weights: for trying every command without real weights."""
    import torch

    from .model import SAM, TINY_CONFIG, SAMConfig, random_init_

    config = TINY_CONFIG if args.size == "tiny" else SAMConfig()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"error: {out} exists (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = random_init_(SAM(config), seed=args.seed)
    model.opts["note"] = "random weights for testing, not a trained model"
    with torch.no_grad():
        model.save(out)
    print(out)
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import Evaluator
    from .metrics import FaceMetrics

    metrics = FaceMetrics()
    problems = [p for p in metrics.available().values() if p]
    if problems:
        raise SystemExit("error: evaluate needs the age and identity models: " + "; ".join(dict.fromkeys(problems)))
    pipe = load_pipeline(args)
    exp = Path(args.exp_dir)
    ev = Evaluator(pipe, exp, args.target_age, metrics=metrics, size=args.output_size, overwrite=args.overwrite)
    summary = Summary()
    names: list[str] = []
    already: set[str] = set()

    def work(item: Item) -> None:
        names.append(item.name)
        if not ev.process(item.name, item.aligned):
            already.add(item.name)

    run_items(args, summary, lambda it: [], work)
    summary.done = [n for n in summary.done if n not in already]
    summary.existing += len(already)
    report = ev.report(images=names, worst=args.worst)
    n_rows = sum(1 for (n, a) in ev.rows if n in set(names) and a in ev.target_ages)
    print(f"{n_rows} rows in {ev.csv_path}; report: {report}", file=sys.stderr)
    summary.report()
    return summary.exit_code


# --------------------------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sam", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")

    model = argparse.ArgumentParser(add_help=False)
    g = model.add_argument_group("model")
    g.add_argument("--checkpoint_path", default=None,
                   help="SAM checkpoint (default: $SAM_CHECKPOINT or weights/sam_ffhq_aging.pt)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--test_batch_size", type=int, default=4,
                   help="ages encoded per batch (and images decoded per batch on a GPU; one at a time on CPU)")
    g.add_argument("--test_workers", type=int, default=0, help="accepted for compatibility with the published scripts")
    g.add_argument("--int8_style_heads", action="store_true",
                   help="approximate: int8 encoder style heads, faster on CPU, not exact (see README, Speed on CPU)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                   help="auto (default; fp32 for evaluate): exact float32 outputs, bfloat16 for lifespan videos on "
                        "CPUs with native bfloat16; fp32: exact everywhere; bf16 / fp16: everything reduced (README)")

    data = argparse.ArgumentParser(add_help=False)
    g = data.add_argument_group("inputs and outputs")
    g.add_argument("--data_path", required=True, help="a folder of photos, or one photo")
    g.add_argument("--exp_dir", required=True, help="output folder")
    g.add_argument("--n_images", type=int, default=None, help="only the first N files")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: keep them)")
    al = g.add_mutually_exclusive_group()
    al.add_argument("--align", dest="align", action="store_true", default=True,
                    help="detect and FFHQ-align the largest face of each photo (default)")
    al.add_argument("--aligned", dest="align", action="store_false", help="inputs are already aligned faces")
    g.add_argument("--align_size", type=int, default=256, help=argparse.SUPPRESS)

    def add(name: str, func, help: str, parents, **defaults) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=func, **defaults)
        return p

    def ages(p, default=DEFAULT_AGES, help="target ages, comma-separated"):
        p.add_argument("--target_age", type=parse_ages, default=parse_ages(default), help=f"{help} (default {default})")

    p = add("inference", cmd_inference, "age every photo to every target age", [model, data])
    ages(p)
    p.add_argument("--couple_outputs", action="store_true", help="also write input|output pairs")
    p.add_argument("--resize_outputs", action="store_true", help="256 px outputs instead of 1024")

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
    p.add_argument("--n_outputs_to_generate", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latent_mask", default="8-17")
    p.add_argument("--mix_alpha", type=float, default=None)
    p.add_argument("--resize_outputs", action="store_true", help="256 px outputs")

    p = add("lifespan", cmd_lifespan, "one lifespan MP4 per photo", [model, data])
    ages(p, help="key ages")
    p.add_argument("--frames_per_step", type=int, default=10, help="frames between consecutive key ages")
    p.add_argument("--fps", type=float, default=20)
    p.add_argument("--output_size", type=int, default=256, help="frame side: 256, 512 or 1024 (default 256)")
    p.add_argument("--boomerang", action="store_true", help="play forward then backward")
    p.add_argument("--gif", action="store_true", help="also write a GIF")
    p.add_argument("--label", action="store_true", help="burn the age into each frame")

    p = add("align", cmd_align, "FFHQ-align the faces of a folder of photos", [data])
    p.add_argument("--output_size", type=int, default=256)
    p.add_argument("--all_faces", action="store_true", help="every face (name_face0.png, ...) instead of the largest")

    p = add("evaluate", cmd_evaluate, "age every face to every target and measure apparent age and identity "
            "(CSV, Markdown report, plot, worst cases; resumable)", [model, data],
            default_precision="fp32")  # measurements stay exact and comparable across CPUs unless asked
    ages(p)
    p.add_argument("--output_size", type=int, default=256,
                   help="side of the rendered faces (default 256, the fast path; the metrics use 64-150 px chips)")
    p.add_argument("--worst", type=int, default=6, help="cases per section in worst_cases.png (default 6)")

    p = add("weights", cmd_weights, "find, download and validate the SAM checkpoint", [])
    p.add_argument("--checkpoint_path", default=None)
    p.add_argument("--no_download", action="store_true", help="only check; never download")
    p = add("random-checkpoint", cmd_random_checkpoint,
            "write a random-weights checkpoint in the published layout (to try the tools without real weights)", [])
    p.add_argument("--out", required=True)
    p.add_argument("--size", choices=["tiny", "full"], default="tiny",
                   help="tiny: 32 px output, seconds per image; full: the published 1024 px size (2.3 GB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "test_batch_size", 1) < 1:
        raise SystemExit("error: --test_batch_size must be >= 1")
    return int(args.func(args) or 0)
