"""The pipeline layer: :class:`AgingPipeline`, the one door to the model for every flow above it."""

from sam.cancel import JobCancelledError
from sam.pipeline.aging import (
    AgingPipeline,
    EncodedFace,
    ImageLike,
    ModelCall,
    SideBySide,
    default_device,
    direct_call,
    to_pil,
    to_tensor,
)

__all__ = ["AgingPipeline", "EncodedFace", "ImageLike", "JobCancelledError", "ModelCall", "SideBySide",
           "default_device", "direct_call", "to_pil", "to_tensor"]
