"""Apparent age and identity of a session's faces, as optional extras (:mod:`sam.faces.metrics`): a missing model
file or any failure leaves them out (logged once) and never breaks the flow."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

__all__ = ["FaceMeasures"]

log = logging.getLogger("sam.session")


class FaceMeasures:
    """Apparent age and identity (:mod:`sam.faces.metrics`) as optional extras: a missing model file or any failure
    leaves them out (logged once) and never breaks the flow."""

    def __init__(self, metrics: Any = None):
        self._metrics = metrics  # a FaceMetrics, None (made on first use) or False (turned off)
        self._problems: set[str] = set()
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._metrics is None:
                try:
                    from sam.faces.metrics import default_metrics

                    self._metrics = default_metrics()
                except Exception as exc:  # noqa: BLE001 - an optional extra
                    self._failed("metrics", exc)
                    self._metrics = False
            return self._metrics or None

    def _failed(self, what: str, exc: BaseException) -> None:
        msg = f"{what} not shown: {type(exc).__name__}: {exc}"
        if msg not in self._problems:
            self._problems.add(msg)
            log.warning("%s", msg)

    def _try(self, what: str, fn: Callable[[Any], Any]) -> Any:
        m = self._get()
        if m is None:
            return None
        try:
            return fn(m)
        except Exception as exc:  # noqa: BLE001 - a metric must never break the flow
            self._failed(what, exc)
            return None

    def age(self, image: Image.Image) -> float | None:
        return self._try("estimated age", lambda m: float(m.age(image)))

    def ages(self, images: Sequence[Image.Image]) -> list[float] | None:
        out = self._try("estimated age", lambda m: m.ages(list(images))) if images else None
        return None if out is None else [float(a) for a in out]

    def descriptor(self, image: Image.Image) -> Any:
        return self._try("identity", lambda m: m.descriptors([image])[0])

    def identity(self, descriptor: Any, images: Sequence[Image.Image]) -> list[Any] | None:
        if descriptor is None or not images:
            return None
        return self._try("identity", lambda m: m.identity(descriptor, list(images)))
