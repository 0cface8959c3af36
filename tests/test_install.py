"""``pip install .`` gives working commands: the package declares its dependencies (ranges that admit the pinned
set of requirements.txt) and its console scripts (``sam``, ``sam-app``, ``sam-train``), and an install into a fresh
virtual environment answers ``--help`` from the installed files, not from this checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pinned(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = str(next(iter(req.specifier)).version)
    return pins


def test_the_declared_dependencies_are_the_pinned_ones_as_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(d).name.lower().replace("_", "-"): Requirement(d) for d in project["dependencies"]}
    pinned = _pinned(ROOT / "requirements.txt")
    assert set(declared) == set(pinned)
    for name, version in pinned.items():
        assert declared[name].specifier.contains(version), f"{name}: {declared[name]} leaves out the pinned {version}"
    train = {Requirement(d).name.lower(): Requirement(d) for d in project["optional-dependencies"]["train"]}
    train_pins = _pinned(ROOT / "requirements-train.txt")
    assert set(train) == set(train_pins) and all(train[n].specifier.contains(v) for n, v in train_pins.items())
    assert set(project["scripts"]) == {"sam", "sam-app", "sam-train"}


@pytest.mark.slow
def test_pip_install_gives_working_commands(tmp_path):
    """A fresh venv that sees this venv's packages (a .pth file: nothing is downloaded, setuptools included),
    ``pip install --no-deps`` of a copy of the project, then each command's ``--help`` from a folder outside the
    checkout."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("sam", "web", "train"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, gradio, ... from here
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-build-isolation", str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    where = subprocess.run([python, "-c", "import sam, web; print(sam.__file__); print(web.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert all(line.startswith(site) for line in where.split()), where  # the installed copy, not the checkout
    manifest = subprocess.run([python, "-c", "from sam.network.layout import published_layout; "
                               "print(len(published_layout()['state_dict']))"], capture_output=True, text=True,
                              cwd=tmp_path, check=True).stdout
    assert int(manifest) > 100  # the package data came along
    for command, words in (("sam", "inference"), ("sam-app", "--mcp"), ("sam-train", "--exp_dir")):
        out = subprocess.run([venv / "bin" / command, "--help"], capture_output=True, text=True, cwd=tmp_path,
                             timeout=300)
        assert out.returncode == 0 and re.search(re.escape(words), out.stdout), (command, out.stderr[-1000:])
