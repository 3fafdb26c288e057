"""Swap engines: ghost (AEI-Net) and lite (landmark-driven warp, no learned generator)."""
