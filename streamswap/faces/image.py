"""Reading a still image (a source face, a reference face) into the frame layout the faces code uses."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from streamswap.errors import InputError
from streamswap.limits import require_image


def read_image(path: str | Path, device: torch.device | str = "cpu") -> torch.Tensor:
    """An image file -> (1, 3, H, W) uint8 RGB on `device` (a batch of one frame).

    Raises InputError when the file is missing, is not a readable image, or is larger than
    `streamswap.limits.max_image_pixels()` (checked from its header, before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    require_image(path)
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"{path} is not a readable image (expected JPEG, PNG, BMP, WebP, ...)")
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)[None].contiguous().to(device)
