"""ArcFace IResNet identity encoder (GHOST's `backbone.pth` is IResNet-100).

State_dict-compatible with insightface's arcface_torch IResNet (keys pinned by
`golden/iresnet100.manifest.json`). Re-implemented from the architecture description.
"""

from __future__ import annotations

import torch
from torch import nn

# blocks per stage
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-5)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = _bn(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(cout)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=False)
        self.bn3 = _bn(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """Face crops (B, 3, 112, 112), RGB in [-1, 1] -> embeddings (B, 512), not normalised."""

    # the four stages, added with add_module in __init__
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, depth: str = "r100", num_features: int = 512, width: int = 64) -> None:
        """`width`: channels of the stem and first stage (64 published; the stages double it).
        Small values build tiny random encoders for CPU training smoke runs."""
        super().__init__()
        layers = IRESNET_LAYERS[depth]
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = _bn(width)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, (n, cout) in enumerate(zip(layers, widths, strict=False)):
            blocks = [IBasicBlock(cin if k == 0 else cout, cout, 2 if k == 0 else 1) for k in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = _bn(widths[-1])
        self.fc = nn.Linear(widths[-1] * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 112, 112) float, RGB in [-1, 1] -> (B, num_features) raw embeddings."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(x))
