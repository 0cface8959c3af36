"""The package's shape: what ``import sam`` promises is there, old import paths still work, the layers of the floor
plan (docs/architecture.md) hold (no import from a lower layer to a higher one, lazy imports inside functions
included), no two modules need each other, and the Docker image holds what the app imports."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import sam

ROOT = Path(sam.__file__).resolve().parents[1]

# The floors, lowest first: a module may import modules of a lower floor, and of its own package. Packages on one
# floor (the command line, the web page, training) do not import each other.
FLOORS = [
    {"sam.ages", "sam.requests", "sam.cancel", "sam.settings", "sam.atomic", "sam.old_paths"},
    {"sam.network"},
    {"sam.faces"},
    {"sam.pipeline"},
    {"sam.video"},
    {"sam.session"},
    {"sam.serving"},
    {"sam.cli", "web", "train"},
    {"app"},
]
FACADES = {"sam", "sam.__main__"}  # the package's public names and `python -m sam`: above every floor


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    files = [*(ROOT / "sam").rglob("*.py"), *(ROOT / "web").rglob("*.py"), *(ROOT / "train").glob("*.py"),
             ROOT / "app.py"]
    return {module_name(p): p for p in files}


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for type hints only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules a module imports, anywhere in it (a ``from package import module`` counts as the
    module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.add(full if full in known else source)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    resolved = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def floor(module: str) -> int | None:
    for level, members in enumerate(FLOORS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return level
    return None


def package_of(module: str) -> str:
    for members in FLOORS:
        for m in members:
            if module == m or module.startswith(m + "."):
                return m
    return module


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports(path, set(modules)) for name, path in modules.items()}


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a module of a higher floor, or of another package of the same floor."""
    wrong = []
    for a, targets in sorted(g.items()):
        if a in FACADES:
            continue
        for b in sorted(targets):
            if b == "sam":
                continue
            fa, fb = floor(a), floor(b)
            if fa is None or fb is None:
                wrong.append(f"{a} -> {b} (not on a floor)")
            elif fb > fa or (fb == fa != 0 and package_of(a) != package_of(b)):  # the ground floor is one room
                wrong.append(f"{a} -> {b}")
    return wrong


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_package_exports_are_true():
    from sam import SAM, AgingPipeline, CheckpointError, SAMConfig, load_model  # noqa: F401 - the import is the test

    for name in sam.__all__:
        assert hasattr(sam, name), name


def test_every_module_is_on_a_floor_and_lower_floors_never_import_higher_ones():
    g = graph()
    assert "sam.network.model" in g["sam.network.checkpoint"]  # the check sees imports at all
    assert "sam.faces.detect" in g["sam.session.photo"]
    assert [m for m in g if m not in FACADES and floor(m) is None] == []
    assert upward_imports(g) == []


def test_the_floor_check_finds_an_upward_import():
    g = graph()
    g["sam.pipeline.aging"] = g["sam.pipeline.aging"] | {"sam.serving.scheduler"}
    g["sam.cli.photos"] = g["sam.cli.photos"] | {"web.page"}
    assert upward_imports(g) == ["sam.cli.photos -> web.page", "sam.pipeline.aging -> sam.serving.scheduler"]


