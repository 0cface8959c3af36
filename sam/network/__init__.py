"""The networks and how they run: SAM's encoders and StyleGAN2 generator, their ops and numerics, the checkpoint."""
