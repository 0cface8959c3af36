"""Request values: every value a person or a client sends, checked the same way for the page, the HTTP API and the
command line.

NaN, infinities, text where a number is asked, booleans, out-of-range values, unknown or repeated face numbers: each
is a :class:`RequestError` (a ``ValueError``) whose message names the parameter, in words for a person. Ages follow
the one rule of :mod:`sam.ages`. Plain Python, imported by every layer that reads requests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sam.ages import AgeError, short_text, to_age

__all__ = [
    "RequestError", "MIN_SIZE", "BEST", "ALL", "read_number", "read_flag", "read_size", "is_best", "read_faces",
    "read_face_ages",
]

MIN_SIZE = 8  # the smallest output side in pixels
BEST, ALL = "best", "all"  # the words of ``faces`` (read_faces)


class RequestError(ValueError):
    """A request value that cannot be used; the message says why, in words for a person."""


def read_number(value: Any, name: str, lo: float, hi: float = math.inf, *, integer: bool = False,
                default: float | None = None) -> float:
    """``value`` as a finite number in ``[lo, hi]`` (an ``int`` when ``integer``; must be whole then).

    ``None`` or ``""`` give ``default`` when there is one. Anything else (NaN, infinities, text, booleans,
    fractions where a count is asked) is a :class:`RequestError` naming the parameter.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None:
            raise RequestError(f"{name} is missing")
        value = default
    if isinstance(value, bool):
        raise RequestError(f"{name} must be a number, got {value}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float (10**400)
        raise RequestError(f"{name} must be a number, got {short_text(value)}") from None
    span = f"between {lo:g} and {hi:g}" if math.isfinite(hi) else f"{lo:g} or more"
    if not math.isfinite(x):
        raise RequestError(f"{name} must be a number {span}, got {x}")
    if not lo <= x <= hi:
        raise RequestError(f"{name} must be {span}, got {x:g}")
    if integer:
        if x != int(x):
            raise RequestError(f"{name} must be a whole number, got {x:g}")
        return int(x)
    return x


def read_flag(value: Any, name: str) -> bool:
    """A yes/no parameter: booleans, 0/1 and "true"/"false" (any case); anything else is a :class:`RequestError`."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise RequestError(f"{name} must be true or false, got {short_text(value)}")


def read_size(value: Any, full: int, default: int | None = None) -> int:
    """An output side in pixels: ``MIN_SIZE`` to ``full`` (a larger request is capped at ``full``)."""
    s = read_number(value, "size", MIN_SIZE, integer=True, default=default or full)
    return min(int(s), full)


def _items(value: Any) -> list[Any]:
    """A list from ``"1, 3"``, ``[1, 3]``, ``(1, 3)`` or a single value (blank entries of a text kept as ``""``)."""
    if isinstance(value, str):
        text = value.strip().strip("[]")
        return [] if not text else [part.strip() for part in text.replace(";", ",").split(",")]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def is_best(faces: Any) -> bool:
    """Whether ``faces`` asks for the single-face flow (``"best"``, ``None`` or ``""``; see :func:`read_faces`)."""
    return faces is None or (isinstance(faces, str) and faces.strip().lower() in ("", BEST))


def read_faces(value: Any, count: int | None = None) -> list[int] | None:
    """Which faces of a photo to age, by the face numbers of :attr:`sam.session.Photo.faces` (best first, 0 = the best).

    ``"best"``, ``None`` or ``""``: ``None``, meaning the one face of the single-face flow (``face_index``);
    ``"all"`` (or ``"everyone"``): every face found (``count`` of them); ``"1,3"``, ``[1, 3]`` or ``2``: those
    faces, in that order. With ``count`` the numbers are checked against it. Unknown, repeated, negative or
    fractional numbers and other words are a :class:`RequestError` in words.
    """
    if is_best(value):
        return None
    if isinstance(value, str) and value.strip().lower() in (ALL, "everyone", "every face"):
        if count is None:
            raise RequestError("\"all\" faces needs the photo's faces to be found first")
        return list(range(count))
    chosen: list[int] = []
    for item in _items(value):
        if isinstance(item, str) and not item:
            continue
        if isinstance(item, str):
            try:
                item = int(item) if item.lstrip("+-").isdigit() else float(item)
            except ValueError:
                pass
        if isinstance(item, (str, bool)):
            raise RequestError(f"faces must be \"best\", \"all\" or face numbers such as \"1,3\", got "
                               f"{short_text(value)}")
        n = read_number(item, "a face number", -math.inf, integer=True)
        if n < 0:
            raise RequestError(f"face numbers start at 0 (the best face), got {n}")
        if n in chosen:
            raise RequestError(f"face {n} is listed twice in faces={short_text(value)}")
        chosen.append(int(n))
    if not chosen:
        raise RequestError("choose at least one face (\"all\", or face numbers such as \"1,3\")")
    if count is not None:
        unknown = [n for n in chosen if n >= count]
        if unknown:
            raise RequestError(f"face {unknown[0]} was asked for, but the photo has {count} face(s) "
                               f"(numbered 0 to {count - 1}, best first)")
    return chosen


def read_face_ages(ages: Any, faces: Sequence[int], target_age: Any = None) -> list[int]:
    """One age per chosen face (``faces``: their numbers): ``target_age`` for every face, or a per-face list
    (``"60,25"``, ``[60, 25]``) in the order of ``faces``; a blank entry or a shorter list leaves the remaining
    faces at ``target_age``.

    More ages than faces, or an age that is not a number from 0 to 100 (NaN, text), is a :class:`RequestError`.
    """
    n_faces = len(faces)
    listed = _items(ages) if ages is not None else []
    if len(listed) > n_faces:
        raise RequestError(f"{len(listed)} ages were given for {n_faces} face(s): give at most one age per face")
    out = []
    for i in range(n_faces):
        value = listed[i] if i < len(listed) else None
        blank = value is None or (isinstance(value, str) and not value.strip())
        try:
            if blank:
                if target_age is None or (isinstance(target_age, str) and not target_age.strip()):
                    raise RequestError(f"no age for face {faces[i]}: give a target age")
                out.append(to_age(target_age))
            else:
                out.append(to_age(value, f"the age of face {faces[i]}"))
        except AgeError as exc:
            raise RequestError(str(exc)) from None
    return out
