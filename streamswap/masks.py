"""GHOST's landmark-adaptive face masks, on batches of tensors, with temporal hysteresis.

How much of the generated crop is pasted depends on how the generated face's contour sits
against the target's (dense landmarks of both 224 crops):

    offset = max(sum_{i in left} (gen[i].x - tgt[i].x), sum_{i in right} (tgt[i].x - gen[i].x))

with `left` contour points on the image-left side and `right` ones on the image-right side. A
positive offset means the generated contour lies inside the target's (the generated face is
narrower): the mask shrinks and blurs more, so the target's own cheeks show. A negative one (the
generated face is wider) grows the mask so it carries the generated head shape. GHOST-SPEC.md
calls positive "wider"; its index lists and rules say otherwise (2d106 points 1..16 run down the
image-left jaw, as iBUG 0..7 do), and ARCHITECTURE.md's "narrower -> smaller mask" agrees.

Levels (GHOST's rules): offset < -3 -> dilate 5, sigma (5, 10), brows x0.5; -3..3 -> erode 5,
sigma (5, 5), brows x2; 3..6 -> erode 10, sigma (10, 8), brows x2; > 6 -> erode 15, sigma
(15, 10), brows x2.7. The mask: eyebrows pushed away from the eyes (brow += mod * 0.5 * (brow -
eye_top)), the convex hull of all points filled, eroded or dilated with a square kernel, a border
of 2 * sigma_y zeroed, Gaussian-blurred; values in [0, 1].

GHOST picks the level once per face segment; here a level changes only after
`hysteresis_frames` frames in a row ask for the same new level with the offset at least
`margin` px past the threshold, so the border does not flicker while the offset hovers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from streamswap.errors import InputError
from streamswap.transfer import all_like_device, host_tensors, in_host_memory


@dataclass(frozen=True)
class LandmarkScheme:
    """Which landmark indices the mask rules use, for one landmark layout.

    left / right: contour points on the image-left / image-right side of the jaw (offset);
    eye_top / brows: paired lists, each brow point pushed away from its eye-top point.
    """

    name: str
    n_points: int
    left: tuple[int, ...]
    right: tuple[int, ...]
    eye_top: tuple[int, ...]
    brows: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.eye_top) != len(self.brows):
            raise ValueError(f"{self.name}: eye_top and brows must pair up")
        if max(self.left + self.right + self.eye_top + self.brows) >= self.n_points:
            raise ValueError(f"{self.name}: an index exceeds {self.n_points} points")


# insightface 2d106, as GHOST uses it
GHOST_106 = LandmarkScheme(
    "2d106",
    106,
    left=(1, 2, 13),
    right=(17, 18, 29),
    eye_top=(35, 41, 40, 42, 39, 89, 95, 94, 96, 93),
    brows=(43, 48, 49, 51, 50, 102, 103, 104, 105, 101),
)
# iBUG 68 (dlib): the jaw points at the heights of 2d106's 1, 2, 13 (and mirrored); each brow
# point paired with the eye-lid point below it (36-39 / 42-45 are the image-left / -right eye)
IBUG_68 = LandmarkScheme(
    "ibug68",
    68,
    left=(0, 4, 2),
    right=(16, 12, 14),
    eye_top=(36, 37, 37, 38, 39, 42, 43, 44, 44, 45),
    brows=(17, 18, 19, 20, 21, 22, 23, 24, 25, 26),
)


@dataclass(frozen=True)
class MaskLevel:
    """erode: square kernel side px (negative: dilate); sigma_x, sigma_y: blur; brow_mod: brow expansion."""

    erode: int
    sigma_x: float
    sigma_y: float
    brow_mod: float


LEVELS = (MaskLevel(-5, 5, 10, 0.5), MaskLevel(5, 5, 5, 2.0), MaskLevel(10, 10, 8, 2.0), MaskLevel(15, 15, 10, 2.7))
THRESHOLDS = (-3.0, 3.0, 6.0)  # level = how many of these the offset passes (>= -3, > 3, > 6)


@dataclass(frozen=True)
class MaskSettings:
    """scheme: the landmark layout; size: crop side px (GHOST: 224); hysteresis_frames: frames
    in a row that must agree before a face's level changes (1 = none); margin: px the offset must
    pass a threshold by to count."""

    scheme: LandmarkScheme = GHOST_106
    size: int = 224
    hysteresis_frames: int = 5
    margin: float = 0.5

    def __post_init__(self) -> None:
        if self.hysteresis_frames < 1 or self.margin < 0 or self.size < 16:
            raise InputError("mask settings: hysteresis_frames >= 1, margin >= 0 and size >= 16 are required")


# ----------------------------------------------------------------------------- parameters


def landmark_offset(gen: torch.Tensor, tgt: torch.Tensor, scheme: LandmarkScheme) -> torch.Tensor:
    """GHOST's width offset px. gen, tgt: (B, L, 2) crop pixels -> (B,) float (positive: the
    generated contour lies inside the target's)."""
    left = (gen[:, list(scheme.left), 0] - tgt[:, list(scheme.left), 0]).sum(1)
    right = (tgt[:, list(scheme.right), 0] - gen[:, list(scheme.right), 0]).sum(1)
    return torch.maximum(left, right)


