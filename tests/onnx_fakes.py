"""Test helpers for the ONNX face-model stand-ins (which live in streamswap.models.stand_ins) and
for sampling real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamswap.models.stand_ins import (  # noqa: F401  (re-exported for the tests)
    FakeLandmark106,
    FakeRecogniser,
    FakeSCRFD,
    FakeSCRFDHeavy,
    export_fake_2d106,
    export_fake_recogniser,
    export_fake_scrfd,
    scrfd_output_names,
)


def rng_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (H, W, 3) uint8."""
    g = np.random.default_rng(seed)
    small = g.integers(0, 256, size=(h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    import cv2

    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def sample_video_frames(path: Path, count: int) -> torch.Tensor:
    """`count` frames spread evenly over a video (PyAV) -> (count, 3, H, W) uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames
        wanted = {int(i) for i in np.linspace(0, total - 1, count).round()}
        frames = []
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
            if len(frames) == len(wanted):
                break
    return torch.stack(frames)
