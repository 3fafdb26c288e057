"""Process memory settings for long jobs.

glibc raises its mmap threshold to the size of the largest block freed so far (up to 32 MiB).
After the first video frame is freed, every later frame (2.6 MiB at 720p) is carved from a
per-thread heap instead, and those heaps only shrink from the top: in a pipeline whose stages
free each other's frames they settle at a high-water mark far above the frames actually alive
(about 90 MB more at 720p, measured with `bench pipeline`). A fixed threshold keeps frame-sized
blocks mapped, so a freed frame goes back to the system at once; smaller tensors stay on the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
FRAME_MMAP_THRESHOLD = 2 * 1024 * 1024


def map_large_blocks(threshold: int = FRAME_MMAP_THRESHOLD) -> bool:
    """Serve allocations of at least `threshold` bytes with their own mappings (glibc only;
    elsewhere a no-op). Process-wide and idempotent. Returns whether the setting took effect."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        ok = bool(libc and hasattr(libc, "mallopt") and libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except OSError:
        ok = False
    log.debug("mmap threshold %d bytes: %s", threshold, "set" if ok else "not available")
    return ok
