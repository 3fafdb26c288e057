"""Paste-back of generated face crops into their frames, and colour matching of the crops.

`paste_back` warps each crop and its mask into its frame with the inverse of the alignment
transform and composites out = mask * crop + (1 - mask) * frame, only inside the bounding box of
the warped crop: the rest of the frame is never read or written. All faces of a batch are warped
in one call (regions padded to the batch's largest); the composite writes each face's region,
in row order, so overlapping faces stack like separate pastes.

`match_colour` shifts a generated face's colour statistics to the target's inside the mask
(per-channel mean and standard deviation in CIE Lab, kornia.color).

Typical use per batch (masks from `streamswap.masks.AdaptiveMasker`, keyed by track id):
    masks, _ = masker(gen_landmarks, tgt_landmarks, track_ids)
    swapped = match_colour(swapped / 255, target_crops / 255, masks) * 255   # optional
    frames = paste_back(frames, swapped, masks, matrices, frame_index)
"""

from __future__ import annotations

import math

import torch
from kornia.color import lab_to_rgb, rgb_to_lab
from kornia.geometry.transform import warp_affine

from streamswap.errors import InputError
from streamswap.faces.align import crop_corners_in_frame, invert_affine
from streamswap.transfer import like_device


def warped_boxes(m: torch.Tensor, crop_size: tuple[int, int], frame_size: tuple[int, int]) -> torch.Tensor:
    """Integer boxes (K, 4) x0, y0, x1, y1 (exclusive ends) of the frame pixels a crop reaches
    when warped back: the crop's corners through the inverse of m (K, 2, 3) frame -> crop, one
    pixel of slack for bilinear taps, clamped to the frame (W, H). Empty boxes have x1 <= x0."""
    pts = crop_corners_in_frame(m, crop_size)
    lo = torch.floor(pts.amin(1)) - 1
    hi = torch.ceil(pts.amax(1)) + 2
    fw, fh = frame_size
    x0, y0 = lo[:, 0].clamp(0, fw), lo[:, 1].clamp(0, fh)
    x1, y1 = hi[:, 0].clamp(0, fw), hi[:, 1].clamp(0, fh)
    return torch.stack([x0, y0, x1, y1], 1).long()


def paste_back(
    frames: torch.Tensor,
    crops: torch.Tensor,
    masks: torch.Tensor,
    m: torch.Tensor,
    frame_index: torch.Tensor,
    inplace: bool = False,
) -> torch.Tensor:
    """Composite generated crops into their frames.

    frames: (N, 3, H, W) uint8 RGB (e.g. `torch.stack([f.image for f in batch]).permute(0, 3, 1, 2)`);
    crops: (K, 3, h, w) uint8 or float in [0, 255]; masks: (K, 1, h, w) float in [0, 1];
    m: (K, 2, 3) frame -> crop matrices (cv2 convention, as from `faces.align.ghost_align`);
    frame_index: (K,) frame of each crop. Crops and masks on the frames' device; m and
    frame_index there too, or both in host memory (then nothing waits). Returns (N, 3, H, W) uint8:
    `frames` itself when inplace, else a copy; pixels outside the faces' regions are untouched.
    """
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
        raise InputError(f"paste_back: frames must be (N, 3, H, W) uint8, got {tuple(frames.shape)} {frames.dtype}")
    if crops.shape[0] != masks.shape[0] or crops.shape[-2:] != masks.shape[-2:] or m.shape[0] != crops.shape[0]:
        raise InputError("paste_back: crops, masks and matrices must describe the same K faces at one crop size")
    out = frames if inplace else frames.clone()
    k = crops.shape[0]
    if k == 0:
        return out
    dev = frames.device
    fh, fw = frames.shape[-2:]
    # the geometry where m is: on the host (matrices made there) nothing waits; on the device
    # the regions and their frames come down in one copy (the region shapes need them)
    boxes = warped_boxes(m, (crops.shape[-2], crops.shape[-1]), (fw, fh))
    regions = torch.cat([boxes, like_device(frame_index, boxes).long()[:, None]], 1).tolist()
    rh = max(max(y1 - y0 for _, y0, _, y1, _ in regions), 0)
    rw = max(max(x1 - x0 for x0, _, x1, _, _ in regions), 0)
    if rh == 0 or rw == 0:
        return out
    # crop -> region: the inverse transform, then shifted to the region's corner
    inv = invert_affine(m.double())
    inv[:, :, 2] -= boxes[:, :2].double()
    inv = like_device(inv, frames)
    src = torch.cat([crops.to(dev, torch.float32), masks.to(dev, torch.float32)], dim=1)
    warped = warp_affine(src, inv.float(), (rh, rw), mode="bilinear", padding_mode="zeros", align_corners=True)
    for i, (x0, y0, x1, y1, fi) in enumerate(regions):  # one region per face (not a pixel loop)
        if x1 <= x0 or y1 <= y0:
            continue
        region = out[fi, :, y0:y1, x0:x1]
        face = warped[i, :3, : y1 - y0, : x1 - x0]
        alpha = warped[i, 3:, : y1 - y0, : x1 - x0].clamp(0.0, 1.0)
        blended = alpha * face + (1.0 - alpha) * region.float()
        region.copy_(blended.round_().clamp_(0, 255).to(torch.uint8))
    return out


def match_colour(generated: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Give each generated face the target's colour statistics inside the mask.

    generated, target: (K, 3, h, w) float RGB in [0, 1]; masks: (K, 1, h, w) float [0, 1]
    weights. Per face and Lab channel, (x - mean_gen) / std_gen * std_tgt + mean_tgt, with
    mask-weighted statistics. Returns (K, 3, h, w) float RGB in [0, 1] on the inputs' device.
    A face whose mask is empty is returned unchanged.
    """
    gen_lab, tgt_lab = rgb_to_lab(generated.clamp(0, 1)), rgb_to_lab(target.clamp(0, 1))
    weight = masks.to(generated.dtype)
    total = weight.sum((2, 3), keepdim=True)
    has_mask = total > eps

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weight).sum((2, 3), keepdim=True) / total.clamp_min(eps)
        var = (((x - mean) ** 2) * weight).sum((2, 3), keepdim=True) / total.clamp_min(eps)
        return mean, var.clamp_min(0).sqrt()

    mg, sg = stats(gen_lab)
    mt, st = stats(tgt_lab)
    matched = (gen_lab - mg) / sg.clamp_min(math.sqrt(eps)) * st + mt
    matched[:, 0].clamp_(0, 100)
    out = lab_to_rgb(matched).clamp(0, 1)
    return torch.where(has_mask, out, generated)
