"""Face super-resolution generator (GHOST's `10_net_G.pth`): SPADE generator with a LIP encoder.

HiFaceGAN's "lipspade" generator: ngf 48, norm `spectralspadesyncbatch3x3`, semantic_nc 3,
crop 256. The image itself is the SPADE "semantic" input; a LIP (local importance pooling)
encoder turns it into the 8x8 starting features. Keys pinned by
`golden/sr_lipspade.manifest.json`. Architecture lineage: NVIDIA SPADE, CC BY-NC-SA 4.0.

Modes (`SRMode`):
- "reference" (default): what GHOST does - the module in train mode, so SPADE's batch norms
  use the statistics of the current batch and each spectral-norm conv runs one power
  iteration from its stored u/v (updating them) on every call. Outputs depend on the other
  faces in the batch. Default because it is the only mode shown to reproduce GHOST's output.
- "eval": running statistics and the stored u/v, no state changes; each face is processed
  independently of its batch. Saner, but unproven on the real weights (see the report).

Synchronised batch norm on one process is plain batch norm (same keys, same maths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

SRMode = Literal["reference", "eval"]


@dataclass(frozen=True)
class SRConfig:
    """Shape of the LIP-SPADE generator (defaults: GHOST's published network)."""

    ngf: int = 48
    semantic_nc: int = 3
    crop_size: int = 256
    num_up_layers: int = 5  # "normal": the encoder downsamples 2^5, the decoder upsamples back


class SPADE(nn.Module):
    """Parameter-free batch norm, then a per-pixel scale and shift predicted from the segmap
    (HiFaceGAN's variant: scale = gamma, not 1 + gamma as in NVIDIA's SPADE)."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int = 128, ks: int = 3) -> None:
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        nhidden = min(hidden, norm_nc)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, nhidden, ks, padding=ks // 2), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(nhidden, norm_nc, ks, padding=ks // 2, bias=False)
        self.mlp_beta = nn.Conv2d(nhidden, norm_nc, ks, padding=ks // 2, bias=False)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        seg = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * self.mlp_gamma(actv) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE-LeakyReLU-conv twice, plus a (learned when widths differ) shortcut."""

    def __init__(self, fin: int, fout: int, semantic_nc: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmid = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmid, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, semantic_nc)
        self.norm_1 = SPADE(fmid, semantic_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, semantic_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SimplifiedLIP(nn.Module):
    """Local importance pooling (stride 2): average pooling weighted by exp(learned logits)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.logit = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # soft gate: 12 * sigmoid(logit); the exp of it is the pooling weight
        w = torch.exp(12.0 * torch.sigmoid(self.logit(x)))
        return F.avg_pool2d(x * w, 3, stride=2, padding=1) / F.avg_pool2d(w, 3, stride=2, padding=1)


class LIPEncoder(nn.Module):
    """Image (B, 3, S, S) -> features (B, 16*ngf, S/2^n, S/2^n) with n LIP downsamplings."""

    def __init__(self, ngf: int, semantic_nc: int, n_down: int, max_ratio: int = 16) -> None:
        super().__init__()
        mods: list[nn.Module] = [
            nn.Conv2d(semantic_nc, ngf, 3, padding=1, bias=False),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(),
        ]
        ratio = 1
        for i in range(n_down):
            nxt = min(ratio * 2, max_ratio)
            mods += [
                SimplifiedLIP(ngf * ratio),
                nn.Conv2d(ngf * ratio, ngf * nxt, 3, padding=1),
                nn.InstanceNorm2d(ngf * nxt),
            ]
            if i < n_down - 1:
                mods.append(nn.ReLU())
            ratio = nxt
        self.model = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SRGenerator(nn.Module):
    """LIP-SPADE face restoration generator: (B, 3, 256, 256) RGB in [0, 1] -> (B, 3, 256, 256)
    in [-1, 1] (tanh); GHOST reads the result as [0, 1] (clamped). See the module doc for modes."""

    def __init__(self, config: SRConfig | None = None) -> None:
        super().__init__()
        c = self.config = config or SRConfig()
        nf = c.ngf
        # `fc` exists in the published weights (inherited from the plain SPADE generator) but the
        # LIP variant starts from the encoder instead: kept for strict loading, unused.
        self.fc = nn.Conv2d(c.semantic_nc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, c.semantic_nc)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, c.semantic_nc)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, c.semantic_nc)
        widths = (16 * nf, 8 * nf, 4 * nf, 2 * nf, nf)
        self.ups = nn.ModuleList(
            SPADEResnetBlock(a, b, c.semantic_nc) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.to_rgbs = nn.ModuleList(nn.Conv2d(w, 3, 3, padding=1) for w in widths[1:])
        self.lip_encoder = LIPEncoder(nf, c.semantic_nc, c.num_up_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, 256, 256) float RGB in [0, 1] -> (B, 3, 256, 256) in [-1, 1]."""
        seg = x
        h = self.lip_encoder(x)
        h = self.head_0(h, seg)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.G_middle_1(self.G_middle_0(h, seg), seg)
        for up in self.ups:
            h = up(F.interpolate(h, scale_factor=2, mode="nearest"), seg)
        return torch.tanh(self.to_rgbs[-1](F.leaky_relu(h, 0.2)))


def set_sr_mode(model: SRGenerator, mode: SRMode = "reference") -> SRGenerator:
    """Put the generator in `mode` ("reference": train mode as GHOST runs it; "eval")."""
    if mode not in ("reference", "eval"):
        raise ValueError(f"SR mode must be 'reference' or 'eval', got {mode!r}")
    return model.train(mode == "reference")
