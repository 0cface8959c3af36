"""SAM age transformation: the web app (the file Hugging Face Spaces runs).

Drop a photo, move the age slider, see the same person at that age; group photos, style mixing, lifespan videos
and video clips, and a named HTTP API (docs/app.md). The page lives in the ``web`` package; this file only starts it:
the flags and the launch are :mod:`web.command` (``python app.py --help``).
"""

from web.command import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
