"""The package's shape: what ``import sam`` promises is there, no two modules of ``sam/`` need each other (lazy
imports inside functions count too: a cycle is a cycle), and the Docker image holds what the app imports."""

from __future__ import annotations

import ast
from pathlib import Path

import sam

SAM_DIR = Path(sam.__file__).resolve().parent


def test_package_exports_are_true():
    from sam import SAM, AgingPipeline, CheckpointError, SAMConfig  # noqa: F401 - the import is the test

    for name in sam.__all__:
        assert hasattr(sam, name), name


def _imports(path: Path) -> set[str]:
    """The ``sam`` modules a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("sam."):
                found.add(node.module.split(".")[1])
            elif node.module == "sam":
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sam."))
    modules = {p.stem for p in SAM_DIR.glob("*.py")} | {p.name for p in SAM_DIR.iterdir() if p.is_dir()}
    return found & modules - {"__init__", path.stem}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_sam_modules():
    graph = {p.stem: _imports(p) for p in SAM_DIR.glob("*.py") if p.stem != "__init__"}
    assert "model" in graph["checkpoint"]  # the check sees imports at all
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_sam_environment_variable_is_read_through_sam_settings():
    """One place reads the package's settings: no module but sam/settings.py names a SAM_* variable in an
    os.environ / os.getenv call, and every SAM_* name the code mentions is listed in sam.settings.SETTINGS."""
    import re

    from sam import settings

    root = Path(__file__).resolve().parents[1]
    mentioned, direct = set(), []
    for path in [*(root / "sam").glob("*.py"), root / "app.py"]:
        if path.name == "settings.py":
            continue
        text = path.read_text(encoding="utf-8")
        mentioned |= set(re.findall(r"\b((?:SAM|SPACES)_[A-Z0-9_]+)\b", text))
        if re.search(r"(environ\.get|getenv|environ\[)\(?\s*[\"']SAM_", text):
            direct.append(path.name)
    assert direct == []
    assert mentioned == set(settings.SETTINGS)  # none read elsewhere, none listed that nothing reads


def test_docker_image_has_what_the_app_needs():
    """The Dockerfile copies every module of this repository that the app imports (directly or through another copied
    module) and installs the torch and torchvision of requirements.txt."""
    root = SAM_DIR.parent
    dockerfile = (root / "Dockerfile").read_text()
    copied = {part.rstrip("/") for line in dockerfile.splitlines() if line.startswith("COPY ")
              for part in line.split()[1:-1]}
    local = {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    todo, seen = ["app.py"], set()
    while todo:
        name = todo.pop()
        seen.add(name)
        assert name in copied, f"the Docker image lacks {name}, which the app imports"
        path = root / name
        for file in (path.rglob("*.py") if path.is_dir() else [path]):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                else:
                    absolute = isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    modules = [node.module] if absolute else []
                for module in modules:
                    top = module.split(".")[0]
                    entry = top if (root / top).is_dir() else f"{top}.py"
                    if top in local and entry not in seen:
                        todo.append(entry)
    pins = dict(line.split("==") for line in (root / "requirements.txt").read_text().splitlines()
                if line.startswith(("torch==", "torchvision==")))
    for package, version in pins.items():
        assert f"{package}=={version}" in dockerfile, f"the Dockerfile installs another {package} than {version}"
