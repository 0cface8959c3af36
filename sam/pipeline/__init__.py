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


def __getattr__(name: str):  # names that moved to sam.cancel (sam.old_paths)
    from sam.old_paths import moved_name

    return moved_name(__name__, name)
