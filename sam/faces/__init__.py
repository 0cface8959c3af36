"""Faces in photos: reading images safely, detection and landmarks, FFHQ alignment, paste-back, measures."""
