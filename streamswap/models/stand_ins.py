"""Stand-ins for insightface's ONNX face models, exported from torch: the tests and the benchmark
harness (`bench ... --stand-in`) run the whole ghost engine with them where the published files
are absent (nothing is downloaded).

Each has the published model's input and output signature and op types (Conv, Relu,
AveragePool, Resize, Add, Sigmoid, Transpose, Reshape, Flatten, Gemm), deterministic weights,
and outputs that depend on the pixels, so preprocessing and decoding mistakes show:

- SCRFD (scrfd_10g_bnkps / det_10g): input "input.1" 1x3x640x640 (batch 1 fixed in the file),
  nine outputs: scores (N, 1) x3, boxes (N, 4) x3, keypoints (N, 10) x3 for strides 8/16/32,
  two anchors per location, flattened with reshape(-1, C). Its score head responds to
  skin-coloured regions (red minus blue), so a real face gives a cluster of overlapping
  confident boxes (NMS has work to do) and a blank frame gives none.
- 2d106det: 1x3x192x192 -> (1, 212), values around a mean face shape in [-1, 1].
- ArcFace recogniser (glintr100 / w600k_r50): 1x3x112x112 -> (1, 512).

`hard_batch=True` variants reshape to fixed sizes, like graphs that hard-code batch 1.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (8, 16, 32)
ANCHORS = 2
# where the five keypoints sit relative to an anchor centre, in units of its stride
SCORE_MEAN = (6.0, 6.0, 6.0)
SCORE_SURROUND = (25.0, 25.0, 25.0)
SCORE_BIAS = (-8.0, -7.0, -5.0)
BOX_DIST = (3.2, 3.6, 3.2, 4.4)  # left, top, right, bottom, in strides
KPS_OFFSETS = ((-0.7, -0.5), (0.7, -0.5), (0.0, 0.2), (-0.55, 0.9), (0.55, 0.9))


def _export(module: nn.Module, shape: tuple[int, ...], path: Path, output_names: list[str]) -> Path:
    module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module,
            (torch.zeros(shape),),
            buf,  # type: ignore[arg-type]  # the legacy exporter writes to file objects too
            dynamo=False,
            input_names=["input.1"],
            output_names=output_names,
            opset_version=11,
            do_constant_folding=True,
        )
    path.write_bytes(buf.getvalue())
    return path


def _weight_bias(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of a Conv2d or Linear built with a bias, as every layer here is
    (items of a ModuleList are typed as plain Modules, and `bias` as optional)."""
    assert isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None
    return m.weight, m.bias


def _module_list(m: nn.Module) -> nn.ModuleList:
    """An item of a ModuleList of ModuleLists, typed as what it is."""
    assert isinstance(m, nn.ModuleList)
    return m


