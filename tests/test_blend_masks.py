"""GHOST's adaptive masks: parameter rules, temporal hysteresis, and the batched raster checked
against a per-face OpenCV reference (cv2.fillConvexPoly + erode/dilate + GaussianBlur, as GHOST
builds its masks) on real landmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamswap.errors import InputError
from streamswap.masks import (
    GHOST_106,
    IBUG_68,
    LEVELS,
    AdaptiveMasker,
    LandmarkScheme,
    LevelHysteresis,
    MaskSettings,
    adaptive_masks,
    expand_brows,
    hull_mask,
    landmark_offset,
    offset_level,
)


@pytest.fixture(scope="module")
def crop_landmarks(shared_data: Path) -> torch.Tensor:
    """dlib 68-point landmarks of the 12 real 224 face crops in training_pairs (6 sources, 6 targets)."""
    dlib = pytest.importorskip("dlib")
    from streamswap.faces.lite import LANDMARKS_68, lite_model_path

    predictor = dlib.shape_predictor(str(lite_model_path(LANDMARKS_68)))
    out = []
    for i in range(1, 7):
        for kind in ("source", "target"):
            image = cv2.cvtColor(cv2.imread(str(shared_data / "training_pairs" / f"{kind}{i}.png")), cv2.COLOR_BGR2RGB)
            shape = predictor(image, dlib.rectangle(24, 40, 200, 216))
            out.append([(p.x, p.y) for p in shape.parts()])
    return torch.tensor(out, dtype=torch.float32)


def reference_mask(points: np.ndarray, level: int, scheme: LandmarkScheme, size: int = 224) -> np.ndarray:
    """One GHOST mask the way the reference builds it, with OpenCV, for integer landmarks."""
    lv = LEVELS[level]
    pts = points.astype(np.float64).copy()
    brows, eyes = list(scheme.brows), list(scheme.eye_top)
    pts[brows] = pts[brows] + lv.brow_mod * 0.5 * (pts[brows] - pts[eyes])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 255)
    kernel = np.ones((abs(lv.erode), abs(lv.erode)), np.uint8)
    mask = cv2.erode(mask, kernel) if lv.erode > 0 else cv2.dilate(mask, kernel)
    clip = int(2 * lv.sigma_y)
    mask[:clip], mask[-clip:], mask[:, :clip], mask[:, -clip:] = 0, 0, 0, 0
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=lv.sigma_x, sigmaY=lv.sigma_y) / 255.0


def integer_after_expansion(points: torch.Tensor, levels: torch.Tensor, scheme: LandmarkScheme) -> torch.Tensor:
    """Landmarks whose brows land on whole pixels once expanded, so both rasterisers see the
    same polygon (cv2 takes integer vertices)."""
    mods = torch.tensor([LEVELS[int(lv)].brow_mod for lv in levels])
    expanded = expand_brows(points, mods, scheme).round()
    out = points.round().clone()
    brows, eyes = list(scheme.brows), list(scheme.eye_top)
    # solve brow = (expanded + k * eye) / (1 + k) with k = 0.5 * mod, keeping eye points fixed
    k = (0.5 * mods)[:, None, None]
    out[:, brows] = (expanded[:, brows] + k * out[:, eyes]) / (1 + k)
    return out


def test_levels_follow_ghosts_rules():
    offsets = torch.tensor([-10.0, -3.01, -3.0, 0.0, 3.0, 3.01, 6.0, 6.01, 40.0])
    assert offset_level(offsets).tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3]
    assert [(lv.erode, lv.sigma_x, lv.sigma_y, lv.brow_mod) for lv in LEVELS] == [
        (-5, 5, 10, 0.5), (5, 5, 5, 2.0), (10, 10, 8, 2.0), (15, 15, 10, 2.7)]


def test_a_narrower_generated_face_gets_a_smaller_mask_and_a_wider_one_a_larger(crop_landmarks):
    tgt = crop_landmarks[1::2]
    centre = tgt[:, :, :1].mean(1, keepdim=True)
    for scale, level in ((0.9, 3), (1.1, 0), (1.0, 1)):
        gen = tgt.clone()
        gen[:, :, 0] = centre[:, :, 0] + scale * (tgt[:, :, 0] - centre[:, :, 0])
        assert offset_level(landmark_offset(gen, tgt, IBUG_68)).tolist() == [level] * len(tgt), scale
    # at the nose tip's row the erode-15 mask is narrower than the dilate-5 one (20 px less, blurred)
    small, large = adaptive_masks(tgt, torch.full((6,), 3), IBUG_68), adaptive_masks(tgt, torch.full((6,), 0), IBUG_68)
    for i, row in enumerate(tgt[:, 30, 1].round().long().tolist()):
        width_small, width_large = (small[i, 0, row] > 0.5).sum(), (large[i, 0, row] > 0.5).sum()
        assert width_large - width_small >= 10, (i, width_small, width_large)


def test_mask_parameters_do_not_flip_while_the_offset_hovers_at_a_threshold():
    rng = np.random.default_rng(0)
    hover = torch.tensor(3.0 + rng.uniform(-0.8, 0.8, 200), dtype=torch.float32)  # around the 3 px threshold
    plain = offset_level(hover)
    assert (plain[1:] != plain[:-1]).sum() > 50  # frame by frame, GHOST's rule would flicker
    hyst = LevelHysteresis(frames=5, margin=0.5)
    levels = torch.cat([hyst.update([7], hover[i:i + 1]) for i in range(200)])
    assert (levels[1:] != levels[:-1]).sum() <= 2, levels.tolist()
    # the same, with a whole clip in one batch (rows are taken in order)
    assert LevelHysteresis(5, 0.5).update([7] * 200, hover).tolist() == levels.tolist()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_mask_parameters_follow_a_real_change_within_the_hysteresis_window(k: int):
    offsets = torch.tensor([0.0] * 20 + [9.0] * 20 + [-8.0] * 20)  # -> erode 15, then dilate
    hyst = LevelHysteresis(frames=k, margin=0.5)
    levels = torch.cat([hyst.update([1], offsets[i:i + 1]) for i in range(60)]).tolist()
    assert levels[:20] == [1] * 20
    assert levels[20:20 + k - 1] == [1] * (k - 1) and levels[20 + k - 1:40] == [3] * (21 - k)
    assert levels[40:40 + k - 1] == [3] * (k - 1) and levels[40 + k - 1:] == [0] * (21 - k)


def test_each_track_keeps_its_own_level_and_new_tracks_start_at_theirs():
    hyst = LevelHysteresis(frames=3, margin=0.5)
    assert hyst.update([1, 2], torch.tensor([0.0, 9.0])).tolist() == [1, 3]
    assert hyst.update([1, 2], torch.tensor([9.0, 0.0])).tolist() == [1, 3]
    hyst.forget([2])
    assert hyst.update([2], torch.tensor([0.0])).tolist() == [1]


def test_hull_raster_matches_fill_convex_poly(crop_landmarks):
    points = crop_landmarks.round()
    mine = hull_mask(points, (224, 224))[:, 0].numpy()
    for i, pts in enumerate(points.numpy().astype(np.int32)):
        ref = np.zeros((224, 224), np.uint8)
        cv2.fillConvexPoly(ref, cv2.convexHull(pts), 1)
        differ = mine[i] != ref
        assert differ.sum() <= 0.002 * ref.sum(), (i, differ.sum())  # a few pixels on slanted edges
        grown = cv2.dilate(cv2.Canny(ref * 255, 50, 150), np.ones((3, 3), np.uint8)) > 0
        assert not (differ & ~grown).any()  # ... and only there


def test_batched_masks_match_the_opencv_reference_per_face(crop_landmarks):
    levels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
    points = integer_after_expansion(crop_landmarks, levels, IBUG_68)
    masks = adaptive_masks(points, levels, IBUG_68)
    assert masks.shape == (12, 1, 224, 224) and masks.dtype == torch.float32
    assert masks.min() >= 0 and masks.max() <= 1
    for i in range(12):
        ref = reference_mask(points[i].numpy(), int(levels[i]), IBUG_68)
        diff = np.abs(masks[i, 0].numpy() - ref)
        assert diff.max() < 0.03, (i, diff.max())  # a few boundary pixels, blurred; uint8 rounding
        assert diff.mean() < 0.002, (i, diff.mean())
    # the batch is the per-item computation
    one = torch.cat([adaptive_masks(points[i:i + 1], levels[i:i + 1], IBUG_68) for i in range(4)])
    torch.testing.assert_close(masks[:4], one)


def test_the_2d106_scheme_builds_masks_from_any_106_point_set():
    rng = np.random.default_rng(1)
    angles = rng.uniform(0, 2 * np.pi, 106)
    radius = rng.uniform(20, 80, 106)
    pts = np.stack([112 + radius * np.cos(angles), 120 + 1.2 * radius * np.sin(angles)], 1).round()
    points = torch.tensor(pts, dtype=torch.float32)[None].repeat(4, 1, 1)
    levels = torch.tensor([0, 1, 2, 3])
    points = integer_after_expansion(points, levels, GHOST_106)
    masks = adaptive_masks(points, levels, GHOST_106)
    for i in range(4):
        ref = reference_mask(points[i].numpy(), i, GHOST_106)
        assert np.abs(masks[i, 0].numpy() - ref).max() < 0.03
    with pytest.raises(InputError, match="106"):
        adaptive_masks(points[:, :68], levels, GHOST_106)


def test_masker_runs_offsets_hysteresis_and_masks_together(crop_landmarks):
    masker = AdaptiveMasker(MaskSettings(scheme=IBUG_68, hysteresis_frames=3))
    gen, tgt = crop_landmarks[0::2], crop_landmarks[1::2]
    masks, levels = masker(gen, tgt, keys=list(range(6)))
    assert masks.shape == (6, 1, 224, 224)
    assert levels.tolist() == offset_level(landmark_offset(gen, tgt, IBUG_68)).tolist()
    _, again = masker(tgt, tgt, keys=list(range(6)))  # offsets 0 now: held for 3 frames first
    assert again.tolist() == levels.tolist()


def test_hull_raster_handles_collinear_duplicate_and_degenerate_points():
    square = torch.tensor([[10, 10], [30, 10], [50, 10], [50, 50], [10, 50], [10, 30], [30, 30], [30, 30],
                           [50, 30]], dtype=torch.float32)  # corners, points on its sides, interior, a duplicate
    line = torch.tensor([[5, 5], [20, 20], [40, 40]] * 3, dtype=torch.float32)
    same = torch.full((9, 2), 12.0)
    masks = hull_mask(torch.stack([square, line, same]), (64, 64))[:, 0]
    expected = torch.zeros(64, 64)
    expected[10:51, 10:51] = 1
    assert torch.equal(masks[0], expected)
    assert masks[1].sum() == 0 and masks[2].sum() == 0
