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

import torch
from kornia.geometry.transform import warp_affine

ARCFACE_112 = (
    (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041),
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
    dst = dst.double().to(src.device).expand_as(src)
    n = src.shape[1]
    src_mean, dst_mean = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    src_d, dst_d = src - src_mean, dst - dst_mean
    a = dst_d.transpose(1, 2) @ src_d / n  # (B, 2, 2)
    d = torch.ones(src.shape[0], 2, dtype=src.dtype, device=src.device)
    d[:, 1] = torch.where(torch.linalg.det(a) < 0, -1.0, 1.0)
    u, s, vh = torch.linalg.svd(a)
    tol = s.max(dim=1).values * 2 * torch.finfo(torch.float64).eps  # numpy's matrix_rank tolerance
    rank = (s > tol[:, None]).sum(1)
    rot = u @ torch.diag_embed(d) @ vh
    # rank 1: scikit-image keeps U V when det(U) det(V) > 0, else flips the last axis
    flip = torch.ones_like(d)
    flip[:, 1] = -1.0
    rot_rank1 = torch.where((torch.linalg.det(u) * torch.linalg.det(vh) > 0)[:, None, None], u @ vh,
                            u @ torch.diag_embed(flip) @ vh)
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
    lin = torch.linalg.inv(m[:, :, :2].double())
    t = -(lin @ m[:, :, 2:].double())
    return torch.cat([lin, t], dim=2).to(m.dtype)


def ghost_align(kps: torch.Tensor, size: int = GHOST_CROP) -> tuple[torch.Tensor, torch.Tensor]:
    """GHOST's crop alignment. kps (K, 5, 2) frame pixels -> (M (K, 2, 3) float32 frame -> crop,
    template index (K,) int64 in 0..4). size: crop side, a multiple of 112 (GHOST uses 224)."""
    if size % 112:
        raise ValueError(f"GHOST crop size must be a multiple of 112, got {size}")
    k = kps.shape[0]
    templates = torch.tensor(GHOST_TEMPLATES_112, dtype=torch.float64, device=kps.device) * (size / 112)
    src = kps.double()[:, None].expand(k, 5, 5, 2).reshape(k * 5, 5, 2)
    dst = templates[None].expand(k, 5, 5, 2).reshape(k * 5, 5, 2)
    m = umeyama(src, dst)
    error = (transform_points(src, m) - dst).norm(dim=-1).sum(-1).reshape(k, 5)
    index = torch.argmin(error, dim=1)  # first minimum on ties, as GHOST's strict `<`
    best = m.reshape(k, 5, 2, 3)[torch.arange(k, device=kps.device), index]
    return best.float(), index


def arcface_align(kps: torch.Tensor, size: int = ARCFACE_CROP) -> torch.Tensor:
    """insightface's `estimate_norm` for the ArcFace template. kps (K, 5, 2) -> M (K, 2, 3) float32.
    size: a multiple of 112 (template scaled) or of 128 (scaled and shifted right by 8/128)."""
    dst = torch.tensor(ARCFACE_112, dtype=torch.float64, device=kps.device)
    if size % 112 == 0:
        dst = dst * (size / 112)
    elif size % 128 == 0:
        dst = dst * (size / 128)
        dst[:, 0] += 8.0 * size / 128
    else:
        raise ValueError(f"ArcFace crop size must be a multiple of 112 or 128, got {size}")
    return umeyama(kps, dst).float()


def warp_crops(frames: torch.Tensor, frame_index: torch.Tensor, m: torch.Tensor, size: int | tuple[int, int],
               chunk: int = 16) -> torch.Tensor:
    """Cut K crops out of a batch of frames, cv2.warpAffine style (bilinear, border 0).

    frames: (N, C, H, W) uint8 or float, on the pipeline device; frame_index: (K,) which frame
    each crop comes from; m: (K, 2, 3) frame -> crop; size: side or (height, width).
    Returns (K, C, h, w) float32 in the frames' value range, on the frames' device.
    Only the frame region each crop samples (its corners mapped back, plus bilinear slack) is
    converted to float, `chunk` faces at a time: memory follows the faces, not the frame size.
    """
    h, w = (size, size) if isinstance(size, int) else size
    k = m.shape[0]
    out = torch.empty((k, frames.shape[1], h, w), dtype=torch.float32, device=frames.device)
    if k == 0:
        return out
    m = m.to(device=frames.device, dtype=torch.float32)
    fh, fw = frames.shape[-2:]
    inv = invert_affine(m.double())
    corners = torch.tensor([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=torch.float64, device=m.device)
    pts = corners[None] @ inv[:, :, :2].transpose(1, 2) + inv[:, None, :, 2]  # (K, 4, 2) frame pixels
    lo = (torch.floor(pts.amin(1)) - 2).clamp_min(0)
    hi = torch.ceil(pts.amax(1)) + 3
    x0, y0 = lo[:, 0].clamp(max=fw).long(), lo[:, 1].clamp(max=fh).long()
    x1, y1 = hi[:, 0].clamp(0, fw).long(), hi[:, 1].clamp(0, fh).long()
    for start in range(0, k, chunk):
        rows = range(start, min(start + chunk, k))
        rh = max(1, max(int(y1[i] - y0[i]) for i in rows))
        rw = max(1, max(int(x1[i] - x0[i]) for i in rows))
        src = torch.zeros((len(rows), frames.shape[1], rh, rw), dtype=torch.float32, device=frames.device)
        for j, i in enumerate(rows):  # one region per face, not a pixel loop
            if x1[i] > x0[i] and y1[i] > y0[i]:
                src[j, :, : y1[i] - y0[i], : x1[i] - x0[i]] = frames[frame_index[i], :, y0[i]:y1[i], x0[i]:x1[i]]
        shifted = m[start:start + len(rows)].clone()
        offset = torch.stack([x0[start:start + len(rows)], y0[start:start + len(rows)]], 1).float()
        shifted[:, :, 2] += (shifted[:, :, :2] @ offset[:, :, None])[:, :, 0]  # region -> crop
        out[start:start + len(rows)] = warp_affine(src, shifted, (h, w), mode="bilinear", padding_mode="zeros",
                                                   align_corners=True)
    return out
