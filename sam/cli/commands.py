"""Command-line tools: ``python -m sam <command>``, with the published SAM scripts' flag names.

Commands: ``inference``, ``side-by-side``, ``reference-guided``, ``style-mixing``, ``lifespan``, ``align``,
``evaluate``, ``weights``, ``random-checkpoint``; and ``video``, which takes one clip (``--input``, ``--output``).
The others take a folder (or one file) of photos; unaligned photos are aligned first (``--align``, the default;
``--aligned`` to skip). Files that are not images and photos
without a face are skipped with a one-line reason; existing outputs are kept unless ``--overwrite``; a summary ends
every run. The exit code is non-zero only when nothing could be processed.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from sam.ages import AgeError, to_ages
from sam.atomic import atomic_path
from sam.cli.shard import Shard, current_shard
from sam.requests import ALL, RequestError, read_face_ages, read_faces
from sam.session import FaceSession, GroupSession, Photo
from sam.video.clip import VIDEO_FORMAT_NAMES

__all__ = ["main", "build_parser"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
DEFAULT_AGES = "0,10,20,30,40,50,60,70,80,90,100"


# --------------------------------------------------------------------------------------------------------------
# Inputs and the run loop


@dataclass
class Item:
    """One face to process: a photo (loaded safely) and which of its faces (or the photo as an aligned face)."""

    path: Path
    name: str  # output file name, e.g. "photo.png"
    photo: Photo
    face_index: int = 0
    already_aligned: bool = False
    faces: list[int] | None = None  # several faces aged together into the whole photo (--faces with --paste_back)
    _session: FaceSession | None = field(default=None, repr=False)

    def session(self, pipe) -> FaceSession:
        """The face session (aligned and encoded once)."""
        if self._session is None:
            self._session = FaceSession(pipe, self.photo, self.face_index, self.already_aligned)
        return self._session

    def group(self, pipe) -> GroupSession:
        """The chosen faces (:attr:`faces`, or the one face) aged together into the whole photo."""
        faces = self.faces if self.faces is not None else [self.face_index]
        return GroupSession(self.photo, [FaceSession(pipe, self.photo, i) for i in faces])


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    existing: int = 0  # items whose outputs were already there
    interrupted: bool = False

    def report(self, out=None) -> None:
        out = out or sys.stderr
        if self.interrupted:
            print(f"\nInterrupted: {len(self.done)} finished ({', '.join(self.done[:5])}"
                  f"{', ...' if len(self.done) > 5 else ''}); run the same command again to do the rest.", file=out)
            return
        print(f"\nDone: {len(self.done)}, skipped: {len(self.skipped)}, failed: {len(self.failed)}", file=out)
        if self.existing:
            print(f"  {self.existing} with outputs already there (use --overwrite to redo them)", file=out)
        for name, why in self.skipped:
            print(f"  skipped {name}: {why}", file=out)
        for name, why in self.failed:
            print(f"  FAILED  {name}: {why}", file=out)

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 0 when something was processed (or everything was already done), else 1."""
        if self.interrupted:
            return 130
        return 0 if self.done or (self.existing and not self.failed) else 1


def parse_ages(spec: str) -> list[int]:
    try:
        ages = to_ages(a for a in str(spec).split(",") if a.strip())
    except AgeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (in {spec!r})") from None
    if not ages:
        raise argparse.ArgumentTypeError(f"give at least one age, got {spec!r}")
    return ages


def list_inputs(data_path: Path, n_images: int | None = None, shard: Shard | None = None) -> list[Path]:
    """The input files, sorted; under torchrun, this rank's share of them (see :mod:`sam.shard`)."""
    if not data_path.exists():
        raise SystemExit(f"error: --data_path {data_path} does not exist")
    files = [data_path] if data_path.is_file() else sorted(p for p in data_path.iterdir() if p.is_file())
    files = [p for p in files if not p.name.startswith(".") and ".partial" not in p.name]
    files = files[:n_images] if n_images else files
    return shard.take(files) if shard is not None else files


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


