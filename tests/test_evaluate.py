"""``python -m sam evaluate`` end to end on a tiny synthetic checkpoint (real age and identity models on the
astronaut), resumability, and the report pieces on hand-made rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps

pytest.importorskip("onnxruntime")
pytest.importorskip("dlib")

from sam.cli import (
    evaluate,
    main,  # noqa: E402
)
from sam.faces import metrics  # noqa: E402
from sam.pipeline import AgingPipeline  # noqa: E402

ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"

try:
    metrics.age_model_path(), metrics.descriptor_model_path(), metrics.landmarks5_model_path()
except metrics.MetricModelMissingError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"metric models not installed: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """Two aligned faces (the astronaut and its mirror image) and a file that is not an image."""
    from sam.faces.align import align_face

    d = tmp_path_factory.mktemp("faces")
    face = align_face(Image.open(ASTRONAUT), output_size=256).image
    face.save(d / "astronaut.png")
    ImageOps.mirror(face).save(d / "mirrored.jpg")
    (d / "notes.txt").write_text("not an image")
    return d


def _args(ckpt, faces, exp, ages="20,70"):
    return ["evaluate", "--checkpoint_path", str(ckpt), "--data_path", str(faces), "--exp_dir", str(exp),
            "--target_age", ages, "--device", "cpu", "--aligned"]


def test_evaluate_end_to_end_and_resume(ckpt, faces, tmp_path, monkeypatch, capsys):
    exp = tmp_path / "eval"
    assert main(_args(ckpt, faces, exp)) == 0
    rows = evaluate.read_rows(exp / "evaluation.csv")
    assert sorted(rows) == [("astronaut.png", 20), ("astronaut.png", 70), ("mirrored.jpg", 20),
                            ("mirrored.jpg", 70)]
    for r in rows.values():
        assert 0 < r["estimated_age"] <= 80 and r["age_error"] == pytest.approx(abs(r["estimated_age"]
                                                                                    - r["target_age"]), abs=0.02)
        assert 0 <= r["identity_similarity"] <= 1 and r["identity_distance"] >= 0
        assert 25 <= r["input_age"] <= 45  # the real astronaut input
        assert not r["same_person"]  # random weights: the outputs are noise, not the astronaut
    report = (exp / "report.md").read_text()
    assert "| 20 | 2 |" in report and "| 70 | 2 |" in report and "MAE" in report
    for age in (20, 70):  # each table row holds the means of its own CSV rows, recomputed here
        mine = [r for r in rows.values() if r["target_age"] == age]
        row = next(line for line in report.splitlines() if line.startswith(f"| {age} | 2 |"))
        est = sum(r["estimated_age"] for r in mine) / 2
        mae = sum(r["age_error"] for r in mine) / 2
        sim = sum(r["identity_similarity"] for r in mine) / 2
        dist = sum(r["identity_distance"] for r in mine) / 2
        assert f"| {est:.1f} ± " in row and f"| {mae:.1f} |" in row
        assert f"| {sim:.3f} | {dist:.3f} | 0% |" in row
    for name in ("age_plot.png", "worst_cases.png", "inputs/astronaut.png", "outputs/70/mirrored.png"):
        with Image.open(exp / name) as im:
            assert im.width > 0
    err = capsys.readouterr().err
    assert "skipped notes.txt" in err and "Done: 2" in err

    # resume: nothing is recomputed; a new target age is the only new work
    calls: list[list[float]] = []
    original = AgingPipeline.__call__

    def counting(self, image, target_ages, *a, **k):
        calls.append(list(target_ages))
        return original(self, image, target_ages, *a, **k)

    monkeypatch.setattr(AgingPipeline, "__call__", counting)
    before = (exp / "evaluation.csv").read_text()
    assert main(_args(ckpt, faces, exp)) == 0
    assert calls == [] and (exp / "evaluation.csv").read_text() == before
    assert "2 with outputs already there" in capsys.readouterr().err
    assert main(_args(ckpt, faces, exp, "20,45,70")) == 0
    assert calls == [[45], [45]]
    rows = evaluate.read_rows(exp / "evaluation.csv")
    assert len(rows) == 6 and "| 45 | 2 |" in (exp / "report.md").read_text()
    # --overwrite starts again
    calls.clear()
    assert main(_args(ckpt, faces, exp, "20") + ["--overwrite"]) == 0
    assert calls == [[20], [20]] and len(evaluate.read_rows(exp / "evaluation.csv")) == 2


def test_interrupted_csv_line_is_ignored(tmp_path):
    csv_path = tmp_path / "evaluation.csv"
    csv_path.write_text(",".join(evaluate.CSV_FIELDS) + "\n"
                        "a.png,20,31.5,11.5,33.0,0.3,0.75,True\n"
                        "a.png,70,5")  # cut off mid-row
    rows = evaluate.read_rows(csv_path)
    assert list(rows) == [("a.png", 20)] and rows[("a.png", 20)]["same_person"] is True
    assert evaluate.read_rows(tmp_path / "missing.csv") == {}


def test_report_from_rows(tmp_path):
    rows = [{"image": f"{i}.png", "target_age": t, "estimated_age": e, "age_error": abs(e - t), "input_age": 30.0,
             "identity_distance": dist, "identity_similarity": 1 - dist / 1.2, "same_person": dist < 0.6}
            for i, (t, e, dist) in enumerate([(10, 14.0, 0.3), (10, 8.0, 0.5), (90, 78.0, 0.7), (90, 80.0, 0.4)])]
    stats = evaluate.summarize(rows)
    assert [s.target_age for s in stats] == [10, 90]
    assert stats[0].mae == pytest.approx(3.0) and stats[0].mean_estimated == pytest.approx(11.0)
    assert stats[1].mae == pytest.approx(11.0) and stats[1].mae_capped == pytest.approx(1.0)
    assert stats[1].same_share == pytest.approx(0.5)
    path = evaluate.write_report(rows, tmp_path, worst=2)
    text = path.read_text()
    assert "| 10 | 2 | 11.0 ± 3.0 | 3.0 | 3.0 |" in text and "| 90 | 2 | 79.0 ± 1.0 | 11.0 | 1.0 |" in text
    assert Image.open(tmp_path / "age_plot.png").size == (640, 520)
    fig = evaluate.plot_ages(rows, stats)  # the plotted data, not pixels
    ax = fig.axes[0]
    dots = next(c for c in ax.collections if c.get_label() == "one aged face").get_offsets()
    assert sorted(map(tuple, dots.tolist())) == sorted((r["target_age"], r["estimated_age"]) for r in rows)
    means = next(c for c in ax.containers if c.get_label() == "mean ± sd per target")
    line, _, (bars,) = means.lines
    assert list(line.get_xdata()) == [10, 90] and list(line.get_ydata()) == pytest.approx([11.0, 79.0])
    assert [tuple(seg[:, 1]) for seg in bars.get_segments()] == [pytest.approx((8.0, 14.0)),
                                                                  pytest.approx((78.0, 80.0))]
    grid = Image.open(tmp_path / "worst_cases.png")  # images missing on disk: grey cells, still drawn
    assert grid.height == 2 * 28 + 4 * 128
