"""The two ONNX runtimes behind one interface: onnx2torch conversion vs onnxruntime, batching,
the loop fallback for graphs that hard-code their batch, model checks, and the torchvision shim."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from onnx_fakes import export_fake_2d106, export_fake_recogniser, export_fake_scrfd, rng_image
from streamswap.compat import onnx2torch as onnx2torch_compat
from streamswap.errors import ModelError
from streamswap.faces import onnx_runtime
from streamswap.faces.detect import SCRFD_SIGNATURE
from streamswap.faces.identity import RECOGNISER_SIGNATURE
from streamswap.faces.landmarks import LANDMARK106_SIGNATURE
from streamswap.faces.nms import nms
from streamswap.faces.onnx_runtime import load_onnx_runner

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    return {
        "scrfd": export_fake_scrfd(d / "scrfd.onnx"),
        "scrfd_hard": export_fake_scrfd(d / "scrfd_hard.onnx", hard_batch=True),
        "2d106": export_fake_2d106(d / "2d106.onnx"),
        "2d106_hard": export_fake_2d106(d / "2d106_hard.onnx", hard_batch=True),
        "rec": export_fake_recogniser(d / "rec.onnx"),
    }


CASES = {
    "scrfd": (SCRFD_SIGNATURE, (1, 3, 640, 640)),
    "2d106": (LANDMARK106_SIGNATURE, (1, 3, 192, 192)),
    "rec": (RECOGNISER_SIGNATURE, (1, 3, 112, 112)),
}


def _input(shape: tuple[int, ...], batch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(batch)
    return torch.rand((batch, *shape[1:]), generator=g) * 2 - 1


@pytest.mark.parametrize("name", ["scrfd", "2d106", "rec"])
def test_converted_graph_matches_onnxruntime_at_batch_1_and_8(models: dict[str, Path], name: str) -> None:
    signature, shape = CASES[name]
    conv = load_onnx_runner(models[name], signature, "torch", "cpu", shape)
    ort = load_onnx_runner(models[name], signature, "onnxruntime", "cpu", shape)
    assert conv.batched and ort.batched, "a graph flattened with reshape(-1, ...) must take a batch"
    assert ort.provider == "CPUExecutionProvider"
    for batch in (1, 8):
        x = _input(shape, batch)
        a, b = conv(x), ort(x)
        assert len(a) == len(b) == len(signature.outputs)
        for ya, yb, item in zip(a, b, ort.item_shapes, strict=True):
            assert ya.shape == yb.shape == (item[0] * batch, *item[1:])
            assert torch.allclose(ya, yb, atol=1e-4, rtol=0), float((ya - yb).abs().max())


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
@pytest.mark.parametrize("name,signature,shape", [
    ("scrfd_hard", SCRFD_SIGNATURE, (1, 3, 640, 640)),  # batch 2 fails: Reshape to a fixed row count
    ("2d106_hard", LANDMARK106_SIGNATURE, (1, 3, 192, 192)),  # batch 2 runs but gives one (1, 424) row
])
def test_graph_that_hard_codes_the_batch_falls_back_to_a_loop(models: dict[str, Path], runtime: str, name: str,
                                                              signature: onnx_runtime.OnnxSignature,
                                                              shape: tuple[int, ...]) -> None:
    runner = load_onnx_runner(models[name], signature, runtime, "cpu", shape)  # type: ignore[arg-type]
    reference = load_onnx_runner(models[name.removesuffix("_hard")], signature, "onnxruntime", "cpu", shape)
    assert not runner.batched
    x = _input(shape, 3)
    for got, want in zip(runner(x), reference(x), strict=True):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4, rtol=0)


def test_wrong_model_file_is_a_model_error(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not the expected SCRFD face detector.*1 outputs, expected 9"):
        load_onnx_runner(models["rec"], SCRFD_SIGNATURE, "onnxruntime", "cpu", (1, 3, 640, 640))
    with pytest.raises(ModelError, match=r"not the expected 2d106 landmark model.*input shape \[1, 3, 112, 112\]"):
        load_onnx_runner(models["rec"], LANDMARK106_SIGNATURE, "onnxruntime", "cpu", (1, 3, 192, 192))
    any_size_recogniser = onnx_runtime.OnnxSignature(RECOGNISER_SIGNATURE.kind, (None, 3, None, None), ((512,),))
    with pytest.raises(ModelError, match=r"not the expected ArcFace recogniser.*output .* \(rows, \*\[512\]\)"):
        load_onnx_runner(models["2d106"], any_size_recogniser, "onnxruntime", "cpu", (1, 3, 192, 192))
    garbage = tmp_path / "det_10g.onnx"
    garbage.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        load_onnx_runner(garbage, SCRFD_SIGNATURE, "torch", "cpu", (1, 3, 640, 640))
    with pytest.raises(ModelError, match="not found"):
        load_onnx_runner(tmp_path / "missing.onnx", SCRFD_SIGNATURE, "torch", "cpu", (1, 3, 640, 640))


def test_onnx2torch_import_leaves_no_torchvision_behind() -> None:
    # a fresh interpreter: this one may have imported onnx2torch already
    code = (
        "import sys\n"
        "from streamswap.compat.onnx2torch import import_onnx2torch\n"
        "m = import_onnx2torch()\n"
        "assert m.convert, 'onnx2torch has convert'\n"
        "assert 'torchvision' not in sys.modules and 'torchvision.ops' not in sys.modules\n"
        "from onnx2torch.node_converters import nms\n"
        "import torch\n"
        "b = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])\n"
        "print(nms.torchvision.ops.nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 2]"


def test_missing_onnx2torch_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # onnx2torch is installed here; make it look absent to this process only
    monkeypatch.delitem(sys.modules, "onnx2torch", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx2torch" else real(name, *a))
    with pytest.raises(ModelError, match=r"pip install --no-deps onnx2torch==1\.5\.15"):
        onnx2torch_compat.import_onnx2torch()


def test_stand_in_ops_behave_like_torchvisions() -> None:
    tv, ops = onnx2torch_compat._torchvision_stand_in()
    g = np.random.default_rng(0)
    xy = g.uniform(0, 100, (60, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + g.uniform(5, 40, (60, 2))], 1), dtype=torch.float32)
    scores = torch.tensor(g.uniform(0, 1, 60), dtype=torch.float32)
    keep = ops.nms(boxes, scores, 0.3)
    # the textbook greedy loop, in numpy
    order, expect = list(np.argsort(-scores.numpy(), kind="stable")), []
    b = boxes.numpy()
    while order:
        i = order.pop(0)
        expect.append(i)
        rest = []
        for j in order:
            ix = max(0.0, min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]))
            iy = max(0.0, min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]))
            inter = ix * iy
            union = (b[i, 2] - b[i, 0]) * (b[i, 3] - b[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            if inter / union <= 0.3:
                rest.append(j)
        order = rest
    assert keep.tolist() == expect
    assert torch.equal(nms(boxes, scores, 0.3), keep)
    c = ops.box_convert(boxes, "xyxy", "cxcywh")
    assert torch.allclose(ops.box_convert(c, "cxcywh", "xyxy"), boxes, atol=1e-4)
    with pytest.raises(NotImplementedError, match="RoiAlign"):
        ops.roi_align(boxes, boxes, 7)


@pytest.mark.gpu
def test_cuda_runtimes_keep_frames_on_the_gpu(models: dict[str, Path]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from streamswap.faces.detect import SCRFDDetector

    shape = (1, 3, 640, 640)
    x = _input(shape, 4)
    want = load_onnx_runner(models["scrfd"], SCRFD_SIGNATURE, "onnxruntime", "cpu", shape)(x)
    conv = load_onnx_runner(models["scrfd"], SCRFD_SIGNATURE, "torch", "cuda", shape)
    assert conv.batched and conv.provider == "torch:cuda:fp16"
    for got, w in zip(conv(x.cuda()), want, strict=True):
        assert got.is_cuda and got.dtype == torch.float32
        assert torch.allclose(got.cpu(), w, atol=2e-2, rtol=1e-2)
    ort = load_onnx_runner(models["scrfd"], SCRFD_SIGNATURE, "onnxruntime", "cuda", shape)
    for got, w in zip(ort(x.cuda()), want, strict=True):
        assert got.is_cuda  # IOBinding with the CUDA EP, or host copies when only the CPU EP runs
        assert torch.allclose(got.cpu(), w, atol=1e-3)
    frames = torch.stack([torch.from_numpy(rng_image(720, 1280, seed)).permute(2, 0, 1) for seed in range(3)])
    cpu = SCRFDDetector.load(models["scrfd"], runtime="onnxruntime").detect(frames)
    gpu = SCRFDDetector.load(models["scrfd"], runtime="torch", device="cuda").detect(frames.cuda())
    assert gpu.boxes.is_cuda and gpu.frame_index.is_cuda
    # fp16 may flip candidates near the threshold (and so NMS order); confident faces must agree
    sure = cpu.select(cpu.scores > 0.8)
    assert len(sure) > 0
    found = 0
    for box, i in zip(sure.boxes, sure.frame_index, strict=True):
        mine = gpu.in_frame(int(i)).boxes.cpu()
        found += int(len(mine) > 0 and float((mine - box).abs().max(dim=1).values.min()) < 2.0)
    assert found >= 0.9 * len(sure)
