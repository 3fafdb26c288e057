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

from streamswap.faces.align import CropPlan, cut_crops, invert_affine, plan_crops, transform_points
from streamswap.faces.detect import check_frames
from streamswap.faces.onnx_runtime import (
    OnnxRunner,
    OnnxSignature,
    Runtime,
    load_onnx_model,
    load_onnx_runner,
    model_node_names,
)
from streamswap.faces.records import FaceBatch
from streamswap.models.buckets import in_buckets
from streamswap.transfer import all_like_device, to_device

CROP = 192
LANDMARK106_SIGNATURE = OnnxSignature(
    kind="2d106 landmark model (2d106det.onnx)", input_shape=(None, 3, CROP, CROP), outputs=((212,),)
)


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
        # the whole-crop box's (region, region -> crop, crop -> frame) per (device, crop side)
        self._whole: dict[tuple[torch.device, int], tuple[list[int], torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def load(
        cls,
        path: str | Path,
        runtime: Runtime | None = None,
        device: torch.device | str = "cpu",
        fp16: bool | None = None,
        threads: int = 0,
    ) -> Landmark106:
        model = load_onnx_model(path, LANDMARK106_SIGNATURE)
        mean, std = landmark_normalisation(model)
        runner = load_onnx_runner(
            path,
            LANDMARK106_SIGNATURE,
            runtime,
            device,
            (1, 3, CROP, CROP),
            fp16=fp16,
            threads=threads,
            model=model,
        )
        return cls(runner, mean, std)

    def landmarks(self, frames: torch.Tensor, faces: FaceBatch) -> torch.Tensor:
        check_frames(frames)
        k = len(faces)
        if k == 0:
            return torch.zeros((0, 106, 2), dtype=torch.float32, device=frames.device)
        # the crop geometry where the boxes are (on the host after detection: no sync), then the
        # region matrices and the inverses go to the frames' device together
        m = crop_matrices(faces.boxes)
        plan = plan_crops(m, faces.frame_index, (CROP, CROP), (frames.shape[-2], frames.shape[-1]))
        shifted, inv = all_like_device([plan.shifted, invert_affine(m)], frames, torch.float32)
        return self._predict(frames, plan, shifted, inv)

    def landmarks_in_crops(self, crops: torch.Tensor) -> torch.Tensor:
        """Landmarks of faces that fill their square crops (GHOST runs 2d106 on its whole 224
        crop): crops (K, 3, S, S) uint8 -> (K, 106, 2) float32 crop pixels, on the crops'
        device. The same as `landmarks` with one box covering each crop; that box's matrices are
        made and uploaded once per device and size."""
        check_frames(crops)
        k, side = crops.shape[0], crops.shape[-1]
        if k == 0:
            return torch.zeros((0, 106, 2), dtype=torch.float32, device=crops.device)
        region, shifted, inv = self.prepare_crops(crops.device, side)
        plan = CropPlan([[*region, i] for i in range(k)], shifted.expand(k, 2, 3))
        return self._predict(crops, plan, plan.shifted, inv.expand(k, 2, 3))

    def prepare_crops(self, device: torch.device, side: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The whole-crop box's region, region -> crop and crop -> frame matrices for `side`
        crops on `device`, made (one upload) on first use; call it ahead to keep that upload out
        of the hot path."""
        key = (device, side)
        if key not in self._whole:
            m = crop_matrices(torch.tensor([[0.0, 0.0, side, side]]))
            plan = plan_crops(m, torch.zeros(1, dtype=torch.int64), (CROP, CROP), (side, side))
            shifted, inv = to_device([plan.shifted.numpy(), invert_affine(m).numpy()], device, torch.float32)
            self._whole[key] = (plan.regions[0][:4], shifted, inv)
        return self._whole[key]

    def _predict(self, frames: torch.Tensor, plan: CropPlan, shifted: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        """2d106 on the crops of `plan` -> (K, 106, 2) float32 through `inv` (crop -> frame)."""
        # crops are rounded to uint8 levels, as the crop insightface feeds is a uint8 image
        crops = cut_crops(frames, plan, shifted, (CROP, CROP)).round_()
        pred = in_buckets(self.runner, (crops - self.mean) / self.std)[0].reshape(len(crops), -1, 2)[:, -106:]
        return transform_points((pred + 1) * (CROP // 2), inv).float()

    def __call__(self, frames: torch.Tensor, faces: FaceBatch) -> FaceBatch:
        """faces with their `landmarks` filled in."""
        return faces.with_landmarks(self.landmarks(frames, faces))
