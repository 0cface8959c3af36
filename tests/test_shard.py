"""Batch jobs over several processes (sam.cli.shard): each rank a disjoint, deterministic share of the inputs, the
outputs and the one-file results (stats, evaluation CSV, report) the same as one process writes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sam.cli import evaluate
from sam.cli.shard import Shard, current_shard

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "assets" / "astronaut.png"


def test_shares_are_disjoint_and_cover_everything():
    items = list(range(11))
    shares = [Shard(r, 3).take(items) for r in range(3)]
    assert sorted(sum(shares, [])) == items and shares[1] == [1, 4, 7, 10]
    assert Shard().take(items) == items
    assert Shard(1, 2).part_name("evaluation", ".csv") == "evaluation.part1-of-2.csv"
    assert Shard().part_name("evaluation", ".csv") == "evaluation.csv"


def test_shard_from_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert current_shard() == Shard(0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert current_shard() == Shard(1, 2, 1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(SystemExit, match="rank 2 of 2"):
        current_shard()


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    img = Image.open(ASTRONAUT).convert("RGB")
    for i, angle in enumerate((0, 3, -3)):
        img.rotate(angle).save(d / f"face{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "sam", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _single(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run([sys.executable, "-m", "sam", *args], cwd=ROOT, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)


def _done(stderr: str) -> list[int]:
    """The "Done: N" counts of every rank's summary, sorted."""
    return sorted(int(line.split("Done: ")[1].split(",")[0]) for line in stderr.splitlines() if "Done: " in line)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.mark.slow
def test_torchrun_inference_writes_what_one_process_writes(tiny_checkpoint, photos, tmp_path):
    common = ["--checkpoint_path", str(tiny_checkpoint), "--data_path", str(photos), "--target_age", "20,70",
              "--device", "cpu"]
    one = _single("inference", *common, "--exp_dir", str(tmp_path / "one"))
    two = _torchrun("inference", *common, "--exp_dir", str(tmp_path / "two"))
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(a) == 6 and a == b  # 3 faces x 2 ages, byte for byte
    assert _done(two.stderr) == [1, 2]  # disjoint shares: rank 1 took face1, rank 0 face0 and face2
    assert "3 images" in (tmp_path / "two" / "stats.txt").read_text()
    assert not list((tmp_path / "two").glob("timings.part*"))
    names = sorted(line.split("\t")[0] for line in (tmp_path / "two" / "timings.tsv").read_text().splitlines())
    assert names == ["face0.png", "face1.png", "face2.png"]


@pytest.mark.slow
def test_torchrun_evaluate_writes_the_rows_one_process_writes_and_resumes(tiny_checkpoint, photos, tmp_path):
    from sam.faces.metrics import FaceMetrics

    if any(FaceMetrics().available().values()):
        pytest.skip("the age and identity models are not installed")
    common = ["--checkpoint_path", str(tiny_checkpoint), "--data_path", str(photos), "--target_age", "30",
              "--device", "cpu", "--output_size", "32"]
    one = _single("evaluate", *common, "--exp_dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-2000:]
    two = _torchrun("evaluate", *common, "--exp_dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    rows_one = evaluate.read_rows(tmp_path / "one" / evaluate.CSV_NAME)
    rows_two = evaluate.read_rows(tmp_path / "two" / evaluate.CSV_NAME)
    assert len(rows_one) == 3 and rows_one == rows_two and _done(two.stderr) == [1, 2]
    assert not list((tmp_path / "two").glob("evaluation.part*"))
    assert (tmp_path / "two" / "report.md").read_text().count("| 30 | 3 |") == 1
    shutil.rmtree(tmp_path / "two" / "outputs")
    again = _torchrun("evaluate", *common, "--target_age", "30,60", "--exp_dir", str(tmp_path / "two"))
    assert again.returncode == 0, again.stderr[-2000:]
    rows = evaluate.read_rows(tmp_path / "two" / evaluate.CSV_NAME)
    assert len(rows) == 6 and {k: rows[k] for k in rows_two} == rows_two  # only the new age was added
    assert not (tmp_path / "two" / "outputs" / "30").exists()  # the done rows were not rendered again
