"""Five-point face alignment: similarity transforms, batched crops and their inverses.

Two crops:
- GHOST's 224 crop: the keypoints are fitted (least-squares similarity, Umeyama) to each of five
  pose templates (left profile .. right profile) and the template with the smallest summed point
  error wins, as GHOST's `estimate_norm(kps, 224, mode='None')` does. Not the ArcFace template.
- The ArcFace 112 crop (insightface's `norm_crop`), for insightface's ONNX recognisers.

Matrices are (K, 2, 3) float32, frame pixels -> crop pixels, in cv2.warpAffine's convention
(pixel centres at integer coordinates). Crops are cut with kornia (bilinear, zero border) on the
frames' device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.geometry.transform import warp_affine

from streamswap.transfer import device_of, like_device

ARCFACE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
# GHOST's five pose templates at 112 (left profile, left, frontal, right, right profile); x2 for 224
GHOST_TEMPLATES_112 = (
    ((51.642, 50.115), (57.617, 49.990), (35.740, 69.007), (51.157, 89.050), (57.025, 89.702)),
    ((45.031, 50.118), (65.568, 50.872), (39.677, 68.111), (45.177, 86.190), (64.246, 86.758)),
    ((39.730, 51.138), (72.270, 51.138), (56.000, 68.493), (42.463, 87.010), (69.537, 87.010)),
    ((46.845, 50.872), (67.382, 50.118), (72.737, 68.111), (48.167, 86.758), (67.236, 86.190)),
    ((54.796, 49.990), (60.771, 50.115), (76.673, 69.007), (55.388, 89.702), (61.257, 89.050)),
)
GHOST_CROP = 224
ARCFACE_CROP = 112


def umeyama(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms src -> dst (Umeyama 1991, as scikit-image's
    `SimilarityTransform.estimate`, including its rank-deficient cases).

    src: (B, P, 2); dst: (B, P, 2) or (P, 2). Returns (B, 2, 3) float64 on src's device.
    """
    src = src.double()
    dst = dst.double()
    if dst.device != src.device:  # (a no-op call otherwise, which the host-sync audit would take for an upload)
        dst = dst.to(src.device)
    dst = dst.expand_as(src)
    n = src.shape[1]
    src_mean, dst_mean = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    src_d, dst_d = src - src_mean, dst - dst_mean
    a = dst_d.transpose(1, 2) @ src_d / n  # (B, 2, 2)
    d = src.new_ones((src.shape[0], 2))
    d[:, 1] = torch.where(torch.linalg.det(a) < 0, -1.0, 1.0)
    u, s, vh = torch.linalg.svd(a)
    tol = s.max(dim=1).values * 2 * torch.finfo(torch.float64).eps  # numpy's matrix_rank tolerance
    rank = (s > tol[:, None]).sum(1)
    rot = u @ torch.diag_embed(d) @ vh
    # rank 1: scikit-image keeps U V when det(U) det(V) > 0, else flips the last axis
    flip = torch.ones_like(d)
    flip[:, 1] = -1.0
    rot_rank1 = torch.where(
        (torch.linalg.det(u) * torch.linalg.det(vh) > 0)[:, None, None], u @ vh, u @ torch.diag_embed(flip) @ vh
    )
    rot = torch.where((rank == 1)[:, None, None], rot_rank1, rot)
    scale = (s * d).sum(1) / src_d.var(dim=1, unbiased=False).sum(1)
    t = dst_mean[:, 0] - scale[:, None] * (rot @ src_mean[:, 0, :, None])[..., 0]
    m = torch.cat([rot * scale[:, None, None], t[..., None]], dim=2)
    return torch.where((rank == 0)[:, None, None], torch.full_like(m, float("nan")), m)


