"""The photo commands of ``python -m sam``, with the published SAM scripts' flag names: ``inference``,
``side-by-side``, ``reference-guided``, ``style-mixing``, ``lifespan`` and ``align``. Each runs the shared loop of
:mod:`sam.cli.batch` over a folder (or one file) of photos and asks the face sessions (:mod:`sam.session`) for
every image, as the web app does."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from sam.cli.batch import (
    Item,
    Summary,
    complete,
    latent_mask,
    load_pipeline,
    output_size,
    png_name,
    run_items,
    save,
)
from sam.cli.shard import current_shard
from sam.session import FaceSession, Photo

__all__ = ["cmd_align", "cmd_inference", "cmd_lifespan", "cmd_reference_guided", "cmd_side_by_side",
           "cmd_style_mixing", "write_stats"]


def cmd_inference(args) -> int:
    pipe = load_pipeline(args)
    exp = Path(args.exp_dir)
    size = output_size(args, pipe)
    summary = Summary()

    # --face_ages: one whole photo per input, each chosen face at its own age (the rest at the first --target_age)
    ages_out = ["face_ages"] if args.face_ages and args.faces != "best" and args.paste_back else args.target_age

    def outs_for(item: Item, age: int | str) -> list[Path]:
        n = png_name(item.name)
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
        save(hstack([s.face_image, *s.renders(args.target_age, size=size)], size), exp / png_name(item.name))

    run_items(args, summary, lambda it: [exp / png_name(it.name)], work)
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
    from sam.cli.grid import grid

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
    exp = Path(args.exp_dir) / "reference_guided_inference"
    size = output_size(args, pipe)
    cell = min(size, 256)
    summary = Summary()

    def work(item: Item) -> None:
        s = item.session(pipe)
        for age in args.target_age:
            mixed, plain = s.mixes(refs, age, mask, args.mix_alpha, size=size)  # one per reference
            top = [s.face_image, *(r.face_image for r in refs)]
            save(grid([top, [plain, *mixed]], cell), exp / str(age) / png_name(item.name))

    run_items(args, summary, lambda it: [exp / str(a) / png_name(it.name) for a in args.target_age], work)
    summary.report()
    return summary.exit_code


def cmd_style_mixing(args) -> int:
    from sam.cli.grid import hstack

    pipe = load_pipeline(args)
    mask = latent_mask(args, pipe)
    age = args.target_age[0]
    injects = pipe.random_styles(args.n_outputs_to_generate, args.seed)
    exp = Path(args.exp_dir) / "style_mixing" / str(age)
    size = output_size(args, pipe)
    summary = Summary()

    def work(item: Item) -> None:
        mixed, plain = item.session(pipe).mixes(injects, age, mask, args.mix_alpha, size=size)
        save(hstack([item.session(pipe).face_image, plain, *mixed], min(size, 256)), exp / png_name(item.name))

    run_items(args, summary, lambda it: [exp / png_name(it.name)], work)
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
