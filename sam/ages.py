"""Target ages: the one rule every part of the project uses to turn a requested age into the age rendered.

SAM (paper Sec. 3) conditions its encoder on an integer age ``a`` in 0..100, fed as a constant channel
``a / 100``. A request may carry any number (an API client can send ``59.6``, ``NaN`` or ``Infinity``), so:

* the value must be a finite number between 0 and 100, else :class:`AgeError` (a ``ValueError``) says so in words;
* it is **rounded half up** to the integer the network sees: 59.5 -> 60, 59.49 -> 59;
* every label shows that integer, the age actually rendered.

Key ages (every 10 years) are the anchors of lifespan videos and of interpolated slider previews.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["AGE_MIN", "AGE_MAX", "KEY_AGES", "AgeError", "to_age", "to_ages", "key_ages", "short_text"]

AGE_MIN, AGE_MAX = 0, 100
KEY_AGES: tuple[int, ...] = tuple(range(AGE_MIN, AGE_MAX + 1, 10))


class AgeError(ValueError):
    """A requested age is not a number between 0 and 100."""


def short_text(value: Any, limit: int = 40) -> str:
    """``value`` as a message shows it: its text, cut to ``limit`` characters (a number too large to write out is
    named by its size)."""
    try:
        text = str(value)
    except ValueError:  # an integer of more digits than Python writes out
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def to_age(value: Any, what: str = "target age") -> int:
    """The integer age rendered for ``value``: a finite number in [0, 100], rounded half up."""
    if isinstance(value, bool):
        raise AgeError(f"{what} must be a number between {AGE_MIN} and {AGE_MAX}, got {value!r}")
    try:
        a = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float (10**400)
        raise AgeError(f"{what} must be a number between {AGE_MIN} and {AGE_MAX}, got {short_text(value)}") \
            from None
    if not math.isfinite(a):
        raise AgeError(f"{what} must be a number between {AGE_MIN} and {AGE_MAX}, got {a}")
    if not AGE_MIN <= a <= AGE_MAX:
        raise AgeError(f"{what} must be between {AGE_MIN} and {AGE_MAX}, got {a:g}")
    return int(math.floor(a + 0.5))


def to_ages(values: Iterable[Any], what: str = "target age") -> list[int]:
    """:func:`to_age` of each value, in order (duplicates kept)."""
    return [to_age(v, what) for v in values]


def key_ages(start: Any, end: Any, step: int = 10) -> list[int]:
    """Key ages from ``start`` to ``end`` (either direction) every ``step`` years, both ends included.

    A last step much shorter than the others (at most half a step) is merged into the one before it.
    """
    a, b = to_age(start, "start age"), to_age(end, "end age")
    if a == b:
        raise AgeError("the start and end ages are the same: choose a range, e.g. 0 to 100")
    s = step if b > a else -step
    ages = list(range(a, b, s))
    if len(ages) > 1 and abs(b - ages[-1]) <= step / 2:
        ages.pop()
    return ages + [b]
