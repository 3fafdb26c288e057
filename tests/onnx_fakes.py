"""Test helpers for the ONNX face-model stand-ins (which live in streamswap.models.stand_ins).
Frames sampled from a real video: streamswap.bench.media.sample_video_frames."""

from __future__ import annotations

import numpy as np

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
