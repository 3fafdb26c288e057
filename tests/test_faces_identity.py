"""Identity embeddings (ONNX recognisers as insightface runs them; a torch identity network as
GHOST runs it) and GHOST's matching of detected faces to reference faces."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from onnx_fakes import FakeRecogniser, export_fake_recogniser
from streamswap.errors import NoFaceError
from streamswap.faces.align import ghost_align
from streamswap.faces.identity import (
    OnnxArcFace,
    TorchArcFace,
    cosine_similarity,
    largest_face,
    match_references,
)
from streamswap.faces.image import read_image
from streamswap.faces.lite import DlibDetector
from streamswap.faces.records import FaceBatch

arcface_mod = pytest.importorskip("insightface.model_zoo.arcface_onnx")
from insightface.app.common import Face  # noqa: E402


@pytest.fixture(scope="module")
def portraits(shared_data: Path) -> tuple[torch.Tensor, FaceBatch]:
    """Two real portraits in one batch (padded to one size) with their lite-backend faces."""
    a = read_image(shared_data / "images/elon_musk.jpg")
    b = read_image(shared_data / "images/murakami.jpg")
    frames = torch.zeros((2, 3, 720, 600), dtype=torch.uint8)
    frames[0, :, :720, :480] = a[0]
    frames[1, :, :450, :600] = b[0]
    faces = DlibDetector().detect(frames)
    assert faces.counts().tolist() == [1, 1]
    return frames, faces


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_onnx_recogniser_matches_insightface_arcface(tmp_path: Path, portraits: tuple[torch.Tensor, FaceBatch],
                                                     runtime: str) -> None:
    frames, faces = portraits
    path = export_fake_recogniser(tmp_path / "w600k_r50.onnx")
    model = OnnxArcFace.load(path, runtime=runtime)  # type: ignore[arg-type]
    assert (model.mean, model.std) == (127.5, 127.5)
    ours = model.embed(frames, faces)
    assert ours.shape == (2, 512)
    assert torch.allclose(ours.norm(dim=1), torch.ones(2), atol=1e-5)
    ref = arcface_mod.ArcFaceONNX(str(path))
    for i in range(2):
        bgr = np.ascontiguousarray(frames[i].permute(1, 2, 0).numpy()[:, :, ::-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            want = ref.get(bgr, Face(kps=faces.kps[i].numpy()))
        want = want / np.linalg.norm(want)
        assert float(ours[i] @ torch.from_numpy(want)) > 0.9999
    assert float(ours[0] @ ours[1]) < 0.999, "different faces, different embeddings"


class _Recording(nn.Module):
    """A small identity network that remembers what it was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.net = FakeRecogniser()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.net(x)


def test_torch_identity_runs_on_ghosts_crop_downscaled_to_112(portraits: tuple[torch.Tensor, FaceBatch]) -> None:
    frames, faces = portraits
    module = _Recording()
    encoder = TorchArcFace(module, "cpu")
    ours = encoder.embed(frames, faces)
    x = module.seen[-1]
    assert x.shape == (2, 3, 112, 112) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.1
    # GHOST by hand: cv2 crop at 224 with its pose template, RGB in [-1, 1], bilinear x0.5
    m, _ = ghost_align(faces.kps)
    for i in range(2):
        rgb = frames[i].permute(1, 2, 0).numpy()
        crop = cv2.warpAffine(rgb, m[i].numpy(), (224, 224), borderValue=0.0)
        t = (torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
        t = F.interpolate(t, size=(112, 112), mode="bilinear", align_corners=True)
        assert (x[i] - t[0]).abs().mean() < 2 / 255
        with torch.no_grad():
            want = F.normalize(module.net(t), dim=1)[0]
        assert float(ours[i] @ want) > 0.9999


def test_matching_picks_the_most_similar_face_per_frame_above_the_threshold() -> None:
    refs = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), dim=1)
    emb = F.normalize(torch.tensor([
        [0.9, 0.1, 0.0],   # frame 0: ref 0 (best)
        [0.6, 0.5, 0.2],   # frame 0
        [0.1, 0.1, 1.0],   # frame 1: nobody's (cos <= 0.15 with both)
        [0.0, 0.9, 0.1],   # frame 2: ref 1
        [0.5, 0.55, 0.0],  # frame 2: ref 0 (only candidate close to it)
    ]), dim=1)
    faces = FaceBatch(4, torch.zeros(5, 4), torch.ones(5), torch.zeros(5, 5, 2), torch.tensor([0, 0, 1, 2, 2]),
                      embeddings=emb)
    got = match_references(faces, refs)
    assert got.tolist() == [[0, 1], [-1, -1], [4, 3], [-1, -1]]
    assert torch.allclose(cosine_similarity(emb, refs)[0], torch.tensor([0.9939, 0.1104]), atol=1e-3)
    with pytest.raises(ValueError, match="embeddings"):
        match_references(FaceBatch.empty(1), refs)


def test_largest_face_or_no_face_error() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 30, 20], [5, 5, 50, 50]])
    faces = FaceBatch(3, boxes, torch.ones(3), torch.zeros(3, 5, 2), torch.tensor([0, 0, 2]))
    assert largest_face(faces, 0).boxes.tolist() == [[0, 0, 30, 20]]
    with pytest.raises(NoFaceError, match="no face found in source.png"):
        largest_face(faces, 1, what="source.png")


def test_the_projects_iresnet_runs_as_the_torch_identity_encoder(portraits: tuple[torch.Tensor, FaceBatch]) -> None:
    from streamswap.models.arcface import IResNet

    frames, faces = portraits
    torch.manual_seed(0)
    emb = TorchArcFace(IResNet("r18"), "cpu").embed(frames, faces)  # r100's smaller sibling: same interface
    assert emb.shape == (2, 512) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
