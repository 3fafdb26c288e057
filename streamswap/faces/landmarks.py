"""Dense 106-point landmarks with insightface's 2d106 model (2d106det.onnx), batched over faces.

Same as insightface's `Landmark.get`: a 192x192 crop centred on the face box, scaled so that
1.5 x the box's longer side fills it (no rotation); RGB input (x - mean) / std; the 212 outputs
are (x, y) pairs in [-1, 1] of the crop, mapped to crop pixels by (p + 1) * 96 and back to the
frame with the inverse crop transform. insightface reads mean/std off the graph's first node
names (an MXNet-converted graph normalises inside: mean 0, std 1; otherwise 127.5 / 128); so do we.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from streamswap.faces.align import invert_affine, transform_points, warp_crops
from streamswap.faces.detect import check_frames
from streamswap.faces.onnx_runtime import (
    OnnxRunner,
    OnnxSignature,
    Runtime,
    default_runtime,
    load_onnx_model,
    load_onnx_runner,
    model_node_names,
)
from streamswap.faces.records import FaceBatch

CROP = 192
LANDMARK106_SIGNATURE = OnnxSignature(kind="2d106 landmark model (2d106det.onnx)", input_shape=(None, 3, CROP, CROP),
                                      outputs=((212,),))


def landmark_normalisation(model: Any) -> tuple[float, float]:
    """(mean, std) insightface's Landmark class would use for this graph."""
    names = model_node_names(model)
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    if any(n == "bn_data" for n in names[:3]):
        has_sub = has_mul = True
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 128.0)


def crop_matrices(boxes: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Face boxes (K, 4) -> (K, 2, 3) float32 frame -> crop matrices: the crop is centred on the
    box centre and 1.5 x the box's longer side spans `size` pixels."""
    b = boxes.double()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 2] + b[:, 0]) / 2, (b[:, 3] + b[:, 1]) / 2
    s = size / (torch.maximum(w, h) * 1.5)
    zero = torch.zeros_like(s)
    m = torch.stack([torch.stack([s, zero, size / 2 - cx * s], -1), torch.stack([zero, s, size / 2 - cy * s], -1)], 1)
    return m.float()


class Landmark106:
    """2d106 on batches of faces. landmarks(frames, faces) -> (K, 106, 2) float32 frame pixels,
    on the frames' device; frames (N, 3, H, W) uint8 RGB; faces: their boxes are used."""

    def __init__(self, runner: OnnxRunner, mean: float, std: float) -> None:
        self.runner = runner
        self.mean = mean
        self.std = std

    @classmethod
    def load(cls, path: str | Path, runtime: Runtime | None = None, device: torch.device | str = "cpu",
             fp16: bool | None = None, threads: int = 0) -> Landmark106:
        mean, std = landmark_normalisation(load_onnx_model(path, LANDMARK106_SIGNATURE))
        runner = load_onnx_runner(path, LANDMARK106_SIGNATURE, runtime or default_runtime(device), device,
                                  (1, 3, CROP, CROP), fp16=fp16, threads=threads)
        return cls(runner, mean, std)

    def landmarks(self, frames: torch.Tensor, faces: FaceBatch) -> torch.Tensor:
        check_frames(frames)
        k = len(faces)
        if k == 0:
            return torch.zeros((0, 106, 2), dtype=torch.float32, device=frames.device)
        m = crop_matrices(faces.boxes).to(frames.device)
        # crops are rounded to uint8 levels, as the crop insightface feeds is a uint8 image
        crops = warp_crops(frames, faces.frame_index, m, CROP).round_()
        pred = self.runner((crops - self.mean) / self.std)[0].reshape(k, -1, 2)[:, -106:]
        pts = (pred + 1) * (CROP // 2)
        return transform_points(pts, invert_affine(m)).float()

    def __call__(self, frames: torch.Tensor, faces: FaceBatch) -> FaceBatch:
        """faces with their `landmarks` filled in."""
        return faces.with_landmarks(self.landmarks(frames, faces))