def iter_items(args, summary: Summary, all_faces: bool = False) -> Iterator[Item]:
    """Load every input (and find its faces), recording skips with their reason. ``--faces`` (``all``, ``1,3``):
    with ``--paste_back`` one item per photo holding those faces, else one item per face (``name_face1.png``)."""
    for path in list_inputs(Path(args.data_path), getattr(args, "n_images", None), current_shard()):
        name = path.name
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            summary.skipped.append((name, f"not an image file ({path.suffix or 'no extension'})"))
            continue
        try:
            photo = Photo.load(path)
        except (ValueError, OSError) as exc:
            summary.skipped.append((name, str(exc)))
            continue
        if not args.align:
            yield Item(path, name, photo, 0, already_aligned=True)
            continue
        try:
            photo.face(0)  # NoFaceError when there is none
        except ValueError as exc:
            summary.skipped.append((name, str(exc)))
            continue
        spec = getattr(args, "faces", "best")
        try:
            chosen = list(range(len(photo.faces))) if all_faces else read_faces(spec, len(photo.faces))
            if chosen is not None and getattr(args, "face_ages", None):
                read_face_ages(args.face_ages, chosen, 0)
        except RequestError as exc:
            summary.failed.append((name, str(exc)))
            continue
        if chosen is None:
            yield Item(path, name, photo, 0)
        elif getattr(args, "paste_back", False):
            yield Item(path, name, photo, chosen[0], faces=chosen)
        else:
            for i in chosen:
                yield Item(path, f"{path.stem}_face{i}.png", photo, i)


def complete(path: Path) -> bool:
    """An output counts as done only when it exists and is not empty (partial files have other names)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def run_items(args, summary: Summary, outputs: Callable[[Item], list[Path]], work: Callable[[Item], None],
              all_faces: bool = False) -> list[float]:
    """The loop every command shares: progress bar, skip complete items, per-item timing, errors kept per item.
    Ctrl-C stops after cleaning up the item in progress (``summary.interrupted``)."""
    from tqdm import tqdm

    times: list[float] = []
    n_files = len(list_inputs(Path(args.data_path), getattr(args, "n_images", None), current_shard()))
    items = iter_items(args, summary, all_faces)
    bar = tqdm(items, desc=args.command, unit="img", total=None if all_faces else n_files, file=sys.stderr)
    try:
        for item in bar:
            outs = outputs(item)
            if outs and not args.overwrite and all(complete(p) for p in outs):
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
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    return times


def load_pipeline(args):
    from sam.pipeline import AgingPipeline, default_device

    try:
        return AgingPipeline.from_pretrained(args.checkpoint_path,
                                             device=current_shard().device(args.device) or default_device(),
                                             batch_size=args.test_batch_size, int8_style_heads=args.int8_style_heads,
                                             precision=getattr(args, "precision", None)
                                             or getattr(args, "default_precision", "auto"))
    except ValueError as exc:  # CheckpointError (missing file: what to do), or e.g. int8 heads on a GPU
        raise SystemExit(f"error: {exc}") from None


def output_size(args, pipe) -> int:
    """The side of the images written: 256 px with ``--resize_outputs``, else the model's (never more than it)."""
    return min(256 if args.resize_outputs else pipe.output_size, pipe.output_size)


