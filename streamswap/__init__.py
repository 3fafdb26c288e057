"""StreamSwap: GPU-first face swapping (GHOST) for images, long videos and live streams."""

__version__ = "0.1.0"
