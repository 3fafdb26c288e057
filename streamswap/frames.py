"""The record every stage passes along: one decoded video frame and what stages learned about it.

Layout choice: `image` is (H, W, 3) uint8 RGB ("HWC"), on the pipeline device. Decoders (PyAV
rgb24, NVDEC RGB) and encoders (PyAV rgb24 frames) all speak HWC, so no copies at either end;
a model stage gets (3, H, W) with `image.permute(2, 0, 1)` — a view whose memory is already
torch's `channels_last` layout, the fast one for convolutions on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import torch


@dataclass(frozen=True, slots=True)
class Frame:
    """One video frame.

    index: position in the source, 0-based (live sources count captured frames, so dropped
        frames leave gaps).
    pts, time_base: presentation timestamp in `time_base` units, as the container said
        (`pts * time_base` seconds); carried to the sink unchanged, so variable frame rates survive.
    image: (H, W, 3) uint8 RGB on the pipeline device, already upright (rotation metadata applied).
    faces: per-face data added by later stages (detections, tracks, crops, ...); empty at the source.
    extras: other per-frame data stages want to pass downstream, keyed by stage-chosen names.
    """

    index: int
    pts: int
    time_base: Fraction
    image: torch.Tensor
    faces: tuple[Any, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def with_image(self, image: torch.Tensor) -> Frame:
        """The same frame (index, timing, faces) carrying a new (H, W, 3) uint8 image."""
        return replace(self, image=image)

    def with_faces(self, faces: tuple[Any, ...]) -> Frame:
        """The same frame with `faces` replaced."""
        return replace(self, faces=tuple(faces))
