"""Import paths from before the package was split into layer folders (2026-12), kept working.

``import sam.align``, ``from sam.model import SAM``, ``python -m sam.synthetic`` and the like still work: each old
module name is served by a small module that takes its names from the new place (a ``DeprecationWarning`` names
it), and ``python -m`` of an old module runs the new one. A name that moved out of a package that still exists
(``from sam.session import RequestError``) is found the same way (:func:`moved_name`). A name that is gone is an
``AttributeError`` naming where to look. Nothing else in the package imports these paths (a test checks).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings
from typing import Any

__all__ = ["OLD_MODULES", "MOVED_NAMES", "install", "moved_name"]

OLD_MODULES: dict[str, tuple[str, ...]] = {
    **{f"sam.{m}": (f"sam.network.{m}",) for m in (
        "config", "encoders", "stylegan2", "ops", "model", "precision", "onednn", "quantize", "mixing",
        "checkpoint", "synthetic")},
    **{f"sam.{m}": (f"sam.faces.{m}",) for m in ("image_io", "model_files", "metrics")},
    "sam.align": ("sam.faces.align", "sam.faces.detect", "sam.faces.paste"),
    "sam.video_io": ("sam.video.mp4",),
    "sam.lifespan": ("sam.video.lifespan",),
    "sam.clip": ("sam.video.clip", "sam.video.probe", "sam.video.tracking", "sam.video.smoothing",
                 "sam.video.keyframes"),
    "sam.scheduler": ("sam.serving.scheduler", "sam.cancel"),
    "sam.zerogpu": ("sam.serving.zerogpu",),
    "sam.evaluate": ("sam.cli.evaluate",),
    "sam.shard": ("sam.cli.shard",),
    "sam.grid": ("sam.cli.grid",),
    "sam.age_net": ("train.cydral_age",),
}
"""Old module name -> the modules that now hold its names (the first is where ``python -m`` goes)."""

MOVED_NAMES: dict[str, dict[str, str]] = {
    "sam.session": {**dict.fromkeys(("RequestError", "read_number", "read_flag", "read_size", "is_best",
                                     "read_faces", "read_face_ages", "MIN_SIZE", "BEST", "ALL"), "sam.requests"),
                    "JobCancelledError": "sam.cancel"},
    "sam.pipeline": dict.fromkeys(("ShouldStop", "Progress", "check_stop"), "sam.cancel"),
}
"""Names that left a package that still exists: package -> {name: its module now}."""


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} has moved: import it from {new}", DeprecationWarning, stacklevel=3)


def moved_name(package: str, name: str) -> Any:
    """The value of ``name`` that left ``package`` (for the package's ``__getattr__``); AttributeError if none."""
    target = MOVED_NAMES.get(package, {}).get(name)
    if target is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn(f"{package}.{name}", target)
    return getattr(importlib.import_module(target), name)


class _Forward(types.ModuleType):
    """An old module: every name is looked up in the new modules, in order."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Moved: this module's names are now in {', '.join(targets)}.")
        self.__targets = targets

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in self.__targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"{self.__name__}.{attr} is gone; look in {', '.join(self.__targets)} "
                             "(docs/architecture.md lists every module)")

    def __dir__(self) -> list[str]:
        return sorted({n for t in self.__targets for n in dir(importlib.import_module(t)) if not n.startswith("_")})


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """Finds the old module names of :data:`OLD_MODULES` (and runs them with ``python -m``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in OLD_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> types.ModuleType:
        targets = OLD_MODULES[spec.name]
        _warn(spec.name, " / ".join(targets))
        return _Forward(spec.name, targets)

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def get_source(self, fullname: str) -> str:
        """``python -m <old module>``: run the new module as ``__main__``."""
        target = OLD_MODULES[fullname][0]
        return f"import runpy\nrunpy.run_module({target!r}, run_name='__main__', alter_sys=True)\n"

    def is_package(self, fullname: str) -> bool:
        return False


_FINDER = _OldPathFinder()


def install() -> None:
    """Serve the old module names (done once by ``import sam``)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
