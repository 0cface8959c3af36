"""The networks and how they run: SAM's encoders and StyleGAN2 generator, their ops and numerics, the checkpoint.

Imports nothing heavy itself, so that a command's ``--help`` can name the choices below without loading torch.
"""

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The precisions a model can run in (:mod:`sam.network.precision`): ``auto`` chooses by the machine."""
