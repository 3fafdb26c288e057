"""AdaptiveWingLoss face-alignment network (FAN, stacked hourglasses), GHOST's `WFLW_4HG.pth`.

Used frozen by the eye loss in training. Keys pinned by
`golden/awl_fan_4hg_wflw98.manifest.json`. Re-implemented from the architecture description.
"""

from __future__ import annotations

from typing import Required, TypedDict, Unpack

import torch
import torch.nn.functional as F
from torch import nn


def coord_channels(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(batch, 3, H, W) on like's device/dtype: row coordinate, column coordinate (both in
    [-1, 1]) and their radius scaled to max 1 - in that order, as AWL's CoordConv adds them."""
    rows = torch.arange(height, device=like.device, dtype=torch.float32) / (height - 1) * 2 - 1
    cols = torch.arange(width, device=like.device, dtype=torch.float32) / (width - 1) * 2 - 1
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    radius = torch.sqrt(rr**2 + cc**2)
    radius = radius / radius.max()
    return torch.stack((rr, cc, radius)).to(like.dtype).expand(batch, 3, height, width)


class _ConvArgs(TypedDict, total=False):
    kernel_size: Required[int]
    stride: int
    padding: int


class CoordConv(nn.Module):
    """Conv over [input, row, col, radius (, boundary-masked row, col)]."""

    def __init__(self, in_channels: int, out_channels: int, with_boundary: bool, **conv: Unpack[_ConvArgs]) -> None:
        super().__init__()
        self.with_boundary = with_boundary
        self.conv = nn.Conv2d(in_channels + 3 + (2 if with_boundary else 0), out_channels, **conv)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        coords = coord_channels(b, h, w, x)
        parts = [x, coords]
        if self.with_boundary:
            if heatmap is None:
                raise ValueError("this CoordConv needs the previous hourglass's heatmaps")
            # the last heatmap channel is the boundary map: coordinates only where it is > 0.05
            boundary = heatmap[:, -1:].clamp(0.0, 1.0) > 0.05
            parts.append(torch.where(boundary, coords[:, :2], torch.zeros_like(coords[:, :2])))
        return self.conv(torch.cat(parts, dim=1))


class ConvBlock(nn.Module):
    """Hierarchical residual block: three BN-ReLU-conv3x3 at widths out/2, out/4, out/4,
    concatenated, plus the (projected) input."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout // 4, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = nn.Conv2d(cout // 4, cout // 4, 3, padding=1, bias=False)
        self.downsample: nn.Module | None = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        res = x if self.downsample is None else self.downsample(x)
        return torch.cat((o1, o2, o3), dim=1) + res


class HourGlass(nn.Module):
    """A CoordConv 1x1 then a recursive hourglass of `depth` levels (avg-pool down, nearest up)."""

    b2_plus_1: ConvBlock  # added with add_module, as the b{1,2,3}_{level} blocks are

    def __init__(self, depth: int, features: int, first: bool) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(features, features, with_boundary=not first, kernel_size=1)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self.b2_plus_1(low)
        low = getattr(self, f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x, heatmap))


class FAN(nn.Module):
    """Stacked-hourglass landmark network. Input (B, 3, 256, 256) RGB in [0, 1]; returns the
    heatmaps (B, num_landmarks + 1, 64, 64) of every hourglass (the last channel is the boundary
    map). `end_relu` is on for GHOST's network (its string flag "False" is truthy). `stem`
    (64 published) sets the widths before the hourglasses (stem, 2 x stem); small `stem` and
    `features` build tiny random networks for CPU training smoke runs."""

    def __init__(
        self,
        num_modules: int = 4,
        num_landmarks: int = 98,
        end_relu: bool = True,
        depth: int = 4,
        features: int = 256,
        stem: int = 64,
    ) -> None:
        super().__init__()
        self.num_modules = num_modules
        self.end_relu = end_relu
        self.conv1 = CoordConv(3, stem, with_boundary=False, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = ConvBlock(stem, 2 * stem)
        self.conv3 = ConvBlock(2 * stem, 2 * stem)
        self.conv4 = ConvBlock(2 * stem, features)
        nh = num_landmarks + 1
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(depth, features, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, nh, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, 1))
                self.add_module(f"al{i}", nn.Conv2d(nh, features, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, 256, 256) in [0, 1] -> list of num_modules heatmaps (B, L + 1, 64, 64)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        outputs: list[torch.Tensor] = []
        heat: torch.Tensor | None = None
        for i in range(self.num_modules):
            ll = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous, heat))
            ll = F.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(ll)))
            heat = getattr(self, f"l{i}")(ll)
            if self.end_relu:
                heat = F.relu(heat)
            outputs.append(heat)
            if i < self.num_modules - 1:
                previous = previous + getattr(self, f"bl{i}")(ll) + getattr(self, f"al{i}")(heat)
        return outputs