def transform_points(points: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """points (K, P, 2), m (K, 2, 3) -> (K, P, 2) in m's dtype."""
    points = points.to(m.dtype)
    return points @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """(K, 2, 3) affine matrices -> their inverses (cv2.invertAffineTransform), for paste-back."""
    a = m[:, :, :2].double()
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    # the 2x2 inverse in closed form: no error check to read back (linalg.inv's is a host sync);
    # a singular matrix gives non-finite values, which the faces' non-finite checks drop
    lin = torch.stack([a[:, 1, 1], -a[:, 0, 1], -a[:, 1, 0], a[:, 0, 0]], 1).reshape(-1, 2, 2) / det[:, None, None]
    t = -(lin @ m[:, :, 2:].double())
    return torch.cat([lin, t], dim=2).to(m.dtype)


def ghost_align(kps: torch.Tensor, size: int = GHOST_CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """GHOST's crop alignment. kps (K, 5, 2) frame pixels -> (M (K, 2, 3) float32 frame -> crop,
    template index (K,) int64 in 0..4). size: crop side, a multiple of 112 (GHOST uses 224)."""
    if size % 112:
        raise ValueError(f"GHOST crop size must be a multiple of 112, got {size}")
    k = kps.shape[0]
    templates = like_device(torch.tensor(GHOST_TEMPLATES_112, dtype=torch.float64), kps) * (size / 112)
    src = kps.double()[:, None].expand(k, 5, 5, 2).reshape(k * 5, 5, 2)
    dst = templates[None].expand(k, 5, 5, 2).reshape(k * 5, 5, 2)
    m = umeyama(src, dst)
    error = (transform_points(src, m) - dst).norm(dim=-1).sum(-1).reshape(k, 5)
    index = torch.argmin(error, dim=1)  # first minimum on ties, as GHOST's strict `<`
    best = m.reshape(k, 5, 2, 3)[torch.arange(k, device=device_of(kps)), index]
    return best.float(), index


def arcface_align(kps: torch.Tensor, size: int = ARCFACE_CROP) -> torch.Tensor:
    """insightface's `estimate_norm` for the ArcFace template. kps (K, 5, 2) -> M (K, 2, 3) float32.
    size: a multiple of 112 (template scaled) or of 128 (scaled and shifted right by 8/128)."""
    dst = like_device(torch.tensor(ARCFACE_112, dtype=torch.float64), kps)
    if size % 112 == 0:
        dst = dst * (size / 112)
    elif size % 128 == 0:
        dst = dst * (size / 128)
        dst[:, 0] += 8.0 * size / 128
    else:
        raise ValueError(f"ArcFace crop size must be a multiple of 112 or 128, got {size}")
    return umeyama(kps, dst).float()


def crop_corners_in_frame(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The four corner pixels of an (h, w) crop mapped back into the frame through the inverse of
    m (K, 2, 3) frame -> crop: (K, 4, 2) float64, from the matrix's columns (no constant to upload)."""
    h, w = size
    inv = invert_affine(m.double())
    origin, across, down = inv[:, :, 2], inv[:, :, 0] * (w - 1), inv[:, :, 1] * (h - 1)
    return torch.stack([origin, origin + across, origin + down, origin + across + down], 1)


@dataclass(frozen=True)
class CropPlan:
    """Where K crops are cut, read on the host: regions (K rows of x0, y0, x1, y1, frame) and the
    region -> crop matrices `shifted` (K, 2, 3) float32, on the device the plan was made on."""

    regions: list[list[int]]
    shifted: torch.Tensor


def plan_crops(
    m: torch.Tensor, frame_index: torch.Tensor, size: tuple[int, int], frame_size: tuple[int, int]
) -> CropPlan:
    """The frame region each crop samples (its corners mapped back, plus bilinear slack) and the
    matrix from that region to the crop. m (K, 2, 3) frame -> crop, frame_index (K,), size (h, w),
    frame_size (H, W). Where m is: on the host nothing waits; on the device the regions come down
    in one copy."""
    fh, fw = frame_size
    m = m.float()
    pts = crop_corners_in_frame(m, size)
    lo = (torch.floor(pts.amin(1)) - 2).clamp_min(0)
    hi = torch.ceil(pts.amax(1)) + 3
    xy0 = torch.stack([lo[:, 0].clamp(max=fw), lo[:, 1].clamp(max=fh)], 1).long()
    xy1 = torch.stack([hi[:, 0].clamp(0, fw), hi[:, 1].clamp(0, fh)], 1).long()
    regions = torch.cat([xy0, xy1, like_device(frame_index, xy0).long()[:, None]], 1).tolist()
    shifted = m.clone()
    shifted[:, :, 2] += (shifted[:, :, :2] @ xy0.float()[:, :, None])[:, :, 0]  # region -> crop
    return CropPlan(regions, shifted)


def cut_crops(
    frames: torch.Tensor, plan: CropPlan, shifted: torch.Tensor, size: tuple[int, int], chunk: int = 16
) -> torch.Tensor:
    """The crops of `plan` (its `shifted` matrices given on the frames' device) -> (K, C, h, w)
    float32. Only each region is converted to float, `chunk` faces at a time."""
    h, w = size
    k = len(plan.regions)
    out = torch.empty((k, frames.shape[1], h, w), dtype=torch.float32, device=frames.device)
    for start in range(0, k, chunk):
        rows = plan.regions[start : start + chunk]
        rh = max(1, max(y1 - y0 for _, y0, _, y1, _ in rows))
        rw = max(1, max(x1 - x0 for x0, _, x1, _, _ in rows))
        src = torch.zeros((len(rows), frames.shape[1], rh, rw), dtype=torch.float32, device=frames.device)
        for j, (x0, y0, x1, y1, f) in enumerate(rows):  # one region per face, not a pixel loop
            if x1 > x0 and y1 > y0:
                src[j, :, : y1 - y0, : x1 - x0] = frames[f, :, y0:y1, x0:x1]
        out[start : start + len(rows)] = warp_affine(
            src, shifted[start : start + len(rows)], (h, w), mode="bilinear", padding_mode="zeros", align_corners=True
        )
    return out


def warp_crops(
    frames: torch.Tensor, frame_index: torch.Tensor, m: torch.Tensor, size: int | tuple[int, int], chunk: int = 16
) -> torch.Tensor:
    """Cut K crops out of a batch of frames, cv2.warpAffine style (bilinear, border 0).

    frames: (N, C, H, W) uint8 or float, on the pipeline device; frame_index: (K,) which frame
    each crop comes from; m: (K, 2, 3) frame -> crop; size: side or (height, width). m and
    frame_index may be on the device (the crop regions then come down in one copy) or in host
    memory (the regions are read there; the region matrices go up in one copy).
    Returns (K, C, h, w) float32 in the frames' value range, on the frames' device.
    Only the frame region each crop samples is converted to float, `chunk` faces at a time:
    memory follows the faces, not the frame size.
    """
    hw = (size, size) if isinstance(size, int) else size
    if m.shape[0] == 0:
        return torch.empty((0, frames.shape[1], *hw), dtype=torch.float32, device=frames.device)
    plan = plan_crops(m, frame_index, hw, (frames.shape[-2], frames.shape[-1]))
    return cut_crops(frames, plan, like_device(plan.shifted, frames), hw, chunk)
