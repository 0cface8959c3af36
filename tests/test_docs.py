"""The documentation names real things: every ``python -m sam ...`` / ``python -m train ...`` command in README.md,
docs/ and the other READMEs names a real command and real flags (the argparse parsers are asked), and every
relative link points to a file that exists. The README stays a front page (the Spaces header first, under 170
lines, the test command CI runs), its "Try it without the weights" commands run as written (twice; the app
serves the page), and docs/architecture.md names every module of sam/."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sam.cli import build_parser as sam_parser
from train.options import build_parser as train_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "train" / "README.md", ROOT / "weights" / "README.md",
               *(ROOT / "docs").glob("**/*.md")])
COMMAND = re.compile(r"python3? -m (sam|train)(?![.\w])([^`\n]*(?:\\\n[^`\n]*)*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _code(text: str) -> str:
    """Fenced blocks and inline code spans of a Markdown text (where commands are written)."""
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", outside))


def commands(text: str) -> list[tuple[str, list[str]]]:
    """``(program, argument tokens)`` of every command in the code of ``text`` (comments and pipes cut off)."""
    found = []
    for program, rest in COMMAND.findall(_code(text)):
        rest = rest.replace("\\\n", " ").split("  #")[0].split(" # ")[0].split("|")[0].split("&&")[0]
        try:
            tokens = shlex.split(rest, comments=True)
        except ValueError:
            tokens = rest.split()
        found.append((program, tokens))
    return found


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def problems(program: str, tokens: list[str]) -> list[str]:
    """What is wrong with one documented command ('' list when it names only real things)."""
    if program == "train":
        parser, words = train_parser(), tokens
    else:
        subs = _subcommands(sam_parser())
        if tokens and (tokens[0].startswith("<") or tokens[0] == "..."):
            return []  # a placeholder ("python -m sam <command> --help"): no command to check
        if not tokens or tokens[0].startswith("-"):
            return [] if not tokens or tokens[0] in ("-h", "--help") else [f"no command before {tokens[0]}"]
        if tokens[0] not in subs:
            return [f"unknown command {tokens[0]!r} (known: {', '.join(sorted(subs))})"]
        parser, words = subs[tokens[0]], tokens[1:]
    known = _flags(parser)
    flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    return [f"unknown flag {f} for {program} {'' if program == 'train' else tokens[0]}".rstrip()
            for f in sorted(flags - known)]


def _documented() -> list[tuple[str, str, list[str]]]:
    return [(f"{doc.relative_to(ROOT)}", program, tokens)
            for doc in DOCS for program, tokens in commands(doc.read_text(encoding="utf-8"))]


def test_the_docs_show_commands_at_all():
    documented = _documented()
    assert {p for _, p, _ in documented} == {"sam", "train"}
    assert len(documented) >= 10


@pytest.mark.parametrize(("doc", "program", "tokens"), _documented(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_documented_command_is_real(doc, program, tokens):
    assert problems(program, tokens) == [], f"{doc}: python -m {program} {' '.join(tokens)}"


def test_a_made_up_flag_or_command_is_caught():
    text = "```\npython -m sam inference --data_path x/ --exp_dir y/ --made_up_flag 3\npython -m sam ageify\n```"
    (inference, args), (ageify, args2) = commands(text + "\n`python -m sam.network.synthetic --out x.pt`")
    assert problems(inference, args) == ["unknown flag --made_up_flag for sam inference"]
    assert problems(ageify, args2)[0].startswith("unknown command 'ageify'")
    assert problems("train", ["--exp_dir", "x", "--learning_rat", "1"]) == ["unknown flag --learning_rat for train"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    missing = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
        elif "#" in target and path.suffix == ".md" and target.split("#", 1)[1] not in anchors(path.read_text()):
            missing.append(target)  # the page is there, the section is not
    assert missing == []


def anchors(markdown: str) -> set[str]:
    """The section anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    outside = re.sub(r"```.*?```", "", markdown, flags=re.S)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#{1,6} (.+)$", outside, flags=re.M)}


