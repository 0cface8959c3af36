"""``python -m sam``: the command line."""

from sam.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