def test_no_import_cycle():
    assert cycle(graph()) is None, " -> ".join(cycle(graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_pipeline_knows_nothing_of_the_server():
    """The pipeline takes its lock and its model call from its owner: it imports nothing of the scheduler, ZeroGPU
    or the page, and the scheduler keeps no module globals."""
    g = graph()
    pipeline = {b for a, targets in g.items() if a.startswith("sam.pipeline") for b in targets}
    assert not {b for b in pipeline if b.startswith(("sam.serving", "sam.session", "web"))}
    tree = ast.parse((ROOT / "sam" / "serving" / "scheduler.py").read_text())
    assigned = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                if isinstance(t, ast.Name)]
    assert set(assigned) <= {"INTERACTIVE", "LONG", "BACKGROUND", "MAX_PASSED_OVER", "HOLD_BACK_S", "__all__"}, assigned


def test_no_module_imports_an_old_path():
    from sam.old_paths import OLD_MODULES

    found = []
    for name, path in project_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                named = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                named = [a.name for a in node.names]
            else:
                continue
            found += [f"{name}: {n}" for n in named if n in OLD_MODULES]
    assert found == []


def test_no_atexit_in_the_library():
    assert [p.name for p in (ROOT / "sam").rglob("*.py") if "atexit" in p.read_text()] == []


@pytest.mark.parametrize(("old", "name", "new"), [
    ("sam.align", "paste_back", "sam.faces.paste"),
    ("sam.align", "detect_faces", "sam.faces.detect"),
    ("sam.align", "align_face", "sam.faces.align"),
    ("sam.model", "SAM", "sam.network.model"),
    ("sam.checkpoint", "load_model", "sam.network.checkpoint"),
    ("sam.scheduler", "ModelLock", "sam.serving.scheduler"),
])
def test_old_module_paths_still_work_and_name_the_new_place(old, name, new):
    import importlib

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)
    assert any(new in str(w.message) and issubclass(w.category, DeprecationWarning) for w in caught)


def test_old_names_of_packages_that_stayed():
    from sam.cancel import check_stop
    from sam.requests import RequestError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sam.pipeline import AgingPipeline  # noqa: F401
        from sam.pipeline import check_stop as old_check_stop
        from sam.session import RequestError as OldRequestError
    assert OldRequestError is RequestError and old_check_stop is check_stop
    with pytest.raises(AttributeError, match="sam.faces"):
        importlib_module = __import__("sam.align", fromlist=["x"])
        importlib_module.no_such_name  # noqa: B018


def test_python_m_of_an_old_module_runs_the_new_one():
    out = subprocess.run([sys.executable, "-W", "ignore", "-m", "sam.synthetic", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "--out" in out.stdout


def test_every_sam_environment_variable_is_read_through_sam_settings():
    """One place reads the package's settings: no module but sam/settings.py names a SAM_* variable in an
    os.environ / os.getenv call, and every SAM_* name the code mentions is listed in sam.settings.SETTINGS."""
    import re

    from sam import settings

    mentioned, direct = set(), []
    for path in [*(ROOT / "sam").rglob("*.py"), *(ROOT / "web").rglob("*.py"), ROOT / "app.py"]:
        if path.name == "settings.py":
            continue
        text = path.read_text(encoding="utf-8")
        mentioned |= set(re.findall(r"\b((?:SAM|SPACES?)_[A-Z0-9_]+)\b", text))
        if re.search(r"(environ\.get|getenv|environ\[)\(?\s*[\"']SAM_", text):
            direct.append(path.name)
    assert direct == []
    assert mentioned == set(settings.SETTINGS)  # none read elsewhere, none listed that nothing reads


def test_docker_image_has_what_the_app_needs():
    """The Dockerfile copies every module of this repository that the app imports (directly or through another copied
    module) and installs the torch and torchvision of requirements.txt."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {part.rstrip("/") for line in dockerfile.splitlines() if line.startswith("COPY ")
              for part in line.split()[1:-1]}
    local = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    todo, seen = ["app.py"], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        assert name in copied, f"the Docker image lacks {name}, which the app imports"
        path = ROOT / name
        for file in (path.rglob("*.py") if path.is_dir() else [path]):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    absolute = isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    modules = [node.module] if absolute else []
                for module in modules:
                    top = module.split(".")[0]
                    entry = top if (ROOT / top).is_dir() else f"{top}.py"
                    if top in local and entry not in seen:
                        todo.append(entry)
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.startswith(("torch==", "torchvision==")))
    for package, version in pins.items():
        assert f"{package}=={version}" in dockerfile, f"the Dockerfile installs another {package} than {version}"
