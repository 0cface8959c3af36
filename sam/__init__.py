"""SAM face age transformation: the model, face alignment, and the aging pipeline.

    from sam import AgingPipeline
    pipe = AgingPipeline.from_pretrained("weights/sam_ffhq_aging.pt")
    images = pipe("face.jpg", target_ages=[10, 50, 80])
"""

import os

# Back large CPU tensors with transparent huge pages: the generator allocates activations of up to 128 MB per
# layer, and with 4 KB pages the kernel's page-fault work took as long as the convolutions (measured here).
# Read by PyTorch's CPU allocator at its first large allocation; set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from sam.network.checkpoint import CheckpointError, load_model  # noqa: E402
from sam.network.config import SAMConfig  # noqa: E402
from sam.network.model import SAM  # noqa: E402
from sam.pipeline import AgingPipeline  # noqa: E402

__all__ = ["SAM", "SAMConfig", "CheckpointError", "AgingPipeline", "load_model"]
__version__ = "0.1.0"
