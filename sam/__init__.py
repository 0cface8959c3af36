"""SAM face age transformation: the model, face alignment, and the aging pipeline.

    from sam import AgingPipeline
    pipe = AgingPipeline.from_pretrained("weights/sam_ffhq_aging.pt")
    images = pipe("face.jpg", target_ages=[10, 50, 80])
"""

from .model import SAM, CheckpointError, SAMConfig
from .pipeline import AgingPipeline

__all__ = ["SAM", "SAMConfig", "CheckpointError", "AgingPipeline"]
__version__ = "0.1.0"
