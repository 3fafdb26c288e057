"""Face records: a batch of faces as tensors (what the pipeline passes on) and a per-face view.

A `FaceBatch` holds every face found in a batch of N frames, flattened to K rows in frame
order (and by descending score inside a frame); `frame_index` says which frame each row
belongs to. Tensors live on the device of the frames they came from. `FaceDet` is a host-side
view of one row, for code and people that want one face at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class FaceDet:
    """One face, on the host.

    box: (4,) float32 x1, y1, x2, y2 in frame pixels; kps: (5, 2) float32 ArcFace keypoints
    (image-left eye, image-right eye, nose tip, left mouth corner, right mouth corner);
    landmarks: (106, 2) or (68, 2) float32 in frame pixels, or None; embedding: (D,) float32
    L2-normalised, or None.
    """

    frame_index: int
    box: np.ndarray
    score: float
    kps: np.ndarray
    landmarks: np.ndarray | None = None
    embedding: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


@dataclass(frozen=True)
class FaceBatch:
    """All faces of a batch of `n_frames` frames, K rows, on the frames' device.

    boxes: (K, 4) float32 x1, y1, x2, y2 in frame pixels; scores: (K,) float32;
    kps: (K, 5, 2) float32 frame pixels; frame_index: (K,) int64 in [0, n_frames), non-decreasing;
    landmarks: (K, L, 2) float32 or None; embeddings: (K, D) float32 L2-normalised or None.
    """

    n_frames: int
    boxes: torch.Tensor
    scores: torch.Tensor
    kps: torch.Tensor
    frame_index: torch.Tensor
    landmarks: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None

    def __post_init__(self) -> None:
        k = self.boxes.shape[0]
        checks = [
            (self.boxes.shape == (k, 4), "boxes must be (K, 4)"),
            (self.scores.shape == (k,), "scores must be (K,)"),
            (self.kps.shape == (k, 5, 2), "kps must be (K, 5, 2)"),
            (self.frame_index.shape == (k,), "frame_index must be (K,)"),
            (
                self.landmarks is None
                or (self.landmarks.ndim == 3 and self.landmarks.shape[0] == k and self.landmarks.shape[2] == 2),
                "landmarks must be (K, L, 2)",
            ),
            (
                self.embeddings is None or (self.embeddings.ndim == 2 and self.embeddings.shape[0] == k),
                "embeddings must be (K, D)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FaceBatch: {message}")

    @staticmethod
    def empty(n_frames: int, device: torch.device | str = "cpu") -> FaceBatch:
        """A batch of `n_frames` frames with no face."""
        return FaceBatch(
            n_frames=n_frames,
            boxes=torch.zeros((0, 4), dtype=torch.float32, device=device),
            scores=torch.zeros((0,), dtype=torch.float32, device=device),
            kps=torch.zeros((0, 5, 2), dtype=torch.float32, device=device),
            frame_index=torch.zeros((0,), dtype=torch.int64, device=device),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def counts(self) -> torch.Tensor:
        """(n_frames,) int64: number of faces per frame."""
        return torch.bincount(self.frame_index, minlength=self.n_frames)

    def with_landmarks(self, landmarks: torch.Tensor) -> FaceBatch:
        return replace(self, landmarks=landmarks)

    def with_embeddings(self, embeddings: torch.Tensor) -> FaceBatch:
        return replace(self, embeddings=embeddings)

    def select(self, rows: torch.Tensor) -> FaceBatch:
        """The faces at `rows` (a (K,) bool mask or an index tensor), same n_frames."""
        if rows.dtype == torch.bool:  # one data-dependent size to find (a host sync on a GPU), not one per field
            rows = rows.nonzero().squeeze(1)
        return self._take(rows)

    def _take(self, rows: torch.Tensor | slice) -> FaceBatch:
        """Every field indexed by `rows` (an index tensor or a slice), same n_frames."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        return FaceBatch(
            self.n_frames,
            self.boxes[rows],
            self.scores[rows],
            self.kps[rows],
            self.frame_index[rows],
            pick(self.landmarks),
            pick(self.embeddings),
        )

    def per_frame(self) -> list[FaceBatch]:
        """The faces of each frame (rows keep their order), one FaceBatch per frame, same n_frames:
        `[self.in_frame(i) for i in range(n_frames)]` with one host read (the counts), not one per frame."""
        # the counts and whether the rows are already by frame (detections are), in one read
        fi = self.frame_index
        *counts, by_frame = torch.cat([self.counts(), (fi[1:] >= fi[:-1]).all()[None].long()]).tolist()
        ordered = self if by_frame else self.select(torch.argsort(fi, stable=True))
        out, start = [], 0
        for n in counts:
            out.append(ordered._take(slice(start, start + n)))
            start += n
        return out

    def in_frame(self, i: int) -> FaceBatch:
        """The faces of frame i (rows keep their order), same n_frames."""
        return self.select(self.frame_index == i)

    def to(self, device: torch.device | str) -> FaceBatch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return FaceBatch(
            self.n_frames,
            self.boxes.to(device),
            self.scores.to(device),
            self.kps.to(device),
            self.frame_index.to(device),
            move(self.landmarks),
            move(self.embeddings),
        )

    def face(self, i: int) -> FaceDet:
        """Row i as a host-side `FaceDet` (copies to the host)."""
        return self.faces()[i]

    def faces(self) -> list[FaceDet]:
        """Every row as a `FaceDet`, in row order (one host copy per field)."""

        def host(t: torch.Tensor | None) -> np.ndarray | None:
            return None if t is None else t.detach().float().cpu().numpy()

        boxes, scores, kps = host(self.boxes), host(self.scores), host(self.kps)
        lmk, emb = host(self.landmarks), host(self.embeddings)
        fidx = self.frame_index.cpu().tolist()
        assert boxes is not None and scores is not None and kps is not None
        return [
            FaceDet(
                frame_index=int(fidx[i]),
                box=boxes[i],
                score=float(scores[i]),
                kps=kps[i],
                landmarks=None if lmk is None else lmk[i],
                embedding=None if emb is None else emb[i],
            )
            for i in range(len(self))
        ]

    @staticmethod
    def concat(batches: list[FaceBatch]) -> FaceBatch:
        """Join batches of consecutive frame groups into one (frame indices are offset)."""
        if not batches:
            raise ValueError("FaceBatch.concat needs at least one batch")
        offset = 0
        fidx = []
        for b in batches:
            fidx.append(b.frame_index + offset)
            offset += b.n_frames

        def cat(name: str) -> torch.Tensor | None:
            parts = [getattr(b, name) for b in batches]
            if all(p is None for p in parts):
                return None
            if any(p is None for p in parts):
                raise ValueError(f"FaceBatch.concat: {name} present in some batches only")
            return torch.cat(parts)

        return FaceBatch(
            offset,
            torch.cat([b.boxes for b in batches]),
            torch.cat([b.scores for b in batches]),
            torch.cat([b.kps for b in batches]),
            torch.cat(fidx),
            cat("landmarks"),
            cat("embeddings"),
        )
