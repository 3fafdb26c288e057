"""The frame-difference cut signal a caller can hand the tracker (`Tracker.push(..., cut=True)`)."""

from __future__ import annotations

import torch


def scene_cuts(
    frames: torch.Tensor,
    previous: torch.Tensor | None = None,
    threshold: float = 0.12,
    thumb: tuple[int, int] = (36, 64),
) -> torch.Tensor:
    """Frame-difference cut signal: True where a frame differs from the one before by more than
    `threshold` (mean absolute difference of small grey thumbnails, in [0, 1]).

    frames: (N, 3, H, W) uint8 RGB on any device; previous: (3, H, W) the frame before frames[0],
    or None (frames[0] is then no cut). Returns (N,) bool on the frames' device.
    """

    def thumbnail(x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, h, w) grey in [0, 1]
        step = max(1, min(x.shape[-2] // (4 * thumb[0]), x.shape[-1] // (4 * thumb[1])))
        grey = x[..., ::step, ::step].float().mean(1, keepdim=True) / 255.0  # subsample first: cheap
        return torch.nn.functional.adaptive_avg_pool2d(grey, thumb)[:, 0]

    small = thumbnail(frames)
    first = thumbnail(previous[None]) if previous is not None else small[:1]
    before = torch.cat([first, small[:-1]])
    return (small - before).abs().mean((1, 2)) > threshold
