"""Piecewise-affine warping of one source face onto many target landmark geometries, on tensors.

The lite engine moves the source face's texture onto each target face's shape: the landmarks
(plus a few synthetic points) are triangulated once on the source, every triangle gets the
affine map from its target corners to its source corners, and each output pixel samples the
source through the map of the triangle it falls in (`grid_sample`). The per-pixel map is
continuous across triangle edges, so it is computed on a half-resolution grid and bilinearly
upsampled (every 4th pixel: a sixteenth of the work for a sub-pixel difference).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay

# dlib 68-point indices
JAW = list(range(0, 17))
BROWS = list(range(17, 27))
INNER_MOUTH = list(range(60, 68))


def with_support_points(lm68: torch.Tensor, forehead: float = 0.45, jaw_margin: float = 0.08) -> torch.Tensor:
    """Add points that keep the forehead and the jaw line: brows lifted towards the hairline, and
    the jaw pushed slightly outwards so the warp covers the face border the mask fades over.

    lm68: (..., 68, 2) float pixels. Returns (..., 68 + 10 + 17, 2), same dtype/device.
    """
    chin = lm68[..., 8, :]
    brow_mid = lm68[..., BROWS, :].mean(-2)
    up = brow_mid - chin  # chin -> brows: "up" in the face's own frame
    lifted = lm68[..., BROWS, :] + forehead * up[..., None, :]
    centre = lm68[..., 27:36, :].mean(-2, keepdim=True)  # nose bridge and base
    jaw = lm68[..., JAW, :]
    pushed = jaw + jaw_margin * (jaw - centre)
    return torch.cat([lm68, lifted, pushed], dim=-2)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles over (P, 2) points: (T, 3) int64 vertex indices."""
    return np.asarray(Delaunay(points).simplices, dtype=np.int64)


def warp_maps(
    src_pts: torch.Tensor, dst_pts: torch.Tensor, triangles: torch.Tensor, size: tuple[int, int], step: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel source coordinates for each target geometry.

    src_pts: (P, 2) float32 source-image pixels; dst_pts: (B, P, 2) float32 output pixels;
    triangles: (T, 3) int64; size: output (H, W); step: grid stride of the exact computation.
    Returns map (B, H, W, 2) float32 source pixels and inside (B, H, W) float32 in [0, 1]
    (1 inside the triangulated area), on `dst_pts`' device.
    """
    b = dst_pts.shape[0]
    h, w = size
    dev, dt = dst_pts.device, dst_pts.dtype
    gh, gw = -(-h // step) + 1, -(-w // step) + 1
    ys = torch.arange(gh, device=dev, dtype=dt) * step
    xs = torch.arange(gw, device=dev, dtype=dt) * step
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)  # (N, 2) x, y
    corner = dst_pts[:, triangles]  # (B, T, 3, 2) target corners
    a = corner[:, :, 0]
    e1, e2 = corner[:, :, 1] - a, corner[:, :, 2] - a  # (B, T, 2)
    den = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]  # twice the signed area
    usable = den.abs() > 1e-6  # a collapsed target triangle holds no pixel
    den = torch.where(usable, den, torch.ones_like(den))
    # The barycentric weights are affine in the pixel: wb = p . u + cb, wc = p . v + cc. Two
    # (N, 2) x (2, T) products test every grid point against every triangle without (N, T, 2)
    # temporaries.
    u = torch.stack([e2[..., 1], -e2[..., 0]], 1) / den[:, None]  # (B, 2, T)
    v = torch.stack([-e1[..., 1], e1[..., 0]], 1) / den[:, None]
    cb = -(a[..., 0] * e2[..., 1] - a[..., 1] * e2[..., 0]) / den  # (B, T)
    cc = (a[..., 0] * e1[..., 1] - a[..., 1] * e1[..., 0]) / den
    wb = torch.matmul(grid, u) + cb[:, None]  # (B, N, T)
    wc = torch.matmul(grid, v) + cc[:, None]
    inside = (wb >= -1e-4) & (wc >= -1e-4) & (wb + wc <= 1 + 1e-4) & usable[:, None]
    tri = inside.to(torch.uint8).argmax(-1)  # (B, N) first triangle holding the pixel
    hit = inside.any(-1)
    wb, wc = torch.gather(wb, 2, tri[..., None])[..., 0], torch.gather(wc, 2, tri[..., None])[..., 0]
    wts = torch.stack([1 - wb - wc, wb, wc], -1)  # (B, N, 3) barycentric weights
    s = src_pts[triangles].to(dt)  # (T, 3, 2)
    corners = s[tri]  # (B, N, 3, 2)
    coords = (wts[..., None] * corners).sum(-2)  # (B, N, 2)
    coords = coords.reshape(b, gh, gw, 2).permute(0, 3, 1, 2)
    hit_map = hit.to(dt).reshape(b, 1, gh, gw)
    # Upsample the exact coarse maps to full resolution (the map is continuous inside the hull).
    full = F.interpolate(coords, size=((gh - 1) * step + 1, (gw - 1) * step + 1), mode="bilinear", align_corners=True)[
        ..., :h, :w
    ]
    inside_full = F.interpolate(hit_map, size=full.shape[-2:], mode="bilinear", align_corners=True)[..., :h, :w]
    return full.permute(0, 2, 3, 1).contiguous(), inside_full[:, 0]


def sample(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample `image` at pixel coordinates.

    image: (C, Hs, Ws) or (B, C, Hs, Ws) float; coords: (B, H, W, 2) float pixels (x, y).
    Returns (B, C, H, W) float, zeros outside the image; bilinear.
    """
    if image.ndim == 3:
        image = image[None].expand(coords.shape[0], -1, -1, -1)
    hs, ws = image.shape[-2:]
    norm = torch.stack([coords[..., 0] * (2 / max(ws - 1, 1)) - 1, coords[..., 1] * (2 / max(hs - 1, 1)) - 1], -1)
    return F.grid_sample(image, norm.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
