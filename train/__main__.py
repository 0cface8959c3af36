"""Entry point: ``python -m train --exp_dir ... --train_dir ... [published SAM training flags]``.

Several processes (GPUs or nodes): ``torchrun --nproc_per_node N -m train ...``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from .coach import TrainingDivergedError, run
    from .options import parse_args

    opts = parse_args(argv)
    ckpt_dir = Path(opts.exp_dir) / "checkpoints"
    if not opts.checkpoint_path and int(os.environ.get("RANK", "0")) == 0 and any(ckpt_dir.glob("*.pt")):
        print(f"{opts.exp_dir} already holds checkpoints: choose another --exp_dir, or resume with "
              f"--checkpoint_path {ckpt_dir}/iteration_N.pt", file=sys.stderr)
        return 2
    try:
        run(opts)
    except TrainingDivergedError as exc:
        print(f"Training stopped: {exc}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
