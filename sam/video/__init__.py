"""Videos: lifespan animations of one photo, ageing the people in a clip, the MP4 writer."""
