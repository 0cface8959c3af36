"""Headless SAM training (``python -m train``): not implemented yet, see the project's training issue."""
