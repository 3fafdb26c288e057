"""Building the four networks a training run needs, from `ModelSettings`.

Trained: the AEI-Net generator (GHOST's from-scratch init, or a published G to fine-tune)
and the multiscale discriminator. Frozen: the IResNet identity encoder and, for the eye loss,
AWL's FAN. "published" helpers load their weight files (given path or the model cache);
"tiny" ones are random, for CPU smoke runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from torch import nn

from streamswap.errors import InputError
from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.arcface import IResNet
from streamswap.models.awl_fan import FAN
from streamswap.models.discriminator import MultiscaleDiscriminator
from streamswap.models.weights import build_model, load_weights
from train.eyes import EyeHeatmaps, freeze, tiny_fan
from train.settings import ModelSettings


@dataclass
class Networks:
    generator: AEINet
    discriminator: MultiscaleDiscriminator
    identity: nn.Module          # frozen: (B, 3, 112, 112) in [-1, 1] -> (B, id_dim)
    eyes: EyeHeatmaps | None     # frozen; None when the eye loss is off


def generator_name(blocks: int) -> str:
    """The published file stem of a G with `blocks` AAD blocks (what `swap --blocks` loads)."""
    return f"G_unet_{blocks}block" + ("s" if blocks > 1 else "")


def build_generator(ms: ModelSettings, init: Path | None = None) -> AEINet:
    g = AEINet(AEINetConfig(num_blocks=ms.blocks, id_dim=ms.id_dim, width=ms.g_width))
    if init is None:
        g.init_weights()
        return g
    if not ms.is_published_shape:
        raise InputError("--init-g needs the published generator widths; drop --tiny")
    return load_weights(g, init)  # strict: a file with another block count is a ModelError


def build_discriminator(ms: ModelSettings, init: Path | None = None) -> MultiscaleDiscriminator:
    d = MultiscaleDiscriminator(ndf=ms.d_ndf, n_layers=ms.d_layers, num_d=ms.d_scales)
    if init is None:
        return d
    if (ms.d_ndf, ms.d_layers, ms.d_scales) != (64, 5, 3):
        raise InputError("--init-d needs the published discriminator widths; drop --tiny")
    return load_weights(d, init)


def _published(name: str, path: Path | None, models_dir: Path | None) -> Path:
    if path is not None:
        return path
    from streamswap.models.registry import Registry, RegistryConfig

    return Registry(RegistryConfig.from_env(models_dir=models_dir)).require(name)


def build_identity(ms: ModelSettings, models_dir: Path | None = None) -> nn.Module:
    if ms.identity == "tiny":
        return freeze(IResNet("r18", num_features=ms.id_dim, width=4))
    if ms.identity == "random":  # the published architecture, random weights: for speed benchmarks
        return freeze(IResNet("r100", num_features=ms.id_dim))
    if ms.id_dim != 512:
        raise InputError("the published identity encoder gives 512-d embeddings; use id_dim 512")
    return freeze(build_model("backbone", _published("backbone", ms.arcface_weights, models_dir)))


def build_eyes(ms: ModelSettings, models_dir: Path | None = None) -> EyeHeatmaps:
    if ms.eye_net == "tiny":
        return EyeHeatmaps(tiny_fan())
    if ms.eye_net == "random":
        return EyeHeatmaps(FAN(num_modules=4, num_landmarks=98, end_relu=True))
    fan = build_model("WFLW_4HG", _published("WFLW_4HG", ms.eye_weights, models_dir))
    return EyeHeatmaps(cast(FAN, fan))  # weights.MODEL_BUILDS builds WFLW_4HG as an awl_fan FAN


def build_networks(ms: ModelSettings, *, eyes: bool, init_g: Path | None = None, init_d: Path | None = None,
                   models_dir: Path | None = None) -> Networks:
    """All networks on CPU in float32. Call under a fixed torch seed for reproducible inits."""
    return Networks(build_generator(ms, init_g), build_discriminator(ms, init_d),
                    build_identity(ms, models_dir), build_eyes(ms, models_dir) if eyes else None)