def offset_level(offset: torch.Tensor, current: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
    """Level index 0..3 (into LEVELS) for each offset (B,). With `current` (B,) levels, each
    threshold is moved `margin` px away from the current level (a dead band)."""
    off = offset.float()
    if current is None:
        shift = torch.zeros(off.shape[0], len(THRESHOLDS), device=offset.device)
    else:  # threshold i separates levels i and i + 1
        above = torch.arange(len(THRESHOLDS), device=offset.device)[None] >= current[:, None]
        shift = torch.where(above, margin, -margin)
    # GHOST: < -3, > 3, > 6 (the thresholds as Python numbers: no upload of a constant per call)
    passed = [off >= THRESHOLDS[0] + shift[:, 0], *(off > t + shift[:, i] for i, t in enumerate(THRESHOLDS) if i)]
    return torch.stack(passed, 1).sum(1)


class LevelHysteresis:
    """Per-face mask levels that change only after `frames` frames in a row ask for the same new
    level (with the offset past the threshold by `margin`). Keys are track ids.

    update(keys, offsets (B,)) -> levels (B,) int64 in host memory (one download); rows are taken in
    order, so one batch may hold several frames of a face. A new key takes its level at once.
    """

    def __init__(self, frames: int = 5, margin: float = 0.5) -> None:
        self.frames = frames
        self.margin = margin
        self._state: dict[int, tuple[int, int, int]] = {}  # key -> (level, candidate, run)

    def update(self, keys: Sequence[int], offsets: torch.Tensor) -> torch.Tensor:
        offsets = offsets.detach().float()
        rows = offsets.shape[0]
        # each row's level from scratch and from each current level, read in one download (the
        # per-track state below lives on the host); the result goes back in one upload
        table = [offset_level(offsets)] + [
            offset_level(offsets, torch.full((rows,), level, device=offsets.device), self.margin)
            for level in range(len(THRESHOLDS) + 1)
        ]
        plain, *from_level = torch.stack(table).tolist()
        out = []
        for i, key in enumerate(keys):
            if key not in self._state:
                self._state[key] = (plain[i], plain[i], 0)
                out.append(plain[i])
                continue
            level, candidate, run = self._state[key]
            wanted = from_level[level][i]
            if wanted == level:
                candidate, run = level, 0
            elif wanted == candidate:
                run += 1
            else:
                candidate, run = wanted, 1
            if run >= self.frames:
                level, run = candidate, 0
            self._state[key] = (level, candidate, run)
            out.append(level)
        return torch.tensor(out, dtype=torch.int64)  # in host memory, where the state lives

    def forget(self, keys: Sequence[int]) -> None:
        """Drop ended tracks."""
        for key in keys:
            self._state.pop(key, None)


# ----------------------------------------------------------------------------- raster


def expand_brows(points: torch.Tensor, mod: torch.Tensor, scheme: LandmarkScheme) -> torch.Tensor:
    """Push the brow points away from the eyes: brow += mod * 0.5 * (brow - eye_top).
    points (B, L, 2); mod (B,). Returns a new (B, L, 2)."""
    out = points.clone()
    brows, eyes = list(scheme.brows), list(scheme.eye_top)
    out[:, brows] = points[:, brows] + mod.to(points.dtype)[:, None, None] * 0.5 * (points[:, brows] - points[:, eyes])
    return out


def hull_edges(points: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of the convex hull of each point set, without a sequential hull algorithm.

    points (B, L, 2). For each point i, the candidate edge goes to the point j at the smallest
    signed angle from i's direction to the centroid (for a hull vertex every other point lies
    within 180 degrees of that direction, so this is one of its two hull edges); the candidate
    is kept when no point lies on its outer side (interior points fail). Returns (start
    (B, L, 2), direction (B, L, 2)), valid edges first; unused rows have direction 0 and always
    pass `inside` tests.
    """
    p = points.double()
    b, n, _ = p.shape
    d = p[:, None, :, :] - p[:, :, None, :]  # (B, i, j, 2): i -> j
    ref = p.mean(1, keepdim=True) - p  # i -> centroid
    ang = torch.atan2(ref[..., 0:1] * d[..., 1] - ref[..., 1:2] * d[..., 0], (ref[..., None, :] * d).sum(-1))
    length = d.norm(dim=-1)
    ang = torch.where(length > eps, ang, torch.full_like(ang, float("inf")))  # ignore i itself and duplicates
    # among equal angles (collinear points) take the furthest j, so the edge spans the whole side
    key = ang - 1e-9 * length / length.amax(dim=(1, 2), keepdim=True).clamp_min(eps)
    j = key.argmin(dim=2)  # (B, L)
    direction = torch.gather(d, 2, j[..., None, None].expand(b, n, 1, 2))[:, :, 0]
    cross = direction[:, :, None, 0] * d[..., 1] - direction[:, :, None, 1] * d[..., 0]  # (B, i, k): side of k
    scale = direction.norm(dim=-1, keepdim=True).clamp_min(eps) * length.amax(dim=(1, 2))[:, None, None].clamp_min(eps)
    side = cross / scale
    # a hull edge has every point on or inside it, and some strictly inside (else all are collinear)
    valid = (side >= -1e-9).all(dim=2) & (side > 1e-9).any(dim=2) & (direction.norm(dim=-1) > eps)
    # valid edges first; all L rows are kept (a batch-wide count would be a host read per call)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    e = n
    start = torch.gather(p, 1, order[..., None].expand(b, e, 2))
    direction = torch.gather(direction, 1, order[..., None].expand(b, e, 2))
    keep = torch.gather(valid, 1, order)
    direction = torch.where(keep[..., None], direction, torch.zeros_like(direction))
    return start, direction


def hull_mask(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Filled convex hulls rasterised on a pixel grid, as cv2.fillConvexPoly does: pixel centres
    at integer coordinates; a pixel is inside when its centre is inside every hull edge's
    half-plane, or within half a pixel of the edge along the edge's minor axis (the pixels a
    line drawing of the edge would set). points (B, L, 2) px -> (B, 1, h, w) float32 {0, 1} on
    the points' device. A degenerate set (fewer than 3 non-collinear points) is empty."""
    h, w = size
    start, direction = hull_edges(points)
    dx, dy = direction[..., 0], direction[..., 1]  # (B, E)
    # cross(direction, pixel - start) = a x + b y + c, >= -slack inside
    a, b = -dy, dx
    c = dy * start[..., 0] - dx * start[..., 1] + 0.5 * torch.maximum(dx.abs(), dy.abs())
    # a convex polygon covers one run of pixels per row: each edge bounds x from one side
    ys = torch.arange(h, device=points.device, dtype=torch.float64)[None, None, :]
    rhs = -(b[..., None] * ys + c[..., None])  # a x >= rhs, (B, E, h)
    inf = torch.full_like(rhs, float("inf"))
    a3 = a[..., None].expand_as(rhs)
    lower = torch.where(a3 > 0, rhs / a3.clamp_min(1e-300), -inf).amax(1)  # (B, h)
    upper = torch.where(a3 < 0, rhs / a3.clamp_max(-1e-300), inf).amin(1)
    row_ok = torch.where(a3 == 0, rhs <= 0, True).all(1)
    xs = torch.arange(w, device=points.device, dtype=torch.float64)[None, None, :]
    inside = (xs >= lower[..., None]) & (xs <= upper[..., None]) & row_ok[..., None]
    has_hull = (direction.norm(dim=-1) > 0).sum(1) >= 3
    inside &= has_hull[:, None, None]
    return inside[:, None].float()


def _window_pool(x: torch.Tensor, k: int, shrink: bool) -> torch.Tensor:
    """Min (shrink) or max over a k x k window anchored as OpenCV's (centre k // 2); outside the
    image counts as neutral, as cv2.erode/dilate's default border."""
    a = k // 2
    pad = (a, k - 1 - a)
    value = 1.0 if shrink else 0.0  # masks are in [0, 1]
    y = -x if shrink else x
    y = F.pad(y, (*pad, 0, 0), value=-value if shrink else value)
    y = F.max_pool2d(y, (1, k), stride=1)
    y = F.pad(y, (0, 0, *pad), value=-value if shrink else value)
    y = F.max_pool2d(y, (k, 1), stride=1)
    return -y if shrink else y


def zero_border(masks: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Set a border of `widths` (B,) px to 0 on all four sides of each (B, 1, h, w) mask."""
    h, w = masks.shape[-2:]
    ys = torch.arange(h, device=masks.device)[None, :, None]
    xs = torch.arange(w, device=masks.device)[None, None, :]
    wd = widths.to(masks.device)[:, None, None]
    keep = (ys >= wd) & (ys < h - wd) & (xs >= wd) & (xs < w - wd)
    return masks * keep[:, None].to(masks.dtype)


def cv2_kernel_size(sigma: float) -> int:
    """The Gaussian kernel side cv2.GaussianBlur picks for a uint8 image and ksize (0, 0)."""
    return int(round(sigma * 3 * 2 + 1)) | 1


def adaptive_masks(
    gen_landmarks: torch.Tensor,
    levels: torch.Tensor,
    scheme: LandmarkScheme = GHOST_106,
    size: int | tuple[int, int] = 224,
) -> torch.Tensor:
    """GHOST's masks for a batch of generated crops.

    gen_landmarks: (B, L, 2) landmarks of the generated faces, crop pixels; levels: (B,) int
    indices into LEVELS (from `offset_level` or `LevelHysteresis`), best in host memory (as the
    hysteresis gives them: then nothing waits; on the device they come down in one copy).
    Returns (B, 1, h, w) float32 in [0, 1] on the landmarks' device.
    """
    if gen_landmarks.ndim != 3 or gen_landmarks.shape[1] != scheme.n_points:
        raise InputError(
            f"mask: landmarks must be (B, {scheme.n_points}, 2) for the {scheme.name} scheme, "
            f"got {tuple(gen_landmarks.shape)}"
        )
    h, w = (size, size) if isinstance(size, int) else size
    # faces sorted by level on the host: each level's faces are then one slice, eroded and blurred
    # with that level's kernel (no per-call unique or mask indexing on the device)
    lv = levels.long() if in_host_memory(levels, gen_landmarks.device) else host_tensors([levels.long()])[0]
    order = torch.argsort(lv, stable=True)
    runs = torch.bincount(lv, minlength=len(LEVELS)).tolist()  # faces per level, in level order
    table = torch.tensor([[lv_.erode, lv_.sigma_x, lv_.sigma_y, lv_.brow_mod] for lv_ in LEVELS], dtype=torch.float32)
    params, order_dev, back = all_like_device(
        [table[lv[order]], order.float(), torch.argsort(order).float()], gen_landmarks, torch.float32
    )
    points = expand_brows(gen_landmarks.float()[order_dev.long()], params[:, 3], scheme)
    masks = hull_mask(points, (h, w))
    out = torch.empty_like(masks)
    start = 0
    for spec, n in zip(LEVELS, runs, strict=True):
        end = start + n
        if n:
            part = masks[start:end]
            if spec.erode:
                part = _window_pool(part, abs(int(spec.erode)), shrink=spec.erode > 0)
            part = zero_border(part, params[start:end, 2].mul(2).round().long())
            out[start:end] = gaussian_blur2d(
                part,
                (cv2_kernel_size(spec.sigma_y), cv2_kernel_size(spec.sigma_x)),
                (float(spec.sigma_y), float(spec.sigma_x)),  # Python numbers: kornia checks them on the host
                border_type="reflect",
            )
        start = end
    return out[back.long()].clamp_(0.0, 1.0)


class AdaptiveMasker:
    """Masks for a stream of faces: offset -> level with hysteresis per track -> mask.

    __call__(gen_landmarks (B, L, 2), tgt_landmarks (B, L, 2), keys: B track ids) ->
    (masks (B, 1, S, S) float32 [0, 1] on the landmarks' device, levels (B,) int64 in host memory).
    """

    def __init__(self, settings: MaskSettings = MaskSettings()) -> None:
        self.settings = settings
        self.hysteresis = LevelHysteresis(settings.hysteresis_frames, settings.margin)

    def __call__(
        self, gen_landmarks: torch.Tensor, tgt_landmarks: torch.Tensor, keys: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        offsets = landmark_offset(gen_landmarks.float(), tgt_landmarks.float(), s.scheme)
        levels = self.hysteresis.update(keys, offsets)  # in host memory
        return adaptive_masks(gen_landmarks, levels, s.scheme, s.size), levels

    def forget(self, keys: Sequence[int]) -> None:
        self.hysteresis.forget(keys)
