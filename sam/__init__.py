"""SAM face age transformation: the model, face alignment, and the aging pipeline.

    from sam import AgingPipeline
    pipe = AgingPipeline.from_pretrained("weights/sam_ffhq_aging.pt")
    images = pipe("face.jpg", target_ages=[10, 50, 80])

The package in layers, each a folder (lower layers never import higher ones; docs/architecture.md):
``sam.network`` (the networks, their numerics, the checkpoint) < ``sam.faces`` (images, detection, alignment,
paste-back, measures) < ``sam.pipeline`` < ``sam.video`` < ``sam.session`` < ``sam.serving`` < ``sam.cli``; the
small rules every layer shares sit at the top (``sam.ages``, ``sam.requests``, ``sam.cancel``, ``sam.settings``,
``sam.atomic``). The public names below are imported on first use.
"""

import importlib
import os
from typing import Any

from sam import old_paths

# Back large CPU tensors with transparent huge pages: the generator allocates activations of up to 128 MB per
# layer, and with 4 KB pages the kernel's page-fault work took as long as the convolutions (measured here).
# Read by PyTorch's CPU allocator at its first large allocation; set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

_PUBLIC = {
    "SAM": "sam.network.model",
    "SAMConfig": "sam.network.config",
    "CheckpointError": "sam.network.layout",
    "load_model": "sam.network.checkpoint",
    "AgingPipeline": "sam.pipeline",
}

__all__ = ["SAM", "SAMConfig", "CheckpointError", "AgingPipeline", "load_model"]
__version__ = "0.1.0"

old_paths.install()


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
