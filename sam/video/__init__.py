"""Videos: lifespan animations of one photo (``lifespan``), ageing the people in a clip (``clip``, with ``probe``,
``tracking``, ``smoothing``, ``keyframes`` and ``threads``), and the MP4 writer (``mp4``)."""
