"""2d106 dense landmarks on batches of faces: the same points as insightface's Landmark.get on the
same model, face and image, for every face of a batch at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnx_fakes import export_fake_2d106
from streamswap.faces.landmarks import Landmark106, crop_matrices
from streamswap.faces.lite import DlibDetector
from streamswap.faces.records import FaceBatch

landmark_mod = pytest.importorskip("insightface.model_zoo.landmark")
face_align = pytest.importorskip("insightface.utils.face_align")
from insightface.app.common import Face  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("2d106")
    return {
        "plain": export_fake_2d106(d / "2d106det.onnx"),
        "mxnet": export_fake_2d106(d / "2d106det_mx.onnx", mxnet_style_names=True),
        "hard": export_fake_2d106(d / "2d106det_hard.onnx", hard_batch=True),
    }


@pytest.fixture(scope="module")
def faces(shared_data: Path) -> tuple[torch.Tensor, FaceBatch]:
    """Two portraits letterboxed into one 2-frame batch, with real lite-backend boxes, plus
    two extra boxes (one partly outside the frame) so the batch holds several faces per frame."""
    from streamswap.faces.image import read_image

    a = read_image(shared_data / "images/elon_musk.jpg")  # 720x480
    b = read_image(shared_data / "images/beckham.jpg")  # 1024x682
    frames = torch.zeros((2, 3, 1024, 720), dtype=torch.uint8)
    frames[0, :, :720, :480] = a[0]
    frames[1, :, :1024, :682] = b[0]
    found = DlibDetector().detect(frames)
    assert found.counts().tolist() == [1, 1]
    extra = torch.tensor([[300.0, 600.0, 420.0, 740.0], [-40.0, 900.0, 100.0, 1060.0]])
    boxes = torch.cat([found.boxes, extra])
    return frames, FaceBatch(2, boxes, torch.ones(4), torch.zeros(4, 5, 2), torch.tensor([0, 1, 0, 1]))


def _insightface(model: Path, frames: torch.Tensor, faces: FaceBatch) -> list[np.ndarray]:
    ref = landmark_mod.Landmark(str(model))
    out = []
    for box, i in zip(faces.boxes.numpy(), faces.frame_index.tolist(), strict=True):
        bgr = np.ascontiguousarray(frames[i].permute(1, 2, 0).numpy()[:, :, ::-1])
        out.append(ref.get(bgr, Face(bbox=box)))
    return out


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("variant", ["plain", "mxnet"])
def test_batched_landmarks_match_insightface(models: dict[str, Path], faces: tuple[torch.Tensor, FaceBatch],
                                             runtime: str, variant: str) -> None:
    frames, batch = faces
    model = Landmark106.load(models[variant], runtime=runtime)  # type: ignore[arg-type]
    # insightface reads the input scaling off the graph's node names; so must we
    assert (model.mean, model.std) == ((127.5, 128.0) if variant == "plain" else (0.0, 1.0))
    got = model(frames, batch)
    assert got.landmarks is not None and got.landmarks.shape == (4, 106, 2)
    want = _insightface(models[variant], frames, batch)
    for i, w in enumerate(want):
        spread = float(np.ptp(w, axis=0).max())
        err = float(np.abs(got.landmarks[i].numpy() - w).max())
        # the MXNet-style variant sees raw pixels, so its points spread over thousands of pixels
        assert err <= 0.5 * max(1.0, spread / 400), (i, err)


def test_graph_with_hard_coded_batch_loops_and_gives_the_same_points(models: dict[str, Path],
                                                                      faces: tuple[torch.Tensor, FaceBatch]) -> None:
    frames, batch = faces
    hard = Landmark106.load(models["hard"], runtime="torch")
    assert not hard.runner.batched
    plain = Landmark106.load(models["plain"], runtime="torch")
    assert torch.allclose(hard.landmarks(frames, batch), plain.landmarks(frames, batch), atol=1e-3)


def test_crop_transform_is_insightfaces() -> None:
    boxes = torch.tensor([[100.0, 120.0, 260.0, 330.0], [10.5, 20.25, 30.0, 90.0]])
    ours = crop_matrices(boxes).numpy()
    for box, m in zip(boxes.numpy().astype(np.float64), ours, strict=True):
        w, h = box[2] - box[0], box[3] - box[1]
        centre = (box[2] + box[0]) / 2, (box[3] + box[1]) / 2
        _, want = face_align.transform(np.zeros((8, 8, 3), np.uint8), centre, 192, 192 / (max(w, h) * 1.5), 0)
        assert np.allclose(m, want, atol=1e-4)


def test_no_faces_gives_no_landmarks(models: dict[str, Path]) -> None:
    model = Landmark106.load(models["plain"], runtime="onnxruntime")
    frames = torch.zeros((2, 3, 64, 64), dtype=torch.uint8)
    assert model.landmarks(frames, FaceBatch.empty(2)).shape == (0, 106, 2)
