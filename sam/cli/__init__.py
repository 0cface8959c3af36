"""``python -m sam``: the command line.

* :mod:`sam.cli.parser`: every command's flags (the published scripts' names);
* :mod:`sam.cli.batch`: the run loop the photo commands share (inputs, skips, progress, summary);
* :mod:`sam.cli.photos`: ``inference``, ``side-by-side``, ``reference-guided``, ``style-mixing``, ``lifespan``,
  ``align``;
* :mod:`sam.cli.video`: ``video``; :mod:`sam.cli.evaluate`: ``evaluate``; :mod:`sam.cli.weights`: ``weights``,
  ``random-checkpoint``;
* :mod:`sam.cli.shard`: several processes with ``torchrun``; :mod:`sam.cli.grid`: image strips and grids.
"""

from __future__ import annotations

import sys

from sam.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "test_batch_size", 1) < 1:
        raise SystemExit("error: --test_batch_size must be >= 1")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # outside an item loop (e.g. while loading): nothing half-written to report
        print("\nInterrupted.", file=sys.stderr)
        return 130
