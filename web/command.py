"""The app's command line (``python app.py`` or, installed, ``sam-app``): its flags, then the page served.

Only the flags are read here; the work is :func:`web.server.serve`, imported after the flags are parsed so that
``--help`` answers at once.
"""

from __future__ import annotations

import argparse

from sam.network import PRECISIONS
from web.limits import Limits

__all__ = ["DESCRIPTION", "build_parser", "main"]

DESCRIPTION = """SAM age transformation: drop a photo, move the age slider, see the same person at that age.

The web page (group photos, style mixing, lifespan videos, video clips) and its HTTP API, on
http://127.0.0.1:7860 unless --host / --port (or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT) say otherwise. Without
the checkpoint it is downloaded at the first start (2.3 GB); offline, the page says how to provide it.
Documentation: docs/app.md."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The app's flags (the command line's spellings, ``--checkpoint_path``, ``--int8_style_heads``,
    ``--no_download`` and ``--max_queue``, work too)."""
    ap = argparse.ArgumentParser(prog=prog, description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", "--checkpoint_path", default=None,
                    help="SAM checkpoint (default: $SAM_CHECKPOINT or weights/)")
    ap.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)")
    ap.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    ap.add_argument("--int8-style-heads", "--int8_style_heads", action="store_true",
                    help="approximate: int8 encoder style heads, faster on CPU, not exact (docs/speed.md)")
    ap.add_argument("--no-download", "--no_download", action="store_true", help="never download the checkpoint")
    ap.add_argument("--max-queue", "--max_queue", type=int, default=Limits.max_queue,
                    help=f"jobs waiting at most (default {Limits.max_queue})")
    ap.add_argument("--mcp", action="store_true",
                    help="also serve the named API as Model Context Protocol tools at /gradio_api/mcp/, for AI "
                         "assistants (docs/app.md)")
    ap.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="auto (default): bfloat16 previews and videos on CPUs with native bfloat16, downloads exact "
                         "float32; fp32: exact everywhere; bf16 / fp16: everything reduced (docs/precision.md)")
    return ap


def main(argv: list[str] | None = None) -> None:
    """Parse the flags (in about a second: neither torch nor Gradio is imported for ``--help``), then serve."""
    args = build_parser().parse_args(argv)
    from web.server import serve

    serve(args.checkpoint, args.device, args.host, args.port, share=args.share,
          int8_style_heads=args.int8_style_heads, download=not args.no_download, max_queue=args.max_queue,
          precision=args.precision, mcp=args.mcp)
