"""Face identity: embeddings of detected faces and matching them to reference faces.

Encoders share one method, `embed(frames, faces) -> (K, D)` float32 L2-normalised on the frames'
device; each cuts the crop its network was trained on:
- `TorchArcFace`: a torch module (GHOST's IResNet-100 `backbone.pth`) on GHOST's 224 crop scaled
  to [-1, 1] and downscaled to 112 (bilinear, align_corners=True).
- `OnnxArcFace`: insightface's ONNX recognisers (glintr100.onnx, w600k_r50.onnx) on the ArcFace
  112 crop, RGB, (x - 127.5) / 127.5 (or raw pixels for MXNet-converted graphs, as insightface).
- the lite backend's `DlibIdentity` (streamswap.faces.lite), 128-d.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from streamswap.errors import InputError, NoFaceError
from streamswap.faces.align import GHOST_CROP, arcface_align, ghost_align, warp_crops
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

GHOST_MATCH_THRESHOLD = 0.15
RECOGNISER_SIGNATURE = OnnxSignature(
    kind="ArcFace recogniser (glintr100.onnx or w600k_r50.onnx)", input_shape=(None, 3, 112, 112), outputs=((512,),)
)


class IdentityEncoder(Protocol):
    dim: int

    def embed(self, frames: torch.Tensor, faces: FaceBatch) -> torch.Tensor: ...


def recogniser_normalisation(model: Any) -> tuple[float, float]:
    """(mean, std) insightface's ArcFaceONNX would use for this graph (read off its first node names)."""
    names = model_node_names(model)
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)


class OnnxArcFace:
    """insightface's ONNX ArcFace recognisers. embed_crops(crops (K, 3, 112, 112) float RGB in
    [0, 255]) -> (K, 512); embed(frames, faces) cuts the ArcFace crops from the keypoints first."""

    dim = 512

    def __init__(self, runner: OnnxRunner, mean: float, std: float) -> None:
        self.runner = runner
        self.mean = mean
        self.std = std

    @classmethod
    def load(
        cls,
        path: str | Path,
        runtime: Runtime | None = None,
        device: torch.device | str = "cpu",
        fp16: bool | None = None,
        threads: int = 0,
    ) -> OnnxArcFace:
        model = load_onnx_model(path, RECOGNISER_SIGNATURE)
        mean, std = recogniser_normalisation(model)
        runner = load_onnx_runner(
            path,
            RECOGNISER_SIGNATURE,
            runtime,
            device,
            (1, 3, 112, 112),
            fp16=fp16,
            threads=threads,
            model=model,
        )
        return cls(runner, mean, std)

    def embed_crops(self, crops: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        out = self.runner((crops.float() - self.mean) / self.std)[0]
        return F.normalize(out, dim=1) if normalise else out

    def embed(self, frames: torch.Tensor, faces: FaceBatch) -> torch.Tensor:
        check_frames(frames)
        if len(faces) == 0:
            return torch.zeros((0, self.dim), dtype=torch.float32, device=frames.device)
        m = arcface_align(faces.kps)  # where the keypoints are: warp_crops takes either
        # rounded to uint8 levels: the crop insightface feeds is a uint8 image
        return self.embed_crops(warp_crops(frames, faces.frame_index, m, 112).round_())


class TorchArcFace:
    """A torch identity network mapping (B, 3, 112, 112) in [-1, 1] to (B, 512), e.g. GHOST's
    IResNet-100, used as GHOST uses it: on its 224 crop downscaled by 2.

    embed_crops(crops (K, 3, 224, 224) float RGB in [0, 255], normalise) -> (K, 512);
    embed(frames, faces) cuts GHOST's 224 crops from the keypoints first. fp16: run the module in
    half precision (default: on CUDA)."""

    dim = 512

    def __init__(self, module: torch.nn.Module, device: torch.device | str = "cpu", fp16: bool | None = None) -> None:
        self.device = torch.device(device)
        self.dtype = torch.float16 if (self.device.type == "cuda" if fp16 is None else fp16) else torch.float32
        self.module = module.to(device=self.device, dtype=self.dtype).eval()

    def embed_crops(self, crops: torch.Tensor, normalise: bool = True) -> torch.Tensor:
        x = (crops.float().to(self.device) / 255.0 - 0.5) / 0.5
        x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=True)
        with torch.inference_mode():
            out = in_buckets(self.module, x.to(self.dtype)).float()
        return F.normalize(out, dim=1) if normalise else out

    def embed(self, frames: torch.Tensor, faces: FaceBatch) -> torch.Tensor:
        check_frames(frames)
        if len(faces) == 0:
            return torch.zeros((0, self.dim), dtype=torch.float32, device=frames.device)
        m, _ = ghost_align(faces.kps)
        crops = warp_crops(frames, faces.frame_index, m, GHOST_CROP).round_()
        return self.embed_crops(crops)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(K, D), (R, D) -> (K, R) cosine similarities (rows need not be normalised)."""
    return F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T


def match_references(
    faces: FaceBatch, references: torch.Tensor, threshold: float = GHOST_MATCH_THRESHOLD
) -> torch.Tensor:
    """GHOST's multi-face rule: for each frame and each reference embedding, the detected face
    with the highest cosine similarity, accepted when it is > threshold.

    faces: with embeddings (K, D); references: (R, D). Returns (n_frames, R) int64: the row of
    the matched face in `faces`, or -1.
    """
    if faces.embeddings is None:
        raise ValueError("match_references needs faces with embeddings (run an identity encoder first)")
    r = references.shape[0]
    result = torch.full((faces.n_frames, r), -1, dtype=torch.int64, device=faces.device)
    if len(faces) == 0 or r == 0:
        return result
    sim = cosine_similarity(faces.embeddings, references.to(faces.device))  # (K, R)
    same_frame = faces.frame_index[None, :] == torch.arange(faces.n_frames, device=faces.device)[:, None]
    per_frame = torch.where(same_frame[:, :, None], sim[None], torch.tensor(-2.0, device=faces.device))  # (N, K, R)
    best, row = per_frame.max(dim=1)  # (N, R)
    return torch.where(best > threshold, row, result)


def chosen_face(faces: FaceBatch, index: int | None = None, what: str = "the source image") -> FaceBatch:
    """The face a user means in a one-frame FaceBatch, as one row: the only face, or with several
    the `index`-th counted left to right. NoFaceError without a face; InputError when several
    faces and no index (it says how to choose) or an index out of range."""
    if len(faces) == 0:
        raise NoFaceError(f"no face found in {what}; use a photo with one clearly visible face")
    if index is None and len(faces) > 1:
        raise InputError(
            f"{what} has {len(faces)} faces; choose one with --source-face-index 0..{len(faces) - 1} "
            "(counted left to right)"
        )
    index = 0 if index is None else index
    if not 0 <= index < len(faces):
        raise InputError(f"--source-face-index {index} is out of range: {what} has {len(faces)} face(s)")
    order = torch.argsort(faces.boxes[:, 0])  # left to right, as a user counts
    return faces.select(order[index].reshape(1))


def largest_face(faces: FaceBatch, frame: int = 0, what: str = "the image") -> FaceBatch:
    """The largest face (by box area) of one frame, as a one-row FaceBatch.
    Raises NoFaceError when the frame has none."""
    rows = (faces.frame_index == frame).nonzero().flatten()
    if rows.numel() == 0:
        raise NoFaceError(f"no face found in {what}; use an image with a clearly visible face")
    b = faces.boxes[rows]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    return faces.select(rows[area.argmax()].reshape(1))
