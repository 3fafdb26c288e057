"""Batched SCRFD detection: the same faces as insightface's own SCRFD on the same model and image,
for a whole batch at once, with either runtime."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from onnx_fakes import export_fake_scrfd
from streamswap.bench.media import sample_video_frames
from streamswap.errors import InputError
from streamswap.faces.detect import DetectSettings, SCRFDDetector, letterbox
from streamswap.faces.image import read_image
from streamswap.faces.records import FaceBatch

insightface_scrfd = pytest.importorskip("insightface.model_zoo.scrfd")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_fake_scrfd(tmp_path_factory.mktemp("scrfd") / "scrfd_10g_bnkps.onnx")


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> torch.Tensor:
    """Four frames of each test video (720p): (8, 3, 720, 1280) uint8 RGB."""
    return torch.cat([sample_video_frames(shared_data / "videos/nggyup.mp4", 4),
                      sample_video_frames(shared_data / "videos/dirtydancing.mp4", 4)])


def _bgr(rgb: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[:, :, ::-1])


def _insightface(model: Path, rgb: torch.Tensor, threshold: float = 0.5, nms: float = 0.4
                 ) -> tuple[np.ndarray, np.ndarray]:
    ref = insightface_scrfd.SCRFD(model_file=str(model))
    ref.prepare(-1, nms_thresh=nms)
    det, kps = ref.detect(_bgr(rgb), input_size=(640, 640), det_thresh=threshold)
    return det, kps


def _assert_same_faces(ours, det: np.ndarray, kps: np.ndarray, tol: float = 0.5) -> None:
    """One-to-one match of insightface's faces to ours: boxes and keypoints within tol px."""
    assert len(ours) == len(det)
    boxes, okps, scores = ours.boxes.cpu().numpy(), ours.kps.cpu().numpy(), ours.scores.cpu().numpy()
    used: set[int] = set()
    for i in range(len(det)):
        err = np.abs(boxes - det[i, :4]).max(1)
        j = int(np.argmin(err))
        assert j not in used
        used.add(j)
        assert err[j] <= tol, f"box {i} off by {err[j]:.3f} px"
        assert np.abs(okps[j] - kps[i]).max() <= tol
        assert abs(scores[j] - det[i, 4]) < 0.01


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_faces_match_insightface_scrfd_on_real_images(model: Path, frames: torch.Tensor, shared_data: Path,
                                                      runtime: str) -> None:
    detector = SCRFDDetector.load(model, runtime=runtime)  # type: ignore[arg-type]
    everything = SCRFDDetector(detector.runner, DetectSettings(nms_threshold=1.0))
    # 720x480 portrait and 1280x720 frames: both are resized by the letterbox. Images whose
    # candidates sit right at the threshold can flip with cv2's fixed-point resize (1 grey level),
    # so these are ones whose candidate set is stable.
    images = [read_image(shared_data / "images/elon_musk.jpg")[0], frames[1], frames[6]]
    for rgb in images:
        det, kps = _insightface(model, rgb)
        ours = detector.detect(rgb[None])
        assert len(ours) >= 3, "the fake detector fires on real faces"
        assert len(everything.detect(rgb[None])) > len(ours), "NMS removed overlapping candidates"
        _assert_same_faces(ours, det, kps)


def test_ghost_threshold_matches_insightface(model: Path, frames: torch.Tensor) -> None:
    detector = SCRFDDetector.load(model, DetectSettings(score_threshold=0.6, nms_threshold=0.3), runtime="onnxruntime")
    det, kps = _insightface(model, frames[1], threshold=0.6, nms=0.3)
    _assert_same_faces(detector.detect(frames[1:2]), det, kps)


def test_frame_at_the_detector_size_matches_insightface_exactly(model: Path, frames: torch.Tensor) -> None:
    rgb = frames[1, :, 100:460, 200:840].contiguous()  # 640x360: no resize, only padding
    det, kps = _insightface(model, rgb)
    ours = SCRFDDetector.load(model, runtime="onnxruntime").detect(rgb[None])
    assert len(ours) > 0
    _assert_same_faces(ours, det, kps, tol=1e-3)


def test_letterbox_matches_insightface_input_blob(model: Path, frames: torch.Tensor) -> None:
    rgb = frames[5]
    ref = insightface_scrfd.SCRFD(model_file=str(model))
    bgr = _bgr(rgb)
    new_w, new_h = 640, 360
    det_img = np.zeros((640, 640, 3), np.uint8)
    det_img[:new_h, :new_w] = cv2.resize(bgr, (new_w, new_h))
    want = torch.from_numpy(ref._prepare_input_blob(det_img, (640, 640)))
    got, scale = letterbox(rgb[None], (640, 640))
    assert scale == pytest.approx(0.5)
    assert (got - want).abs().max() <= 1.0 / 128 + 1e-6, "within one grey level of cv2.resize"
    assert (got - want).abs().mean() < 0.2 / 128


