"""Shared fixtures: tiny model configs for fast unit tests, the full-size seed-0 synthetic checkpoint (built by
``sam.network.synthetic``) and its reference outputs (``tests/data``), and no downloads unless a test asks for one."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Everything a test run writes to the temp directory (pytest's tmp_path folders, the app's results and Gradio's
# cached uploads, servers started by tests, matplotlib's and torchrun's scratch files) goes into one folder of its
# own, set before anything asks for the temp directory and inherited by subprocesses; it is removed at the end.
RUN_TMP = Path(tempfile.mkdtemp(prefix="sam-tests-"))
os.environ["TMPDIR"] = tempfile.tempdir = str(RUN_TMP)
os.environ.setdefault("MPLCONFIGDIR", str(RUN_TMP / "matplotlib"))

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / "data"
# The project's reference data as first published (read-only, beside a checkout; absent in a lone clone). Only the
# tests that compare the in-repo copies with it need it.
SHARED_REFERENCE_DIR = Path(os.environ.get("SAM_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))

from sam.network import checkpoint  # noqa: E402
from sam.network.model import SAM, TINY_CONFIG, SAMConfig, random_init_  # noqa: E402, F401

TINY = TINY_CONFIG


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial deterministic weights (see ``sam.network.model.random_init_``)."""
    return random_init_(model, seed)


@pytest.fixture
def tiny_config() -> SAMConfig:
    return TINY


@pytest.fixture
def tiny_model() -> SAM:
    return randomize_(SAM(TINY)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random-weights checkpoint in the published layout, written once per test run."""
    path = tmp_path_factory.mktemp("tiny_weights") / "tiny.pt"
    randomize_(SAM(TINY)).save(path)
    return path


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch, tmp_path_factory):
    """No test finds a developer's own checkpoint or starts a real download: the checkpoint variables are cleared,
    downloads are off (tests of downloading turn them on against local servers) and the user cache is empty."""
    for name in ("SAM_CHECKPOINT", "SAM_HF_REPO", "SAM_HF_FILENAME", "SAM_HF_REVISION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAM_NO_DOWNLOAD", "1")
    monkeypatch.setenv("SAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "sam-cache"))
    monkeypatch.setattr(checkpoint, "checkout_weights_dir", lambda: None)  # a developer's weights/ stays unseen


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The in-repo reference data: ``seed0_reference.pt`` (outputs of the reference implementation)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def shared_reference_dir() -> Path:
    if not (SHARED_REFERENCE_DIR / "synthetic_weights.py").exists():
        pytest.skip(f"the published reference data is not at {SHARED_REFERENCE_DIR} (set SAM_REFERENCE_DIR)")
    return SHARED_REFERENCE_DIR


@pytest.fixture(scope="session")
def seed0_checkpoint(tmp_path_factory):
    """The full-size seed-0 synthetic checkpoint (2.3 GB, ~20 s), built once per test run by
    ``sam.network.synthetic``."""
    from sam.network import synthetic

    path = synthetic.save(tmp_path_factory.mktemp("weights") / "sam_seed0.pt", seed=0)
    yield path
    path.unlink(missing_ok=True)  # 2.3 GB: do not leave it in pytest's kept temp folders


def published_like(value: float = 0.01) -> dict:
    """A checkpoint dict with every tensor name, shape and dtype of the published layout, about 2.5 MB on disk:
    the mapping network's first two layers hold real values, every other learned tensor is one value broadcast to
    its shape (FIR kernels keep their fixed values)."""
    layout = checkpoint.published_layout()
    state = {}
    gen = torch.Generator().manual_seed(0)
    for name, spec in layout["state_dict"].items():
        if name in ("decoder.style.1.weight", "decoder.style.2.weight"):
            state[name] = torch.randn(spec["shape"], generator=gen)
        elif spec.get("fixed") is not None:
            state[name] = torch.tensor(spec["fixed"], dtype=torch.float32)
        elif spec["dtype"] == "int64":
            state[name] = torch.zeros(spec["shape"], dtype=torch.int64)
        else:
            state[name] = torch.full((), value).expand(spec["shape"])
    return {"state_dict": state, "latent_avg": torch.zeros(layout["latent_avg"]["shape"]),
            "opts": dict(layout["opts"])}


@pytest.fixture(scope="session")
def published_like_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("published_like") / "sam_ffhq_aging.pt"
    torch.save(published_like(), path)
    return path.read_bytes()


def pytest_terminal_summary(terminalreporter) -> None:
    """Name what the run left in its temp folder (removed next), so that a leak of the code under test shows, and the
    programs it left running (which fail the run: :func:`pytest_sessionfinish`)."""
    for pid, cmd in getattr(terminalreporter.config, "_sam_left_behind", []):
        terminalreporter.write_line(f"FAILED: a test left a program running (ended now): {pid} {cmd[:200]}", red=True)
    left = sorted(p.name for p in RUN_TMP.iterdir() if not p.name.startswith(("pytest-of-", "matplotlib")))
    if left:
        terminalreporter.write_line(f"temp folder of this run, removed now: {', '.join(left[:12])}"
                                    + (f" and {len(left) - 12} more" if len(left) > 12 else ""))


def _descendants(pid: int) -> list[tuple[int, str]]:
    """The live processes below ``pid`` (children, their children, ...): ``(pid, command line)``; zombies, which
    hold nothing, are left out."""
    parents: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            child = int(stat.parent.name)
            parents.setdefault(int(fields[1]), []).append(child)
            commands[child] = stat.with_name("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found.append((child, commands.get(child, "").strip()))
        todo += parents.get(child, [])
    return found


LEFT_BEHIND = ("ffmpeg", "app.py", "chromium", "chrome", "torchrun", "train")


def pytest_sessionfinish(session, exitstatus) -> None:
    """No test leaves a program running: an ffmpeg, an app server, a browser or a training process still there
    after the whole run fails it (the processes are ended, and named)."""
    import signal

    left = [(pid, cmd) for pid, cmd in _descendants(os.getpid()) if any(word in cmd for word in LEFT_BEHIND)]
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        session.config._sam_left_behind = left
        session.exitstatus = 1


def pytest_unconfigure(config) -> None:
    shutil.rmtree(RUN_TMP, ignore_errors=True)
