"""AEI-Net (GHOST's generator): a multi-level attribute encoder and an AAD generator.

State_dict-compatible with GHOST's published `G_unet_{1block,2blocks,3blocks}.pth`
(module names and shapes are pinned by `golden/aei_net_unet_*blocks.manifest.json`).
Re-implemented from GHOST-SPEC.md; no reference code copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

EncoderKind = Literal["unet", "linknet"]

# Encoder widths, 256 px input -> 2 px bottleneck.
_ENC = (3, 32, 64, 128, 256, 512, 1024, 1024)
_DEC = (1024, 512, 256, 128, 64, 32)  # decoder (transposed conv) widths
_GEN = (1024, 1024, 1024, 1024, 512, 256, 128, 64)  # AAD ResBlk input widths (the last maps to 3)


@dataclass(frozen=True)
class AEINetConfig:
    """Shape of an AEI-Net. GHOST publishes `unet` with 1, 2 (main) and 3 blocks, identity 512."""

    num_blocks: int = 2
    encoder: EncoderKind = "unet"
    id_dim: int = 512
    # Channel multiplier for every hidden layer (1.0 = GHOST's published widths). Smaller
    # values build tiny networks for CPU smoke runs; images stay 3 channels in and out.
    width: float = 1.0

    def __post_init__(self) -> None:
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.encoder not in ("unet", "linknet"):
            raise ValueError(f"encoder must be 'unet' or 'linknet', got {self.encoder!r}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")

    def scaled(self, channels: int) -> int:
        """A published hidden width scaled by `width` (at least 1)."""
        return channels if self.width == 1.0 else max(1, round(channels * self.width))

    def encoder_channels(self) -> tuple[int, ...]:
        """Input + the 7 encoder conv widths (3, 32, ..., 1024 at width 1)."""
        return (3, *(self.scaled(c) for c in _ENC[1:]))

    def decoder_channels(self) -> tuple[int, ...]:
        """The 6 transposed-conv widths (1024, ..., 32 at width 1)."""
        return tuple(self.scaled(c) for c in _DEC)

    def generator_channels(self) -> tuple[int, ...]:
        """Widths along the AAD generator: 8 ResBlk inputs, then the 3 output channels."""
        return (*(self.scaled(c) for c in _GEN), 3)

    def attr_channels(self) -> tuple[int, ...]:
        """Channels of the 8 attribute maps (2, 4, 8, ..., 256 px); at width 1:
        unet (1024, 2048, 1024, 512, 256, 128, 64, 64), linknet (1024, 1024, 512, ..., 32, 32)."""
        enc, dec = self.encoder_channels(), self.decoder_channels()
        if self.encoder == "unet":  # skip concatenated: deconv out + encoder feature
            mid = tuple(dec[i] + enc[6 - i] for i in range(6))
        else:  # skip added
            mid = dec
        return (enc[7], *mid, mid[-1])


def _down(cin: int, cout: int) -> nn.Sequential:
    # keys: N.0 conv, N.1 bn (GHOST's layout)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class _Up(nn.Module):
    """Transposed conv k4 s2 + BN + LeakyReLU(0.1), then merged with the encoder skip."""

    def __init__(self, cin: int, cout: int, merge: EncoderKind) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)
        self.merge = merge

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.lrelu(self.bn(self.deconv(x)))
        if self.merge == "linknet":
            return x + skip
        return torch.cat((x, skip), dim=1)  # order matters: decoder first, then skip


class AttributeEncoder(nn.Module):
    """Multi-level attribute encoder: U-Net (skip concatenated) or LinkNet (skip added)."""

    def __init__(self, kind: EncoderKind = "unet", config: AEINetConfig | None = None) -> None:
        super().__init__()
        config = config or AEINetConfig(encoder=kind)
        enc = config.encoder_channels()
        for i in range(7):
            self.add_module(f"conv{i + 1}", _down(enc[i], enc[i + 1]))
        # decoder inputs: bottleneck, then the previous attribute map
        ins = config.attr_channels()[:6]
        for i, (cin, cout) in enumerate(zip(ins, config.decoder_channels(), strict=False)):
            self.add_module(f"deconv{i + 1}", _Up(cin, cout, kind))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, 3, 256, 256) in [-1, 1] -> 8 attribute maps at 2, 4, ..., 256 px."""
        feats = []
        h = x
        for i in range(7):
            h = getattr(self, f"conv{i + 1}")(h)
            feats.append(h)
        attrs = [feats[6]]
        for i in range(6):
            attrs.append(getattr(self, f"deconv{i + 1}")(attrs[-1], feats[5 - i]))
        attrs.append(F.interpolate(attrs[-1], scale_factor=2, mode="bilinear", align_corners=True))
        return tuple(attrs)


