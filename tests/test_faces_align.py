"""Five-point alignment: GHOST's pose-template crop (pinned by the golden fixture), the ArcFace
crop (insightface's norm_crop), batched crops and their inverses."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from kornia.geometry.transform import warp_affine

from streamswap.faces.align import (
    GHOST_TEMPLATES_112,
    arcface_align,
    ghost_align,
    invert_affine,
    transform_points,
    umeyama,
    warp_crops,
)
from streamswap.faces.image import read_image
from streamswap.faces.lite import DlibDetector

face_align = pytest.importorskip("insightface.utils.face_align")
skimage_transform = pytest.importorskip("skimage.transform")


@pytest.fixture(scope="module")
def portrait(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A real portrait (1, 3, H, W) and its lite-backend keypoints (5, 2)."""
    image = read_image(shared_data / "images/elon_musk.jpg")
    faces = DlibDetector().detect(image)
    assert len(faces) == 1
    return image, faces.kps[0]


def test_ghost_alignment_matches_the_golden_fixture(golden_dir: Path) -> None:
    g = np.load(golden_dir / "ghost_align_224.npz")
    assert np.allclose(np.array(GHOST_TEMPLATES_112), g["templates_112"], atol=1e-3)
    m, index = ghost_align(torch.from_numpy(g["kps"]))
    assert m.shape == (64, 2, 3)
    assert np.abs(m.numpy() - g["M"]).max() <= 1e-3
    assert np.array_equal(index.numpy(), g["template_index"])
    assert len(set(g["template_index"].tolist())) > 1, "the fixture exercises several templates"


def test_umeyama_matches_scikit_image_including_reflections() -> None:
    g = np.random.default_rng(3)
    src = g.uniform(0, 300, (40, 5, 2))
    dst = g.uniform(0, 112, (40, 5, 2))
    dst[:20, :, 0] = -dst[:20, :, 0]  # mirrored targets: the det(A) < 0 branch
    ours = umeyama(torch.from_numpy(src), torch.from_numpy(dst)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # estimate() is deprecated in scikit-image 0.26
        for i in range(40):
            t = skimage_transform.SimilarityTransform()
            t.estimate(src[i], dst[i])
            assert np.allclose(ours[i], t.params[:2], atol=1e-9)


def test_arcface_crop_matches_insightface_norm_crop(portrait: tuple[torch.Tensor, torch.Tensor]) -> None:
    image, kps = portrait
    rgb = image[0].permute(1, 2, 0).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        want_m = face_align.estimate_norm(kps.numpy(), 112)
        want = face_align.norm_crop(rgb, kps.numpy(), 112).astype(np.float32)
    m = arcface_align(kps[None])
    assert np.abs(m[0].numpy() - want_m).max() < 1e-3
    got = warp_crops(image, torch.tensor([0]), m, 112)[0].permute(1, 2, 0).numpy()
    inner = np.abs(got - want)[2:-2, 2:-2]
    assert inner.mean() <= 1.0, "mean absolute difference within one grey level away from the border"
    assert inner.max() <= 2.0
    assert got.std() > 20, "a real crop, not an empty one"


def test_ghost_crop_is_cv2_warp_affine_with_the_chosen_template(portrait: tuple[torch.Tensor, torch.Tensor]) -> None:
    image, kps = portrait
    m, index = ghost_align(kps[None])
    assert int(index[0]) == 2, "a frontal portrait picks the frontal template"
    want = cv2.warpAffine(image[0].permute(1, 2, 0).numpy(), m[0].numpy(), (224, 224), borderValue=0.0)
    got = warp_crops(image, torch.tensor([0]), m, 224)[0].permute(1, 2, 0).numpy()
    assert np.abs(got - want)[2:-2, 2:-2].mean() <= 1.0
    # the keypoints land near the frontal template (x2 for 224)
    landed = transform_points(kps[None], m)[0].numpy()
    assert np.abs(landed - 2 * np.array(GHOST_TEMPLATES_112[2])).max() < 15


def test_batched_crops_take_each_face_from_its_own_frame(portrait: tuple[torch.Tensor, torch.Tensor]) -> None:
    image, kps = portrait
    shifted = torch.zeros_like(image)
    shifted[..., 30:, 40:] = image[..., :-30, :-40]  # frame 1: the same picture moved by (40, 30)
    frames = torch.cat([shifted, image])
    k = torch.stack([kps, kps + torch.tensor([40.0, 30.0]), kps])
    m = arcface_align(k)
    crops = warp_crops(frames, torch.tensor([1, 0, 1]), m, 112, chunk=2)
    assert crops.shape == (3, 3, 112, 112)
    assert torch.equal(crops[0], crops[2])
    assert (crops[1] - crops[0]).abs().mean() < 0.05, "the same face, cut from the frame it is in"
    assert (crops[0] - warp_crops(frames, torch.tensor([0]), m[:1], 112)[0]).abs().mean() > 10


def test_inverse_transform_pastes_the_crop_back_in_place(portrait: tuple[torch.Tensor, torch.Tensor]) -> None:
    image, kps = portrait
    m, _ = ghost_align(kps[None])
    inv = invert_affine(m)
    assert np.allclose(inv[0].numpy(), cv2.invertAffineTransform(m[0].numpy()), atol=1e-4)
    assert torch.allclose(transform_points(transform_points(kps[None], m), inv), kps[None], atol=1e-3)
    crop = warp_crops(image, torch.tensor([0]), m, 224)
    h, w = image.shape[2:]
    back = warp_affine(crop, inv, (h, w), mode="bilinear", padding_mode="zeros", align_corners=True)
    x0, y0 = kps.min(0).values.int().tolist()
    x1, y1 = kps.max(0).values.int().tolist()
    region = (slice(None), slice(None), slice(y0, y1), slice(x0, x1))
    assert (back[region] - image.float()[region]).abs().mean() < 4.0, "face region comes back where it was"
