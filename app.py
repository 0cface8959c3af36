"""SAM age transformation: the web app (the file Hugging Face Spaces runs).

Drop a photo, move the age slider, see the same person at that age; group photos, style mixing, lifespan videos
and video clips, and a named HTTP API (docs/app.md). The page lives in the ``web`` package; this file reads the
arguments, builds the page and serves it.

    python app.py [--checkpoint weights/sam_ffhq_aging.pt] [--host 0.0.0.0] [--port 7860] [--device cpu]
                  [--share] [--no-download] [--int8-style-heads] [--max-queue 16] [--precision auto] [--mcp]

Host and port default to $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT (else 127.0.0.1:7860). When the checkpoint is
missing it is downloaded at start; offline, the page still loads and says how to provide it.
"""

from __future__ import annotations

import argparse

from sam.network.precision import PRECISIONS
from web.limits import Limits


def build_parser() -> argparse.ArgumentParser:
    """The app's flags (the command line's spellings, ``--checkpoint_path``, ``--int8_style_heads``,
    ``--no_download`` and ``--max_queue``, work too)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n    python")[0],
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
    args = build_parser().parse_args(argv)
    from web.server import serve

    serve(args.checkpoint, args.device, args.host, args.port, share=args.share,
          int8_style_heads=args.int8_style_heads, download=not args.no_download, max_queue=args.max_queue,
          precision=args.precision, mcp=args.mcp)


if __name__ == "__main__":
    main()
