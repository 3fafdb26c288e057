"""Face detection on batches of frames with insightface's SCRFD ONNX models, decoded in torch.

Same results as insightface's `SCRFD.detect` (letterbox at the top-left, RGB input scaled
(x - 127.5) / 128, three strides with two anchors per location, boxes as distances from the
anchor centre, keypoints as offsets, score >= threshold, greedy NMS with insightface's
pixel-inclusive IoU), but for a whole batch at once, on the frames' device.

insightface feeds `cv2.dnn.blobFromImage(bgr_image, swapRB=True)`: the network sees RGB.
Our frames are RGB already, so they go in unswapped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from streamswap.errors import InputError, ModelError
from streamswap.faces.nms import greedy_keep
from streamswap.faces.onnx_runtime import OnnxRunner, OnnxSignature, Runtime, load_onnx_runner
from streamswap.faces.records import FaceBatch
from streamswap.transfer import host_tensors

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
ANCHORS_PER_LOCATION = 2
SCRFD_SIGNATURE = OnnxSignature(
    kind="SCRFD face detector (scrfd_10g_bnkps.onnx or det_10g.onnx)",
    input_shape=(None, 3, None, None),
    outputs=((1,),) * 3 + ((4,),) * 3 + ((10,),) * 3,
)


@dataclass(frozen=True)
class DetectSettings:
    """size: detector input (width, height), multiples of 32; score_threshold: keep scores >= it
    (insightface 0.5, GHOST 0.6); nms_threshold: suppress IoU > it; max_faces: most faces kept
    per frame, by score (0 = all); top_k: most candidates per frame entering NMS."""

    size: tuple[int, int] = (640, 640)
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    max_faces: int = 0
    top_k: int = 1000

    def __post_init__(self) -> None:
        w, h = self.size
        if w <= 0 or h <= 0 or w % 32 or h % 32:
            raise InputError(f"detector size {w}x{h} must be positive multiples of 32 (e.g. 640x640)")
        if not 0.0 <= self.score_threshold <= 1.0 or not 0.0 <= self.nms_threshold <= 1.0:
            raise InputError("detector score and NMS thresholds must lie in [0, 1]")
        if self.max_faces < 0 or self.top_k < 1:
            raise InputError("max_faces must be >= 0 and top_k >= 1")


def check_frames(frames: torch.Tensor) -> None:
    """Raise InputError unless frames is a (N, 3, H, W) uint8 batch."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(f"frames must be a (N, 3, H, W) uint8 RGB batch, got {tuple(frames.shape)} {frames.dtype}")


def letterbox_geometry(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, float]:
    """insightface's fit: (new_height, new_width, det_scale) for a frame placed at the top-left."""
    im_ratio = height / width
    model_ratio = size[1] / size[0]
    if im_ratio > model_ratio:
        new_h = size[1]
        new_w = int(new_h / im_ratio)
    else:
        new_w = size[0]
        new_h = int(new_w * im_ratio)
    return new_h, new_w, new_h / height


