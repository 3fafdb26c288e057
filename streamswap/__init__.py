"""StreamSwap: GPU-first face swapping (GHOST) for images, long videos and live streams.

The API (`swap_video`, `swap_image`, `live_swap`, `LiveSwap`, `SwapOptions`) is imported on first
use, so `import streamswap` (and the CLI's start-up) stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["LiveSwap", "SwapOptions", "SwapReport", "live_swap", "swap_image", "swap_video"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from streamswap import api

        return getattr(api, name)
    raise AttributeError(f"module 'streamswap' has no attribute {name!r}")