class FakeSCRFD(nn.Module):
    def __init__(self, hard_batch: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.hard_batch = hard_batch
        # 1x1 "colour" conv: channel 0 = R - B (skin cue), 1..3 = R, G, B
        self.colour = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.colour.weight.copy_(torch.tensor([[1.0, 0, -1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]).view(4, 3, 1, 1))
            _weight_bias(self.colour)[1].zero_()
        self.lateral = nn.ModuleList(nn.Conv2d(4, 4, 1) for _ in range(2))
        self.score = nn.ModuleList(nn.Conv2d(4, ANCHORS, 3, padding=1) for _ in STRIDES)
        self.bbox = nn.ModuleList(nn.Conv2d(4, ANCHORS * 4, 3, padding=1) for _ in STRIDES)
        self.kps = nn.ModuleList(nn.Conv2d(4, ANCHORS * 10, 3, padding=1) for _ in STRIDES)
        with torch.no_grad():
            # every tensor distinct: the exporter folds equal initializers into Identity nodes
            for j, lat in enumerate(self.lateral):
                weight, bias = _weight_bias(lat)
                weight.copy_(torch.eye(4).view(4, 4, 1, 1) * (0.5 + 0.1 * j))
                bias.fill_(0.01 * (j + 1))
            for i in range(len(STRIDES)):
                # score: a skin-coloured blob at this stride's scale (centre minus surround of the
                # skin cue) on skin (its 3x3 mean), with a little colour noise
                sw = torch.zeros(ANCHORS, 4, 3, 3)
                sw[:, 0] = SCORE_MEAN[i] / 9 - SCORE_SURROUND[i] / 8
                sw[:, 0, 1, 1] = SCORE_MEAN[i] / 9 + SCORE_SURROUND[i]
                sw[:, 1:] = 0.1 * torch.randn(ANCHORS, 3, 3, 3, generator=g)
                score_w, score_b = _weight_bias(self.score[i])
                bbox_w, bbox_b = _weight_bias(self.bbox[i])
                kps_w, kps_b = _weight_bias(self.kps[i])
                score_w.copy_(sw)
                score_b.copy_(torch.tensor([SCORE_BIAS[i], SCORE_BIAS[i] - 0.4]))
                bbox_w.copy_(0.05 * torch.randn(ANCHORS * 4, 4, 3, 3, generator=g))
                bbox_b.copy_(torch.tensor(BOX_DIST * ANCHORS) + 0.01 * i)
                kps_w.copy_(0.03 * torch.randn(ANCHORS * 10, 4, 3, 3, generator=g))
                kps_b.copy_(torch.tensor([v for p in KPS_OFFSETS for v in p] * ANCHORS) + 0.01 * i)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c = F.relu(self.colour(x)) + self.colour(x) * 0.1
        f8 = F.avg_pool2d(c, 8, 8)
        f16 = F.avg_pool2d(f8, 2, 2)
        f32 = F.avg_pool2d(f16, 2, 2)
        # a top-down path, as SCRFD's neck has (Resize + Add)
        f16 = f16 + self.lateral[0](F.interpolate(f32, scale_factor=2.0, mode="nearest")) * 0.1
        f8 = f8 + self.lateral[1](F.interpolate(f16, scale_factor=2.0, mode="nearest")) * 0.1
        scores, boxes, kps = [], [], []
        for i, f in enumerate((f8, f16, f32)):
            s = torch.sigmoid(self.score[i](f)).permute(0, 2, 3, 1)
            b = self.bbox[i](f).permute(0, 2, 3, 1)
            k = self.kps[i](f).permute(0, 2, 3, 1)
            if self.hard_batch:
                n = f.shape[2] * f.shape[3] * ANCHORS  # a Python int: exported as a constant
                scores.append(s.reshape(n, 1))
                boxes.append(b.reshape(n, 4))
                kps.append(k.reshape(n, 10))
            else:
                scores.append(s.reshape(-1, 1))
                boxes.append(b.reshape(-1, 4))
                kps.append(k.reshape(-1, 10))
        return (*scores, *boxes, *kps)


class FakeSCRFDHeavy(nn.Module):
    """SCRFD's signature with roughly scrfd_10g's compute (~10 GFLOPs at 640x640: a plain
    3x3-conv backbone to strides 8/16/32 and 3x3 heads) and random weights. For timing only:
    its score heads are biased far below any threshold, so it finds nothing."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1), nn.ReLU())

        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), block(32, 64))  # stride 4
        self.s8, self.s16, self.s32 = block(64, 128), block(128, 256), block(256, 256)
        self.neck = nn.ModuleList(nn.Conv2d(c, 64, 1) for c in (128, 256, 256))
        self.head = nn.ModuleList(nn.Sequential(nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU()) for _ in STRIDES)
        self.out = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(64, ANCHORS * c, 3, 1, 1) for c in (1, 4, 10)) for _ in STRIDES
        )
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    weight, bias = _weight_bias(m)
                    weight.copy_(torch.randn(weight.shape, generator=g) / math.sqrt(weight[0].numel()))
                    bias.copy_(0.01 * torch.randn(bias.shape, generator=g))
            for o in self.out:
                _weight_bias(_module_list(o)[0])[1].sub_(20.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f8 = self.s8(self.stem(x))
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p32 = self.neck[2](f32)
        p16 = self.neck[1](f16) + F.interpolate(p32, scale_factor=2.0, mode="nearest")
        p8 = self.neck[0](f8) + F.interpolate(p16, scale_factor=2.0, mode="nearest")
        scores, boxes, kps = [], [], []
        for i, p in enumerate((p8, p16, p32)):
            h = self.head[i](p)
            out = _module_list(self.out[i])
            scores.append(torch.sigmoid(out[0](h)).permute(0, 2, 3, 1).reshape(-1, 1))
            boxes.append(out[1](h).permute(0, 2, 3, 1).reshape(-1, 4))
            kps.append(out[2](h).permute(0, 2, 3, 1).reshape(-1, 10))
        return (*scores, *boxes, *kps)


def _mean_shape_106() -> torch.Tensor:
    """A face-like spread of 106 points in [-0.75, 0.75] (an ellipse of rings)."""
    t = torch.arange(106, dtype=torch.float32)
    ring = 0.25 + 0.5 * (t % 3) / 2
    ang = t * (2 * math.pi * 0.618)
    return torch.stack([ring * torch.cos(ang) * 0.9, ring * torch.sin(ang)], dim=1)


class FakeLandmark106(nn.Module):
    def __init__(self, hard_batch: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.hard_batch = hard_batch
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4, 212)
        with torch.no_grad():
            for m in (self.conv1, self.conv2):
                weight, bias = _weight_bias(m)
                weight.copy_(torch.randn(weight.shape, generator=g) / math.sqrt(weight[0].numel()))
                bias.zero_()
            self.fc.weight.copy_(0.1 * torch.randn(212, 64, generator=g) / 8)
            _weight_bias(self.fc)[1].copy_(_mean_shape_106().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))  # 48x48
        h = F.avg_pool2d(h, 24, 24)  # 2x2 cells keep where things are
        y = self.fc(torch.flatten(h, 1))
        return y.reshape(1, -1) if self.hard_batch else y


class FakeRecogniser(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * 16, 512)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc):
                weight, bias = _weight_bias(m)
                fan_in = weight[0].numel()
                weight.copy_(torch.randn(weight.shape, generator=g) / math.sqrt(fan_in))
                bias.copy_(0.01 * torch.randn(bias.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))  # 28x28
        h = F.avg_pool2d(h, 7, 7)  # 4x4
        return self.fc(torch.flatten(h, 1))


def scrfd_output_names() -> list[str]:
    return [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES]


def export_fake_scrfd(path: Path, hard_batch: bool = False, heavy: bool = False) -> Path:
    """heavy: the timing variant with scrfd_10g-like compute (finds no faces)."""
    module = FakeSCRFDHeavy() if heavy else FakeSCRFD(hard_batch)
    return _export(module, (1, 3, 640, 640), path, scrfd_output_names())


def export_fake_2d106(path: Path, hard_batch: bool = False, mxnet_style_names: bool = False) -> Path:
    """mxnet_style_names: name the first node "bn_data", as the MXNet-converted published
    2d106det.onnx does; insightface then feeds raw pixels (mean 0, std 1)."""
    _export(FakeLandmark106(hard_batch), (1, 3, 192, 192), path, ["fc1"])
    if mxnet_style_names:
        model = onnx.load(str(path))
        model.graph.node[0].name = "bn_data"
        onnx.save(model, str(path))
    return path


def export_fake_recogniser(path: Path) -> Path:
    return _export(FakeRecogniser(), (1, 3, 112, 112), path, ["embedding"])