def test_batch_gives_the_same_faces_as_frame_by_frame(model: Path, frames: torch.Tensor) -> None:
    detector = SCRFDDetector.load(model, runtime="torch")
    batch = detector.detect(frames)
    assert batch.n_frames == 8
    assert torch.all(batch.frame_index[1:] >= batch.frame_index[:-1])
    for i in range(8):
        single = detector.detect(frames[i:i + 1])
        mine = batch.in_frame(i)
        assert len(mine) == len(single)
        assert torch.allclose(mine.boxes, single.boxes, atol=1e-3)
        assert torch.allclose(mine.kps, single.kps, atol=1e-3)
        assert torch.all(mine.scores[1:] <= mine.scores[:-1]), "by descending score inside a frame"
    halves = FaceBatch.concat([detector.detect(frames[:3]), detector.detect(frames[3:])])
    assert halves.n_frames == 8 and torch.equal(halves.frame_index, batch.frame_index)
    assert torch.allclose(halves.boxes, batch.boxes, atol=1e-3)
    views = batch.faces()
    assert len(views) == len(batch) and views[0].kps.shape == (5, 2) and views[0].box.shape == (4,)


def test_graph_with_hard_coded_batch_loops_and_finds_the_same_faces(model: Path, frames: torch.Tensor,
                                                                     tmp_path: Path) -> None:
    hard = SCRFDDetector.load(export_fake_scrfd(tmp_path / "hard.onnx", hard_batch=True), runtime="torch")
    assert not hard.runner.batched
    want = SCRFDDetector.load(model, runtime="torch").detect(frames[:3])
    got = hard.detect(frames[:3])
    assert torch.equal(got.frame_index, want.frame_index)
    assert torch.allclose(got.boxes, want.boxes, atol=1e-3)


def test_blank_frames_have_no_face_and_max_faces_caps_each_frame(model: Path, frames: torch.Tensor) -> None:
    detector = SCRFDDetector.load(model, runtime="onnxruntime")
    blank = torch.zeros((2, 3, 480, 640), dtype=torch.uint8)
    blank[1] = 128
    none = detector.detect(blank)
    assert len(none) == 0 and none.n_frames == 2 and none.counts().tolist() == [0, 0]
    capped = SCRFDDetector(detector.runner, DetectSettings(max_faces=2)).detect(frames[:4])
    full = detector.detect(frames[:4])
    assert capped.counts().tolist() == full.counts().clamp(max=2).tolist()
    for i in range(4):
        assert torch.equal(capped.in_frame(i).scores, full.in_frame(i).scores[:2])


def test_bad_settings_and_frames_are_input_errors(model: Path) -> None:
    with pytest.raises(InputError, match="multiples of 32"):
        DetectSettings(size=(600, 600))
    with pytest.raises(InputError, match="thresholds"):
        DetectSettings(score_threshold=1.5)
    detector = SCRFDDetector.load(model, runtime="onnxruntime")
    with pytest.raises(InputError, match="uint8"):
        detector.detect(torch.zeros((1, 3, 64, 64)))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        detector.detect(torch.zeros((64, 64, 3), dtype=torch.uint8))


def test_nms_keeps_what_insightface_keeps() -> None:
    from types import SimpleNamespace

    from streamswap.faces.detect import select_faces

    g = np.random.default_rng(7)
    for trial in range(20):
        n = 200
        xy = g.uniform(0, 60, (n, 2))
        boxes = np.concatenate([xy, xy + g.uniform(2, 12, (n, 2))], 1).astype(np.float32)  # small: +1 matters
        scores = np.round(g.uniform(0.3, 1, n), 2).astype(np.float32)  # ties: the order rule matters
        order = np.argsort(-scores, kind="stable")
        dets = np.hstack([boxes, scores[:, None]])[order]
        dets = dets[dets[:, 4] >= 0.5]
        want = dets[insightface_scrfd.SCRFD.nms(SimpleNamespace(nms_thresh=0.4), dets)]
        got = select_faces(torch.from_numpy(scores[None]), torch.from_numpy(boxes[None]), torch.zeros(1, n, 5, 2),
                           DetectSettings())
        assert np.array_equal(got.boxes.numpy(), want[:, :4]), trial
