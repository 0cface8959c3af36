"""``python -m sam weights`` (find or download, load and check the published checkpoint) and ``python -m sam
random-checkpoint`` (random weights in the published layout, to try every command without the real ones)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["cmd_random_checkpoint", "cmd_weights"]


def cmd_weights(args) -> int:
    """Find (or download) the checkpoint, load it, and check it is the published model with finite weights."""
    from sam.network.checkpoint import CheckpointError
    from sam.pipeline import AgingPipeline

    try:
        pipe = AgingPipeline.from_pretrained(args.check or args.checkpoint_path, device="cpu", verify=True,
                                             download=not (args.no_download or args.check))
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    size = pipe.checkpoint_path.stat().st_size / 1e9
    print(f"{pipe.checkpoint_path} ({size:.2f} GB): the published SAM layout, finite weights, loads")
    return 0


def cmd_random_checkpoint(args) -> int:
    """A checkpoint in the published layout with random weights: for trying every command without real weights."""
    import torch

    from sam.network.model import SAM, TINY_CONFIG, SAMConfig, random_init_

    config = TINY_CONFIG if args.size == "tiny" else SAMConfig()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise SystemExit(f"error: {out} exists (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = random_init_(SAM(config), seed=args.seed)
    model.opts["note"] = "random weights for testing, not a trained model"
    with torch.no_grad():
        model.save(out)
    print(out)
    return 0