def latent_mask(args, pipe) -> list[int]:
    """``--latent_mask`` as W+ rows of this model (:func:`sam.mixing.parse_latent_mask`); a bad one ends the run
    with its reason."""
    from sam.network.mixing import parse_latent_mask

    try:
        return parse_latent_mask(args.latent_mask, pipe.n_styles)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def save(img: Image.Image, path: Path) -> None:
    """Write under a temporary name and rename when complete (an interrupted save leaves nothing)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format=_format_for(path))


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
    size = output_size(args, pipe)
    summary = Summary()

    # --face_ages: one whole photo per input, each chosen face at its own age (the rest at the first --target_age)
    ages_out = ["face_ages"] if args.face_ages and args.faces != "best" and args.paste_back else args.target_age

    def outs_for(item: Item, age: int | str) -> list[Path]:
        n = _png_name(item.name)
        outs = [exp / "inference_results" / str(age) / n]
        if args.couple_outputs:
            outs.append(exp / "inference_coupled" / str(age) / n)
        return outs

    def outputs(item: Item) -> list[Path]:
        return [p for age in ages_out for p in outs_for(item, age)]

    def work(item: Item) -> None:
        from sam.cli.grid import hstack

        missing = [a for a in ages_out if args.overwrite or not all(complete(p) for p in outs_for(item, a))]
        if item.faces is not None or args.paste_back:  # whole photos: every chosen face aged and pasted back
            g = item.group(pipe)
            for age in missing:
                wanted = g.ages(args.target_age[0], args.face_ages) if age == "face_ages" else g.ages(age)
                img = g.render(wanted, size=size)
                result, *coupled = outs_for(item, age)
                save(img, result)
                if coupled:
                    save(hstack([item.photo.image, img], max(img.size)), coupled[0])
            return
        s = item.session(pipe)
        for age, img in zip(missing, s.renders(missing, size=size)):
            result, *coupled = outs_for(item, age)
            save(img, result)
            if coupled:
                save(hstack([s.face_image, img], size), coupled[0])

    times = run_items(args, summary, outputs, work)
    shard = current_shard()
    if times:
        exp.mkdir(parents=True, exist_ok=True)
        part = exp / shard.part_name("timings", ".tsv")
        if shard.world > 1:  # this rank's times; rank 0 folds them into timings.tsv
            part.write_text("".join(f"{n}\t{t:.4f}\n" for n, t in zip(summary.done, times)))
    shard.barrier()
    if shard.main and (times or shard.world > 1):
        write_stats(exp, summary.done if shard.world == 1 else [], times if shard.world == 1 else [],
                    len(args.target_age), parts=sorted(exp.glob("timings.part*-of-*.tsv")))
    summary.report()
    return summary.exit_code


def _read_timings(path: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, sec = line.rpartition("\t")
            try:
                timings[name] = float(sec)
            except ValueError:
                continue
    return timings


def write_stats(exp: Path, names: list[str], times: list[float], n_ages: int, parts: Sequence[Path] = ()) -> None:
    """``stats.txt`` over every image timed so far in ``exp`` (the timings of earlier runs are kept in
    ``timings.tsv``, one line per image; ``parts``: other processes' timings, folded in and removed)."""
    exp.mkdir(parents=True, exist_ok=True)
    log = exp / "timings.tsv"
    timings = _read_timings(log)
    for part in parts:
        timings.update(_read_timings(part))
    timings.update(zip(names, times))
    if not timings:
        return
    log.write_text("".join(f"{n}\t{t:.4f}\n" for n, t in timings.items()))
    for part in parts:
        part.unlink(missing_ok=True)
    values = list(timings.values())
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    line = f"Runtime {statistics.mean(values):.4f}+-{std:.4f}"
    (exp / "stats.txt").write_text(line + f"\n(per image, {n_ages} ages, {len(values)} images)\n")
    print(line, file=sys.stderr)


def cmd_side_by_side(args) -> int:
    pipe = load_pipeline(args)
    exp = Path(args.exp_dir) / "inference_side_by_side"
    size = output_size(args, pipe)
    summary = Summary()

    def work(item: Item) -> None:
        from sam.cli.grid import hstack

        s = item.session(pipe)
        save(hstack([s.face_image, *s.renders(args.target_age, size=size)], size), exp / _png_name(item.name))

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

    from sam.cli.grid import grid
    from sam.pipeline import to_pil

    pipe = load_pipeline(args)
    mask = latent_mask(args, pipe)
    refs: list[FaceSession] = []
    for rp in _read_reference_paths(args.ref_images_paths_file):
        try:
            refs.append(FaceSession(pipe, Photo.load(rp, "reference photo"), 0, not args.align, what="reference photo"))
        except (ValueError, OSError) as exc:
            print(f"warning: reference {rp} skipped: {exc}", file=sys.stderr)
    if not refs:
        raise SystemExit("error: none of the reference images could be used")
    ref_codes = torch.cat([pipe.reference_code(r.encoded) for r in refs])
    exp = Path(args.exp_dir) / "reference_guided_inference"
    size = output_size(args, pipe)
    cell = min(size, 256)
    summary = Summary()

    def work(item: Item) -> None:
        s = item.session(pipe)
        for age in args.target_age:
            codes = s.code(age)
            mixed = pipe.mix_codes(s.encoded, age, ref_codes, mask, args.mix_alpha) if mask else codes[:0]
            images = to_pil(pipe.render(torch.cat([codes, mixed]), size=size))
            top = [s.face_image, *(r.face_image for r in refs)]
            save(grid([top, images], cell), exp / str(age) / _png_name(item.name))

    run_items(args, summary, lambda it: [exp / str(a) / _png_name(it.name) for a in args.target_age], work)
    summary.report()
    return summary.exit_code


def cmd_style_mixing(args) -> int:
    import torch

    from sam.cli.grid import hstack
    from sam.pipeline import to_pil

    pipe = load_pipeline(args)
    mask = latent_mask(args, pipe)
    age = args.target_age[0]
    injects = pipe.random_styles(args.n_outputs_to_generate, args.seed)
    exp = Path(args.exp_dir) / "style_mixing" / str(age)
    size = output_size(args, pipe)
    summary = Summary()

    def work(item: Item) -> None:
        s = item.session(pipe)
        mixed = pipe.mix_codes(s.encoded, age, injects, mask, args.mix_alpha)
        images = to_pil(pipe.render(torch.cat([s.code(age), mixed]), size=size))
        save(hstack([s.face_image, *images], min(size, 256)), exp / _png_name(item.name))

    run_items(args, summary, lambda it: [exp / _png_name(it.name)], work)
    summary.report()
    return summary.exit_code


def cmd_lifespan(args) -> int:
    from tqdm import tqdm

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

            whole = item.group(pipe) if item.faces is not None else item.session(pipe)
            whole.lifespan(exp / f"{stem}.mp4", keys=args.target_age,
                                        frames_between=args.frames_per_step, fps=args.fps, size=args.output_size,
                                        boomerang=args.boomerang, label=args.label,
                                        gif_path=exp / f"{stem}.gif" if args.gif else None, progress=progress)

    run_items(args, summary, outputs, work)
    summary.report()
    return summary.exit_code


def cmd_video(args) -> int:
    """Age the faces of one video clip (``sam.clip``): tracked, steadily aligned, the sound kept."""
    from tqdm import tqdm

    from sam.ages import to_age
    from sam.faces.detect import NoFaceError
    from sam.requests import RequestError
    from sam.video.clip import age_clip, probe_clip

    out = Path(args.output)
    endings = (".mp4", ".m4v", ".mov")  # H.264 MP4 under the names players accept for it
    if out.suffix.lower() not in endings:
        raise SystemExit(f"error: --output {out.name}: the video is written as H.264 MP4; give a name ending in "
                         f"{', '.join(endings[:-1])} or {endings[-1]}")
    try:
        to_age(args.target_age)
    except ValueError as exc:
        raise SystemExit(f"error: --target_age: {exc}") from None
    if str(args.key_frames).strip().lower() != "auto" and not str(args.key_frames).strip().isdigit() \
            or str(args.key_frames).strip() == "0":
        raise SystemExit(f"error: --key_frames must be auto or a whole number >= 1, got {args.key_frames!r}")
    if complete(out) and not args.overwrite:
        raise SystemExit(f"error: {out} exists (use --overwrite)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(out.stem + ".partial-check")
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SystemExit(f"error: cannot write {out}: {exc.strerror or exc}") from None
    try:
        info = probe_clip(args.input)
    except RequestError as exc:
        raise SystemExit(f"error: {args.input}: {exc}") from None
    pipe = load_pipeline(args)
    summary = Summary()
    print(f"{args.input}: {info.frames} frames, {float(info.fps):.3f} fps, {info.duration:.2f} s, "
          f"{info.size[0]}x{info.size[1]}, audio: {info.audio_codec or 'none'}", file=sys.stderr)
    with tqdm(total=info.frames, desc="video", unit="frame", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        def terminated(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # the job's cleanup runs: no partial files left

        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGTERM, terminated) if main_thread else None
        try:
            key = args.key_frames if str(args.key_frames).strip().lower() == "auto" else int(args.key_frames)
            res = age_clip(pipe, info, out, args.target_age, faces=args.faces, output_size=args.output_size,
                           start=args.start, end=args.end, preview=args.preview, key_frames=key, progress=progress)
        except (RequestError, NoFaceError) as exc:
            summary.failed.append((Path(args.input).name, str(exc)))
            res = None
        except OSError as exc:
            raise SystemExit(f"error: {out}: {exc.strerror or exc}") from None
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, before)
    if res is not None:
        summary.done.append(out.name)
        cost = ", ".join(f"{k} {v / max(res.frames, 1) * 1000:.0f}" for k, v in res.seconds.items())
        print(f"{out}: {res.frames} frames at {float(res.fps):.3f} fps, {res.duration:.2f} s, audio {res.audio}; "
              f"faces (number: frames aged) {res.faces}; {res.frames_per_second:.2f} frames/s "
              f"(ms per frame: {cost})", file=sys.stderr)
    summary.report()
    return summary.exit_code


def cmd_align(args) -> int:
    args.align = True
    exp = Path(args.exp_dir) / "aligned"
    summary = Summary()

    def out(item: Item) -> Path:
        return exp / (item.name if args.all_faces else Path(item.name).stem + ".png")

    def work(item: Item) -> None:
        save(item.photo.align(item.face_index, args.output_size).image, out(item))

    run_items(args, summary, lambda it: [out(it)], work, all_faces=args.all_faces)
    summary.report()
    return summary.exit_code


def cmd_weights(args) -> int:
    """Find (or download) the checkpoint, load it, and check it is the published model with finite weights."""
    from sam.network.checkpoint import CheckpointError
    from sam.pipeline import AgingPipeline

    try:
        pipe = AgingPipeline.from_pretrained(args.check or args.checkpoint_path, device="cpu", verify=True,
                                             download=not (args.no_download or args.check))
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    size = pipe.checkpoint_path.stat().st_size / 1e9
    print(f"{pipe.checkpoint_path} ({size:.2f} GB): the published SAM layout, finite weights, loads")
    return 0


def cmd_random_checkpoint(args) -> int:
    """A checkpoint in the published layout with random weights: for trying every command without real weights."""
    import torch

    from sam.network.model import SAM, TINY_CONFIG, SAMConfig, random_init_

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
    from sam.cli.evaluate import Evaluator
    from sam.faces.metrics import FaceMetrics

    metrics = FaceMetrics()
    problems = [p for p in metrics.available().values() if p]
    if problems:
        raise SystemExit("error: evaluate needs the age and identity models: " + "; ".join(dict.fromkeys(problems)))
    pipe = load_pipeline(args)
    exp = Path(args.exp_dir)
    shard = current_shard()
    if args.overwrite and shard.world > 1:
        raise SystemExit("error: --overwrite with several processes: delete the output folder instead")
    ev = Evaluator(pipe, exp, args.target_age, metrics=metrics, size=args.output_size, overwrite=args.overwrite,
                   csv_name=shard.part_name("evaluation", ".csv"))
    summary = Summary()
    names: list[str] = []
    already: set[str] = set()

    def work(item: Item) -> None:
        names.append(item.name)
        if not ev.process(item.name, item.session(pipe).face_image):
            already.add(item.name)

    run_items(args, summary, lambda it: [], work)
    summary.done = [n for n in summary.done if n not in already]
    summary.existing += len(already)
    shard.barrier()
    if not shard.main:  # rank 0 merges every rank's rows and writes the report
        summary.report()
        return summary.exit_code
    if shard.world > 1:
        ev.merge_parts(sorted(exp.glob("evaluation.part*-of-*.csv")))
        every = list_inputs(Path(args.data_path), getattr(args, "n_images", None))
        names = sorted({n for (n, _) in ev.rows} & {p.name for p in every})
    report = ev.report(images=names, worst=args.worst)
    n_rows = sum(1 for (n, a) in ev.rows if n in set(names) and a in ev.target_ages)
    print(f"{n_rows} rows in {ev.csv_path}; report: {report}", file=sys.stderr)
    summary.report()
    return summary.exit_code


# --------------------------------------------------------------------------------------------------------------
# Parser


def plain(text: str) -> str:
    """``text`` with its reST markup taken off (``code``, :func:`name`, `name`): what ``--help`` prints."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"`{1,2}([^`]+)`{1,2}", r"\1", text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m sam", description=plain(__doc__),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")

    model = argparse.ArgumentParser(add_help=False)
    g = model.add_argument_group("model")
    g.add_argument("--checkpoint_path", "--checkpoint", dest="checkpoint_path", default=None,
                   help="SAM checkpoint (default: found or downloaded as 'python -m sam weights' does)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    g.add_argument("--test_batch_size", type=int, default=4,
                   help="ages encoded per batch (and images decoded per batch on a GPU; one at a time on CPU)")
    g.add_argument("--test_workers", type=int, default=0, help="accepted for compatibility with the published scripts")
    g.add_argument("--int8_style_heads", "--int8-style-heads", dest="int8_style_heads", action="store_true",
                   help="approximate: int8 encoder style heads, faster on CPU, not exact "
                        "(docs/speed.md, Approximate modes)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
                   help="auto (default; fp32 for evaluate): exact float32 outputs, bfloat16 for lifespan videos and "
                        "video clips below full size on CPUs with native bfloat16; fp32: exact everywhere; bf16 / "
                        "fp16: everything reduced (docs/precision.md)")

    data = argparse.ArgumentParser(add_help=False)
    g = data.add_argument_group("inputs and outputs")
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
    p.add_argument("--output", required=True, help="the MP4 to write")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "test_batch_size", 1) < 1:
        raise SystemExit("error: --test_batch_size must be >= 1")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # outside an item loop (e.g. while loading): nothing half-written to report
        print("\nInterrupted.", file=sys.stderr)
        return 130