def letterbox(frames: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
    """frames (N, 3, H, W) uint8 RGB -> the detector input (N, 3, size[1], size[0]) float32,
    (x - 127.5) / 128, with the scaled frame at the top-left and zeros (before scaling) elsewhere;
    and det_scale (detector pixels per frame pixel). Stays on the frames' device."""
    n, _, h, w = frames.shape
    new_h, new_w, scale = letterbox_geometry(h, w, size)
    x = frames
    if (new_h, new_w) != (h, w):
        # cv2.resize INTER_LINEAR semantics (half-pixel centres, no antialias) at uint8 levels, as
        # cv2 returns them: within 1 grey level of cv2's fixed-point result. On CPU torch resizes
        # uint8 directly (channels-last: ~10x faster than via float); elsewhere via float.
        if frames.device.type == "cpu":
            x = F.interpolate(
                frames.contiguous(memory_format=torch.channels_last),
                size=(new_h, new_w),
                mode="bilinear",
                align_corners=False,
            )
        else:
            x = F.interpolate(frames.float(), size=(new_h, new_w), mode="bilinear", align_corners=False).round_()
    blob = torch.zeros((n, 3, size[1], size[0]), dtype=torch.float32, device=frames.device)
    blob[:, :, :new_h, :new_w] = x
    return (blob - 127.5) / 128.0, scale


def anchor_centres(height: int, width: int, stride: int, device: torch.device) -> torch.Tensor:
    """(height * width * anchors, 2) float32 x, y of each anchor, rows ordered (y, x, anchor)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() * stride
    return centres.repeat_interleave(ANCHORS_PER_LOCATION, dim=0)


def decode(
    outputs: list[torch.Tensor], n: int, size: tuple[int, int], det_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nine SCRFD outputs for n images -> scores (n, A), boxes (n, A, 4), kps (n, A, 5, 2),
    in frame pixels; A = all anchors of the three strides, in stride order."""
    scores, boxes, kps = [], [], []
    for i, stride in enumerate(STRIDES):
        fh, fw = size[1] // stride, size[0] // stride
        rows = fh * fw * ANCHORS_PER_LOCATION
        s, b, k = outputs[i], outputs[i + 3], outputs[i + 6]
        if s.numel() != n * rows or b.numel() != n * rows * 4 or k.numel() != n * rows * 10:
            raise ModelError(
                f"SCRFD stride-{stride} outputs hold {s.numel() // max(n, 1)} rows per image, expected "
                f"{rows} for a {size[0]}x{size[1]} input: not an SCRFD model with 2 anchors, or a "
                "detector size it does not take"
            )
        centres = anchor_centres(fh, fw, stride, s.device)
        dist = b.reshape(n, rows, 4) * stride
        boxes.append(torch.cat([centres - dist[..., :2], centres + dist[..., 2:]], dim=-1))
        kps.append(centres[:, None, :] + k.reshape(n, rows, 5, 2) * stride)
        scores.append(s.reshape(n, rows))
    return torch.cat(scores, 1), torch.cat(boxes, 1) / det_scale, torch.cat(kps, 1) / det_scale


def select_faces(scores: torch.Tensor, boxes: torch.Tensor, kps: torch.Tensor, settings: DetectSettings) -> FaceBatch:
    """Threshold, per-frame NMS and max_faces on decoded candidates -> FaceBatch (by frame, then score)."""
    n = scores.shape[0]
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # insightface's tie order
    valid_count = int((scores >= settings.score_threshold).sum(dim=1).max()) if n else 0
    k = min(valid_count, settings.top_k)
    if k == 0:
        return FaceBatch.empty(n, scores.device)
    order = order[:, :k]
    s = torch.gather(scores, 1, order)
    b = torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4))
    p = torch.gather(kps, 1, order[..., None, None].expand(-1, -1, 5, 2))
    keep = greedy_keep(b, s >= settings.score_threshold, settings.nms_threshold, plus_one=True)
    if settings.max_faces:
        keep &= keep.cumsum(dim=1) <= settings.max_faces
    frame_index, rank = keep.nonzero(as_tuple=True)
    return FaceBatch(
        n_frames=n,
        boxes=b[frame_index, rank],
        scores=s[frame_index, rank],
        kps=p[frame_index, rank],
        frame_index=frame_index,
    )


class SCRFDDetector:
    """SCRFD on batches: `detect(frames)` -> FaceBatch.

    frames: (N, 3, H, W) uint8 RGB on the runner's device, one size per batch. The result's
    tensors are in host memory (CPU), coordinates in frame pixels: one download per batch.
    """

    def __init__(self, runner: OnnxRunner, settings: DetectSettings = DetectSettings()) -> None:
        self.runner = runner
        self.settings = settings

    @classmethod
    def load(
        cls,
        path: str | Path,
        settings: DetectSettings = DetectSettings(),
        runtime: Runtime | None = None,
        device: torch.device | str = "cpu",
        fp16: bool | None = None,
        threads: int = 0,
    ) -> SCRFDDetector:
        """Load an SCRFD ONNX file (checks its signature; probes whether it takes a batch)."""
        runner = load_onnx_runner(
            path,
            SCRFD_SIGNATURE,
            runtime,
            device,
            (1, 3, settings.size[1], settings.size[0]),
            fp16=fp16,
            threads=threads,
        )
        return cls(runner, settings)

    def detect(self, frames: torch.Tensor) -> FaceBatch:
        check_frames(frames)
        n = frames.shape[0]
        if n == 0:
            return FaceBatch.empty(0, frames.device)
        blob, det_scale = letterbox(frames, self.settings.size)
        outputs = self.runner(blob)
        scores, boxes, kps = decode(outputs, n, self.settings.size, det_scale)
        # The host needs the faces' number and boxes (tracking, crop regions), and selection is
        # data-dependent (threshold, NMS rounds, max_faces): each frame's best top_k candidates
        # (fixed shapes) come down in one copy and are selected there, with no further sync.
        k = min(self.settings.top_k, scores.shape[1])
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        s, b, p = host_tensors(
            [
                torch.gather(scores, 1, order),
                torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4)),
                torch.gather(kps, 1, order[..., None, None].expand(-1, -1, 5, 2)),
            ]
        )
        return select_faces(s, b, p, self.settings)

    __call__ = detect