class AADLayer(nn.Module):
    """Adaptive attentional denormalisation: blend attribute- and identity-modulated features."""

    def __init__(self, channels: int, attr_channels: int, id_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(attr_channels, channels, kernel_size=1)  # gamma_attr
        self.conv2 = nn.Conv2d(attr_channels, channels, kernel_size=1)  # beta_attr
        self.fc1 = nn.Linear(id_dim, channels)  # gamma_id
        self.fc2 = nn.Linear(id_dim, channels)  # beta_id
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.conv_h = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, h_in: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        h = self.norm(h_in)
        a = self.conv1(z_attr) * h + self.conv2(z_attr)
        i = self.fc1(z_id)[:, :, None, None] * h + self.fc2(z_id)[:, :, None, None]
        m = torch.sigmoid(self.conv_h(h))
        return (1 - m) * a + m * i


class AADChain(nn.ModuleList):
    """[AAD, ReLU, conv3x3] repeated; keys `N.conv1...` (AAD) and `N.weight` (conv) as GHOST's."""

    def forward(self, h: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        for k in range(0, len(self), 3):
            h = self[k](h, z_attr, z_id)
            h = self[k + 2](self[k + 1](h))
        return h


def _aad_chain(cin: int, cout: int, attr_channels: int, id_dim: int, n: int) -> AADChain:
    mods: list[nn.Module] = []
    for k in range(n):
        out = cout if k == n - 1 else cin
        mods += [
            AADLayer(cin, attr_channels, id_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, out, kernel_size=3, padding=1, bias=False),
        ]
    return AADChain(mods)


class AADResBlk(nn.Module):
    """n AAD units; a one-unit AAD shortcut when the width changes, else the identity."""

    def __init__(self, cin: int, cout: int, attr_channels: int, id_dim: int, num_blocks: int) -> None:
        super().__init__()
        self.add_blocks = _aad_chain(cin, cout, attr_channels, id_dim, num_blocks)
        self.last_add_block = _aad_chain(cin, cout, attr_channels, id_dim, 1) if cin != cout else None

    def forward(self, h: torch.Tensor, z_attr: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        x = self.add_blocks(h, z_attr, z_id)
        skip = h if self.last_add_block is None else self.last_add_block(h, z_attr, z_id)
        return x + skip


class AADGenerator(nn.Module):
    """Identity (B, id_dim) + 8 attribute maps -> (B, 3, 256, 256) in [-1, 1] (tanh)."""

    def __init__(self, config: AEINetConfig) -> None:
        super().__init__()
        widths = config.generator_channels()
        self.up1 = nn.ConvTranspose2d(config.id_dim, widths[0], kernel_size=2, stride=1, padding=0)
        for i, c_attr in enumerate(config.attr_channels()):
            self.add_module(
                f"AADBlk{i + 1}", AADResBlk(widths[i], widths[i + 1], c_attr, config.id_dim, config.num_blocks)
            )

    def forward(self, attrs: tuple[torch.Tensor, ...], z_id: torch.Tensor) -> torch.Tensor:
        m = self.up1(z_id[:, :, None, None])
        for i in range(8):
            m = getattr(self, f"AADBlk{i + 1}")(m, attrs[i], z_id)
            if i < 7:
                m = F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=True)
        return torch.tanh(m)


class AEINet(nn.Module):
    """GHOST's AEI-Net. Weights: `G_unet_{1block,2blocks,3blocks}.pth` load strictly."""

    def __init__(self, config: AEINetConfig | None = None) -> None:
        super().__init__()
        self.config = config or AEINetConfig()
        self.encoder = AttributeEncoder(self.config.encoder, self.config)
        self.generator = AADGenerator(self.config)

    def forward(self, x_t: torch.Tensor, z_id: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """x_t: (B, 3, 256, 256) target crop, RGB in [-1, 1]; z_id: (B, 512) source identity
        (ArcFace embedding, GHOST feeds it unnormalised). Returns the swapped face
        (B, 3, 256, 256) in [-1, 1] and the 8 attribute maps of x_t. Same device/dtype as x_t."""
        attrs = self.encoder(x_t)
        return self.generator(attrs, z_id), attrs

    def get_attr(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Attribute maps of x (B, 3, 256, 256) in [-1, 1]: used by the attribute loss."""
        return self.encoder(x)

    def init_weights(self) -> None:
        """GHOST's from-scratch init: Linear N(0, 0.001) with zero bias; (de)convs Xavier-normal."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.001)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_normal_(m.weight)


class AEINetImage(nn.Module):
    """AEI-Net that returns only the image: what inference, tracing and ONNX export want."""

    def __init__(self, net: AEINet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x_t: torch.Tensor, z_id: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, z_id)[0]
