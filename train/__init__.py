"""Headless SAM training: ``python -m train`` (one process, or several with ``torchrun``). See train/README.md."""

from .options import TINY_TRAIN_CONFIG, build_parser, model_config, parse_args

__all__ = ["TINY_TRAIN_CONFIG", "build_parser", "model_config", "parse_args", "main"]


def main(argv: list[str] | None = None) -> int:
    from .__main__ import main as _main

    return _main(argv)