def test_anchors_follow_githubs_rule():
    page = "# The bfloat16 fast path (`precision`)\n## Public use: limits, the queue\n```\n# not a heading\n```\n"
    assert anchors(page) == {"the-bfloat16-fast-path-precision", "public-use-limits-the-queue"}


# ----------------------------------------------------------------------------------------- the README's shape

README = ROOT / "README.md"
README_MAX_LINES = 170  # a front page: what it is, the two commands, where everything else is (docs/)
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_docs_pages_are_checked():
    names = {str(doc.relative_to(ROOT)) for doc in DOCS}
    assert {"docs/app.md", "docs/cli.md", "docs/video.md", "docs/speed.md", "docs/precision.md",
            "docs/deployment.md", "docs/architecture.md"} <= names


def test_readme_is_one_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "---", "the Spaces YAML header must stay first"
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def _test_command(text: str) -> str:
    """The README's test command: the one line that installs requirements-dev.txt and runs pytest."""
    found = [line for line in text.splitlines()
             if "requirements-dev.txt" in line and "-m pytest" in line and not line.startswith("#")]
    assert len(found) == 1, found
    return found[0]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _test_command(README.read_text(encoding="utf-8")) == _test_command(ci)


def undocumented_modules(table: str, modules: list[str]) -> list[str]:
    """The modules (``sam/name.py``) that ``table`` (docs/architecture.md) does not name in a code span."""
    named = set(re.findall(r"`((?:sam|web)/[\w/]+\.py)`", table))
    return [m for m in modules if m not in named]


def test_architecture_names_every_module():
    modules = sorted(str(p.relative_to(ROOT)) for folder in ("sam", "web") for p in (ROOT / folder).rglob("*.py")
                     if p.name != "__init__.py" or p.parent.name == "sam")
    missing = undocumented_modules(ARCHITECTURE.read_text(encoding="utf-8"), modules)
    assert missing == [], f"add a row for {', '.join(missing)} to docs/architecture.md's module table"


def test_a_missing_module_is_caught():
    table = "| `sam/network/ops.py` | ops |"
    assert undocumented_modules(table, ["sam/network/ops.py", "sam/new.py"]) == ["sam/new.py"]


def test_one_list_of_video_formats():
    """The Video tab's formats (``sam.video.probe.VIDEO_FORMATS``) are the ones the video docs and the CLI's help
    name."""
    from sam.video.probe import VIDEO_FORMAT_NAMES, VIDEO_FORMATS

    assert all(name in VIDEO_FORMAT_NAMES for name in VIDEO_FORMATS.values())
    assert VIDEO_FORMAT_NAMES in " ".join((ROOT / "docs" / "video.md").read_text().split())
    commands = next(a for a in sam_parser()._actions if isinstance(a, argparse._SubParsersAction))
    video = commands.choices["video"]
    assert VIDEO_FORMAT_NAMES in " ".join(video.format_help().split())


def documented_floors(text: str) -> dict[int, set[str]]:
    """docs/architecture.md's floor table: floor number -> the packages (dotted) it names."""
    floors = {}
    for number, cell in re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M):
        names = set()
        for path in re.findall(r"`([^`]+)`", cell):
            if path == "sam/*.py":
                names.add("sam/*.py")
            else:
                names.add(path.rstrip("/").removesuffix(".py").replace("/", "."))
        floors[int(number)] = names
    return floors


def test_the_floor_plan_in_the_docs_is_the_one_the_tests_hold():
    """docs/architecture.md's table of floors names the same packages, on the same floors, as the rule that
    tests/test_package.py enforces; every folder it names exists; the README points to it."""
    from tests.test_package import FLOORS

    floors = documented_floors(ARCHITECTURE.read_text(encoding="utf-8"))
    assert floors[0] == {"sam/*.py"}
    assert {m for m in FLOORS[0]} == {f"sam.{p.stem}" for p in (ROOT / "sam").glob("*.py")} - {"sam.__init__",
                                                                                                  "sam.__main__"}
    assert {i: names for i, names in floors.items() if i} == {i: set(names) for i, names in enumerate(FLOORS) if i}
    for names in floors.values():
        for name in names - {"sam/*.py"}:
            assert (ROOT / name.replace(".", "/")).is_dir() or (ROOT / f"{name}.py").is_file(), name
    readme = README.read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme and "`web/`" in readme and "`sam/`" in readme


