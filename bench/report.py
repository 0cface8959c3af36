"""Where benchmark results go: ``bench/results/<date>-<kind>-<machine>.md`` and ``.json``, one door for every script."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(kind: str, slug: str, text: str, data: dict) -> Path:
    """Write the Markdown ``text`` and the ``data`` of one run; returns the path without its suffix."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"{dt.date.today().isoformat()}-{kind}-{slug}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"written: {stem}.md, .json")
    return stem
