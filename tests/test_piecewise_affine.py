"""The lite engine's piecewise-affine warp, checked against OpenCV on geometries with a known answer."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from streamswap.engines.piecewise_affine import sample, triangulate, warp_maps, with_support_points


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    # a smooth image, so bilinear sampling differences stay small and meaningful
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 13), 128 + 100 * np.cos(yy / 17), (xx + yy) / 2], 0).astype(np.float32)
    pts = rng.uniform(20, 180, (40, 2)).astype(np.float32)
    return torch.from_numpy(img), torch.from_numpy(pts)


def test_a_global_affine_geometry_reproduces_cv2_warp_affine():
    img, pts = _scene()
    a = np.array([[0.9, 0.1, 5], [-0.1, 0.95, 8]], np.float32)  # output -> source, as cv2 with WARP_INVERSE_MAP
    inv = cv2.invertAffineTransform(a)
    dst = torch.from_numpy(pts.numpy() @ inv[:, :2].T + inv[:, 2])[None]
    coords, inside = warp_maps(pts, dst, torch.from_numpy(triangulate(pts.numpy())), (200, 200))
    ours = sample(img, coords)[0].permute(1, 2, 0).numpy()
    ref = cv2.warpAffine(img.permute(1, 2, 0).numpy(), a, (200, 200), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    core = cv2.erode((inside[0].numpy() > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert core.mean() > 0.3
    assert np.abs(ours - ref)[core].max() < 0.5


def test_identity_geometry_returns_the_source_and_nothing_outside_the_hull():
    img, pts = _scene(1)
    coords, inside = warp_maps(pts, pts[None], torch.from_numpy(triangulate(pts.numpy())), (200, 200))
    out = sample(img, coords)[0]
    core = torch.from_numpy(cv2.erode((inside[0].numpy() > 0.999).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    assert (out - img).abs()[:, core].max() < 1e-2
    assert inside[0, 0, 0] == 0 and inside[0, 199, 199] == 0  # corners lie outside the random points' hull


def test_a_batch_equals_its_items_one_by_one():
    img, pts = _scene(2)
    tri = torch.from_numpy(triangulate(pts.numpy()))
    dsts = torch.stack([pts, pts * 0.9 + 10, pts.flip(-1)])
    batch, inside = warp_maps(pts, dsts, tri, (160, 180))
    for i in range(3):
        one, one_in = warp_maps(pts, dsts[i:i + 1], tri, (160, 180))
        torch.testing.assert_close(batch[i:i + 1], one)
        torch.testing.assert_close(inside[i:i + 1], one_in)


def test_support_points_lift_the_forehead_and_widen_the_jaw():
    lm = torch.zeros(68, 2)
    lm[0:17, 0] = torch.linspace(0, 100, 17)  # a flat "jaw" at y = 100 ...
    lm[0:17, 1] = 100
    lm[8] = torch.tensor([50.0, 120.0])  # ... chin below ...
    lm[17:27] = torch.stack([torch.linspace(10, 90, 10), torch.full((10,), 40.0)], 1)  # ... brows above
    lm[27:36] = torch.tensor([50.0, 70.0])
    out = with_support_points(lm)
    assert out.shape == (95, 2)
    assert (out[68:78, 1] < lm[17:27, 1]).all()  # forehead points above the brows
    assert out[78, 0] < lm[0, 0] and out[94, 0] > lm[16, 0]  # jaw pushed outwards