def test_a_floor_out_of_place_is_caught():
    text = "| 0 | `sam/*.py` | x | y |\n| 1 | `sam/faces/` | floor 0 | z |\n"
    assert documented_floors(text) == {0: {"sam/*.py"}, 1: {"sam.faces"}}


def test_the_limits_the_docs_give_are_the_apps():
    """The limits docs/app.md and docs/video.md state are those of web.limits.Limits, their one declaration."""
    from web.limits import Limits

    lim = Limits()
    app_md = " ".join((ROOT / "docs" / "app.md").read_text(encoding="utf-8").split())
    video_md = " ".join((ROOT / "docs" / "video.md").read_text(encoding="utf-8").split())
    refused = {4: "fourth", 5: "fifth", 6: "sixth"}[lim.max_long_waiting + 1]  # the first waiting video refused
    for words in (f"`--max-queue` (default {lim.max_queue})", f"`--max-queue` ({lim.max_queue})",
                  f"({lim.quick_concurrency} and {lim.long_concurrency} at once)",
                  f"at most {lim.clip_max_seconds:g} s, {lim.clip_max_fps:g} frames/s, {lim.clip_max_frames} frames",
                  f"Uploads are at most {lim.max_upload_mb} MB", f"so is a {refused} waiting video",
                  f"A lifespan video renders at most {lim.lifespan_max_work} faces at 256 px",
                  f"and one address (one client opening many sessions) {lim.max_videos_per_address}",
                  f"one address may hold {lim.max_queued_per_address}", "at most half of the queue" if
                  lim.long_queue_share == 0.5 else f"{lim.long_queue_share:g}",
                  f"Uploads together may take at most {lim.upload_space_mb} MB",
                  f"one address may upload at most {lim.upload_mb_per_address} MB"):
        assert words in app_md, words
    assert f"at most **{lim.clip_max_mb} MB and {lim.clip_max_seconds:g} s** (frames larger than " \
           f"{lim.clip_max_side} px" in video_md


def stale_paths(text: str) -> list[str]:
    """The project files (``sam/x.py``, ``web/page.py``, with an extension) and folders (``web/panels/``, with a final
    slash) a text names in code spans that do not exist (``train/steps_per_s``, a TensorBoard tag, is neither)."""
    named = re.findall(r"`((?:sam|web|train|bench|tests)/[\w/.-]*)`", text)
    paths = [p for p in named if p.endswith("/") or "." in p.rsplit("/", 1)[-1]]
    return sorted({p for p in paths if not (ROOT / p).exists()})


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_files_that_exist(doc):
    assert stale_paths(doc.read_text(encoding="utf-8")) == []


def test_a_stale_path_is_caught():
    assert stale_paths("`sam/faces/align.py` and `sam/align.py`, `web/`") == ["sam/align.py"]



# ------------------------------------------------------------- the README's "Try it without the weights", run

TRY_IT = "## Try it without the weights"


def try_it_commands(text: str) -> list[str]:
    """The command lines of the ```bash block in the README's "Try it without the weights" section."""
    section = re.search(rf"^{TRY_IT}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert section, f"README.md has no section {TRY_IT!r}"
    block = re.search(r"```bash\n(.*?)```", section.group(1), flags=re.S)
    assert block, f"README.md's {TRY_IT!r} has no ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def as_written(line: str, tmp: Path) -> str:
    """A README command as written, only its ``/tmp/...`` paths moved into ``tmp`` (a test's own folder)."""
    return re.sub(r"(?<![\w/.])/tmp/(\S+)", lambda m: shlex.quote(str(tmp / m.group(1))), line)


def newcomer_env(**extra: str) -> dict[str, str]:
    """The environment of a shell in the README's set-up: the venv not activated (no venv bin folder on PATH, so a
    bare ``python`` is whatever the system has, without torch)."""
    venv_bins = {Path(sys.prefix, "bin").resolve(), Path(sys.executable).parent.resolve(),
                 (ROOT / ".venv" / "bin").resolve()}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() not in venv_bins]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join(path or ["/usr/bin", "/bin"]), **extra}


