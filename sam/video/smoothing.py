"""Smoothing over time for the video job: the One Euro filter (landmarks) and exponential smoothing (codes, colour).

Both take each sample's time in seconds, so uneven frame times (variable-frame-rate clips) are handled and the
smoothing is the same whatever the frame rate. :mod:`sam.video.tracking` gives each person one of each.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["OneEuroFilter", "CodeSmoother"]


class OneEuroFilter:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for arrays of any shape, element by element.

    A low-pass filter whose cutoff rises with speed: ``cutoff = min_cutoff + beta * |dx/dt|`` (Hz). At rest
    only ``min_cutoff`` passes (jitter removed); when the signal moves fast the cutoff opens and lag stays
    small. The derivative is itself low-passed at ``d_cutoff``. Each step's smoothing factor comes from the
    actual time step, so uneven frame times (variable-frame-rate clips) are handled.

    ``min_cutoff`` and ``d_cutoff`` are in Hz; ``beta`` in 1 / (signal unit), so it depends on the signal's
    scale (for landmarks :class:`FaceTracker` divides it by the face size in pixels).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("cutoffs must be positive and beta not negative")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t: float | None = None

    @staticmethod
    def _alpha(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self.x = self.dx = self.t = None

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` observed at time ``t`` (seconds, increasing); returns the smoothed value (a new array)."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.t is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + self._alpha(dt, self.d_cutoff) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        self.x = self.x + self._alpha(dt, cutoff) * (x - self.x)
        self.t = float(t)
        return self.x.copy()


class CodeSmoother:
    """Exponential smoothing of a tensor over time with a time constant ``tau`` (seconds; 0 turns it off).

    ``y += (1 - exp(-dt / tau)) * (x - y)``: the same smoothing whatever the frame rate.
    """

    def __init__(self, tau: float = 0.2):
        self.tau = max(float(tau), 0.0)
        self.y: torch.Tensor | None = None
        self.t: float | None = None

    def __call__(self, t: float, x: torch.Tensor) -> torch.Tensor:
        if self.tau == 0 or self.y is None or self.t is None or t <= self.t or self.y.shape != x.shape:
            self.y, self.t = x.clone(), float(t)
            return x
        a = 1.0 - math.exp(-(float(t) - self.t) / self.tau)
        self.y = self.y + a * (x - self.y)
        self.t = float(t)
        return self.y
