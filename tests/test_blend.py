"""Paste-back of face crops into frames, and colour matching, on real frames and crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamswap.blend import match_colour, paste_back, warped_boxes
from streamswap.errors import InputError
from streamswap.faces.align import ghost_align, warp_crops


@pytest.fixture(scope="module")
def frame_and_face(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame 30 of nggyup.mp4 as (1, 3, 720, 1280) uint8 and the singer's 5 keypoints (1, 5, 2)
    from the lite detector (at this frame his face is ~130 px wide: the 224 crop upsamples it)."""
    av = pytest.importorskip("av")
    pytest.importorskip("dlib")
    from streamswap.faces.lite import DlibDetector, LiteSettings

    with av.open(str(shared_data / "videos" / "nggyup.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                image = frame.to_ndarray(format="rgb24")
                break
    frames = torch.from_numpy(image).permute(2, 0, 1)[None].contiguous()
    faces = DlibDetector(LiteSettings(upsample=0)).detect(frames)
    assert len(faces) == 1
    return frames, faces.kps


def crop_coordinates(m: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    return m[0, 0] * xs + m[0, 1] * ys + m[0, 2], m[1, 0] * xs + m[1, 1] * ys + m[1, 2]


def test_crop_out_and_paste_back_reproduces_the_frame(frame_and_face):
    frames, kps = frame_and_face
    m, _ = ghost_align(kps)
    crops = warp_crops(frames, torch.zeros(1, dtype=torch.int64), m, 224)
    out = paste_back(frames, crops, torch.ones(1, 1, 224, 224), m, torch.zeros(1, dtype=torch.int64))
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    diff = (out[0].int() - frames[0].int()).abs()
    # away from the crop's border (2 px inside it), two bilinear resamplings: within a grey level
    cx, cy = crop_coordinates(m[0], 720, 1280)
    inner = (cx > 2) & (cx < 221) & (cy > 2) & (cy < 221)
    d = diff[:, inner].float()
    assert d.mean() < 0.5 and (d <= 1).float().mean() > 0.95, (d.mean(), (d <= 1).float().mean())
    # no worse than OpenCV's own warpAffine there and back
    image = frames[0].permute(1, 2, 0).numpy()
    mat = m[0].numpy()
    back = cv2.warpAffine(cv2.warpAffine(image, mat, (224, 224)), cv2.invertAffineTransform(mat), (1280, 720))
    ref = np.abs(back.astype(int) - image.astype(int))[inner.numpy()]
    assert d.max() <= ref.max() + 1 and d.mean() <= ref.mean() + 0.05
    # outside the warped crop's bounding box, not one pixel changed
    x0, y0, x1, y1 = warped_boxes(m, (224, 224), (1280, 720))[0].tolist()
    assert 0 < x1 - x0 < 300 and 0 < y1 - y0 < 300
    diff[:, y0:y1, x0:x1] = 0
    assert diff.sum() == 0


def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    coarse = rng.uniform(0, 255, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def reference_paste(image: np.ndarray, crop: np.ndarray, mask: np.ndarray, m: np.ndarray) -> np.ndarray:
    """GHOST's composite with OpenCV: warp crop and mask back, out = mask*swap + (1-mask)*frame."""
    h, w = image.shape[:2]
    inv = cv2.invertAffineTransform(m)
    swap = cv2.warpAffine(crop.astype(np.float32), inv, (w, h))
    alpha = cv2.warpAffine(mask.astype(np.float32), inv, (w, h))[..., None]
    return np.round(alpha * swap + (1 - alpha) * image.astype(np.float32)).clip(0, 255).astype(np.uint8)


def test_paste_back_of_a_batch_matches_opencv_face_by_face():
    rng = np.random.default_rng(0)
    frames = np.stack([smooth_image(rng, 360, 480) for _ in range(2)])
    kps = torch.tensor([[[150, 150], [200, 150], [175, 180], [155, 205], [195, 205]],
                        [[190, 160], [230, 165], [212, 190], [195, 210], [228, 212]],  # overlaps the first
                        [[300, 100], [380, 110], [340, 150], [310, 190], [372, 196]]], dtype=torch.float32)
    frame_index = torch.tensor([0, 0, 1])
    m, _ = ghost_align(kps)
    crops = np.stack([smooth_image(rng, 224, 224) for _ in range(3)])
    masks = np.stack([cv2.GaussianBlur((rng.uniform(0, 1, (224, 224)) > 0.3).astype(np.float32), (0, 0), 6)
                      for _ in range(3)])
    out = paste_back(torch.from_numpy(frames).permute(0, 3, 1, 2), torch.from_numpy(crops).permute(0, 3, 1, 2),
                     torch.from_numpy(masks)[:, None], m, frame_index)
    expected = frames.copy()
    for k, fi in enumerate(frame_index.tolist()):  # in row order: the later face lies on top
        expected[fi] = reference_paste(expected[fi], crops[k], masks[k], m[k].numpy())
    diff = np.abs(out.permute(0, 2, 3, 1).numpy().astype(int) - expected.astype(int))
    assert diff.max() <= 1, diff.max()


def test_paste_back_touches_only_the_faces_and_can_work_in_place():
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(np.stack([smooth_image(rng, 240, 320)])).permute(0, 3, 1, 2).contiguous()
    kps = torch.tensor([[[60, 60], [100, 60], [80, 85], [64, 105], [96, 105]]], dtype=torch.float32)
    m, _ = ghost_align(kps)
    crops = torch.full((1, 3, 224, 224), 255.0)
    idx = torch.zeros(1, dtype=torch.int64)
    untouched = paste_back(frames, crops, torch.zeros(1, 1, 224, 224), m, idx)
    assert torch.equal(untouched, frames)  # a zero mask changes nothing
    before = frames.clone()
    out = paste_back(frames, crops, torch.ones(1, 1, 224, 224), m, idx, inplace=True)
    assert out.data_ptr() == frames.data_ptr() and not torch.equal(frames, before)
    x0, y0, x1, y1 = warped_boxes(m, (224, 224), (320, 240))[0].tolist()
    changed = (frames != before).any(1)[0]
    assert changed[y0:y1, x0:x1].any()
    changed[y0:y1, x0:x1] = False
    assert not changed.any()
    with pytest.raises(InputError, match="uint8"):
        paste_back(frames.float(), crops, torch.ones(1, 1, 224, 224), m, idx)


def test_a_face_crop_far_outside_the_frame_is_skipped():
    frames = torch.zeros(1, 3, 100, 100, dtype=torch.uint8)
    kps = torch.tensor([[[560, 560], [600, 560], [580, 585], [564, 605], [596, 605]]], dtype=torch.float32)
    m, _ = ghost_align(kps)
    out = paste_back(frames, torch.full((1, 3, 224, 224), 200.0), torch.ones(1, 1, 224, 224), m,
                     torch.zeros(1, dtype=torch.int64))
    assert torch.equal(out, frames)


def test_colour_matching_gives_the_generated_face_the_targets_colours(shared_data: Path):
    from kornia.color import rgb_to_lab

    image = cv2.cvtColor(cv2.imread(str(shared_data / "training_pairs" / "target1.png")), cv2.COLOR_BGR2RGB)
    target = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    cast = target.clone()
    cast[:, 0] = cast[:, 0] * 0.75 + 0.2  # a warm, washed-out cast, as a generator may produce
    cast[:, 2] = cast[:, 2] * 0.9
    cast = cast.clamp(0, 1)
    mask = torch.zeros(1, 1, 224, 224)
    mask[..., 50:190, 60:170] = 1.0
    matched = match_colour(cast, target, mask)
    inside = mask[0, 0] > 0
    lab_t, lab_m = rgb_to_lab(target)[0][:, inside], rgb_to_lab(matched)[0][:, inside]
    assert (lab_t.mean(1) - lab_m.mean(1)).abs().max() < 1.0
    assert (lab_t.std(1) - lab_m.std(1)).abs().max() < 1.0
    before = (cast - target).abs()[..., inside].mean()
    after = (matched - target).abs()[..., inside].mean()
    assert after < before / 3, (before, after)
    assert torch.equal(match_colour(cast, target, torch.zeros_like(mask)), cast)  # nothing to match on