def _try_it() -> tuple[str, str]:
    """The README's two lines, the random checkpoint's and the app's (skipped when the tests run from a Python
    outside this checkout and the README's interpreter is not here: not the README's set-up)."""
    lines = try_it_commands(README.read_text(encoding="utf-8"))
    make = [line for line in lines if " -m sam random-checkpoint " in f"{line} "]
    start = [line for line in lines if " app.py" in line]
    assert len(lines) == 2 and len(make) == 1 and len(start) == 1, lines
    python = shlex.split(make[0])[0]
    if "/" in python and not (ROOT / python).exists() and ROOT not in Path(sys.executable).parents:
        pytest.skip(f"not the README's set-up: no {python} in this checkout, and the tests run from another Python")
    return make[0], start[0]


def _run_as_written(line: str, tmp: Path, attempt: str = "") -> None:
    """Run a README line as written (its /tmp/ paths in ``tmp``), in the repository, the venv not activated."""
    done = subprocess.run(["bash", "-c", as_written(line, tmp)], cwd=ROOT, env=newcomer_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"{attempt}{line!r} exited {done.returncode}:\n{done.stderr[-2000:]}"


def test_as_written_moves_only_tmp_paths(tmp_path):
    line = ".venv/bin/python -m sam random-checkpoint --out /tmp/tiny.pt --overwrite  # not /var/tmp/x"
    assert as_written(line, tmp_path) == \
        f".venv/bin/python -m sam random-checkpoint --out {tmp_path}/tiny.pt --overwrite  # not /var/tmp/x"
    text = f"{TRY_IT}\n\nwords\n\n```bash\n# a comment\npython a.py\n\npython b.py\n```\n\n## Next\n```bash\nc\n```\n"
    assert try_it_commands(text) == ["python a.py", "python b.py"]


def test_readme_try_it_makes_a_checkpoint_again_and_again(tmp_path):
    """The random-checkpoint line run as a newcomer copies it (in the repository, the venv not activated) writes a
    checkpoint that loads, and the same line run again works too."""
    from sam.network.checkpoint import load_model

    make, _ = _try_it()
    words = shlex.split(as_written(make, tmp_path))
    out = Path(words[words.index("--out") + 1])
    assert tmp_path in out.parents, out
    for attempt in ("first run: ", "second run: "):
        _run_as_written(make, tmp_path, attempt)
        assert out.is_file() and out.stat().st_size > 0, attempt
    assert load_model(out).config is not None


@pytest.mark.slow
def test_readme_try_it_serves_the_page(tmp_path):
    """The app line as written, on the checkpoint the line before makes: the page answers, and the app stops on
    SIGTERM with status 0."""
    from tests.browser import free_port

    make, start = _try_it()
    _run_as_written(make, tmp_path)
    port = free_port()
    # Gradio's own temp folder in the test's (Gradio leaves $TMPDIR/gradio/vibe_edit_history behind otherwise)
    (tmp_path / "gradio").mkdir()
    env = newcomer_env(GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
                       GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    log_path = tmp_path / "app.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(["bash", "-c", f"exec {as_written(start, tmp_path)}"], cwd=ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def log() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        url, deadline, status = f"http://127.0.0.1:{port}/", time.monotonic() + 180, None
        while status != 200:
            assert proc.poll() is None, f"{start!r} exited {proc.returncode}:\n{log()}"
            assert time.monotonic() < deadline, f"{start!r}: no page at {url} in 180 s:\n{log()}"
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    status = answer.status
            except OSError:  # not up yet
                time.sleep(0.5)
        proc.terminate()
        assert proc.wait(timeout=60) == 0, log()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert "Traceback" not in log(), log()
