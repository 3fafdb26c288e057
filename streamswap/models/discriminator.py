"""Multiscale PatchGAN discriminator (pix2pixHD style), GHOST's `D_unet_*.pth`.

Keys pinned by `golden/multiscale_discriminator.manifest.json`: `layer{i}.{n}` Sequentials.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def patch_discriminator(input_nc: int = 3, ndf: int = 64, n_layers: int = 5) -> nn.Sequential:
    """One PatchGAN: k4 convs (padding 2), stride 2 except the last two, InstanceNorm (no affine)
    after every conv but the first and the last, LeakyReLU(0.2). Output: 1 channel of logits."""
    kw, pad = 4, math.ceil((4 - 1) / 2)
    seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2, True)]
    nf = ndf
    for n in range(1, n_layers + 1):
        prev, nf = nf, min(nf * 2, 512)
        stride = 2 if n < n_layers else 1
        seq += [nn.Conv2d(prev, nf, kw, stride=stride, padding=pad), nn.InstanceNorm2d(nf), nn.LeakyReLU(0.2, True)]
    seq.append(nn.Conv2d(nf, 1, kw, stride=1, padding=pad))
    return nn.Sequential(*seq)


class MultiscaleDiscriminator(nn.Module):
    """`num_d` PatchGANs on the image and on 2x, 4x, ... average-pooled copies."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 5, num_d: int = 3) -> None:
        super().__init__()
        self.num_d = num_d
        for i in range(num_d):
            self.add_module(f"layer{i}", patch_discriminator(input_nc, ndf, n_layers))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) in [-1, 1] -> one logit map (B, 1, h_i, w_i) per scale, full
        resolution first (for 256: 11, 7, 5 px)."""
        out = []
        for i in range(self.num_d):
            # pix2pixHD's layout: the LAST stored net sees the full-resolution image
            out.append(getattr(self, f"layer{self.num_d - 1 - i}")(x))
            if i != self.num_d - 1:
                x = self.downsample(x)
        return out
