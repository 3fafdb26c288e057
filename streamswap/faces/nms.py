"""Greedy non-maximum suppression in torch, batched, without leaving the device.

Greedy NMS keeps candidate i (in descending score order) unless a kept candidate j < i overlaps
it by more than the threshold. That rule defines `keep` recursively, so it is the unique fixed
point of keep[i] = valid[i] and not any(keep[j] and over[j, i] for j < i). Iterating that
update from keep = valid fixes one more leading entry per step, and in practice stops after
a few steps (the length of the longest suppression chain), each a (B, k, k) tensor op.
"""

from __future__ import annotations

import torch


def box_iou(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """IoU of every box pair. a: (..., n, 4), b: (..., m, 4) x1, y1, x2, y2 -> (..., n, m).

    plus_one: the legacy pixel-inclusive convention (width = x2 - x1 + 1) that insightface's
    SCRFD NMS uses; matching it keeps our suppression decisions identical to insightface's.
    """
    one = 1.0 if plus_one else 0.0
    area_a = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area_b = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt + one).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter)


def greedy_keep(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float, plus_one: bool = False) -> torch.Tensor:
    """Greedy NMS on candidates already sorted by descending score.

    boxes: (B, k, 4) float; valid: (B, k) bool (candidates to consider). Returns (B, k) bool:
    the kept candidates. A candidate is suppressed when its IoU with a kept, higher-ranked one
    is > iou_threshold.
    """
    k = boxes.shape[1]
    if k == 0:
        return valid.clone()
    over = box_iou(boxes, boxes, plus_one) > iou_threshold
    over &= boxes.new_ones((k, k), dtype=torch.bool).triu(1)  # j suppresses i only if j < i
    keep = valid.clone()
    for _ in range(k):
        suppressed = (over & keep[:, :, None]).any(dim=1)
        new_keep = valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, plus_one: bool = False) -> torch.Tensor:
    """torchvision.ops.nms semantics: boxes (n, 4), scores (n,) -> int64 indices of kept boxes,
    by decreasing score. Runs on the boxes' device."""
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order].float()[None]
    keep = greedy_keep(sorted_boxes, torch.ones_like(sorted_boxes[..., 0], dtype=torch.bool), iou_threshold, plus_one)[
        0
    ]
    return order[keep]
