"""The model catalogue: what StreamSwap can use, where it is published, under which licence.

Data only. No published SHA-256 sums exist for these files (neither sber-swap nor insightface
publish any), so every entry is pinned on first use (see `registry.py`); an entry that gets
a `sha256` here is verified against it instead. Before a download is pinned (or accepted at
all) its size must fall in the entry's `size_range`: by default half to twice `approx_mb`, loose
enough for a re-export, tight enough to refuse an error page or an endless body.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamswap.errors import InputError

MB = 1_000_000
MIB = 1 << 20


def size_range(approx_mb: int, min_bytes: int | None, max_bytes: int | None) -> tuple[int, int]:
    """(min, max) bytes a file of about `approx_mb` may have: explicit bounds win, else 0.5x..2x
    (the low bound in MB, the high in MiB, so a figure rounded either way still fits)."""
    low = min_bytes if min_bytes is not None else approx_mb * MB // 2
    high = max_bytes if max_bytes is not None else approx_mb * MIB * 2
    return low, high


GHOST_RELEASES = "https://github.com/sberbank-ai/sber-swap/releases/download"
INSIGHTFACE_RELEASES = "https://github.com/deepinsight/insightface/releases/download"

GHOST_LICENCE = "Apache-2.0 (GHOST / sber-swap)"
INSIGHTFACE_LICENCE = "non-commercial research only (insightface)"
SR_LICENCE = "CC BY-NC-SA 4.0 (SPADE/HiFaceGAN lineage)"
AWL_LICENCE = "Apache-2.0 (AdaptiveWingLoss, via sber-swap)"


@dataclass(frozen=True)
class Pack:
    """A zip archive that holds several model files (insightface's model packs)."""

    name: str
    url: str
    approx_mb: int
    licence: str
    sha256: str | None = None
    min_bytes: int | None = None  # None: derived from approx_mb (see `size_range`)
    max_bytes: int | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def size_range(self) -> tuple[int, int]:
        return size_range(self.approx_mb, self.min_bytes, self.max_bytes)


@dataclass(frozen=True)
class ModelSpec:
    """One model file. `url` is its own download; `pack` names the archive holding it instead."""

    name: str
    purpose: str
    filename: str
    approx_mb: int
    licence: str
    url: str | None = None
    pack: str | None = None
    sha256: str | None = None
    min_bytes: int | None = None  # None: derived from approx_mb (see `size_range`)
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.pack is None):
            raise ValueError(f"{self.name}: give exactly one of url and pack")

    @property
    def size_range(self) -> tuple[int, int]:
        return size_range(self.approx_mb, self.min_bytes, self.max_bytes)


def _ghost(tag: str, filename: str) -> str:
    return f"{GHOST_RELEASES}/{tag}/{filename}"


PACKS: tuple[Pack, ...] = (
    Pack("buffalo_l", f"{INSIGHTFACE_RELEASES}/v0.7/buffalo_l.zip", 288, INSIGHTFACE_LICENCE),
    Pack("antelopev2", f"{INSIGHTFACE_RELEASES}/v0.7/antelopev2.zip", 361, INSIGHTFACE_LICENCE),
)

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "G_unet_1block",
        "AEI-Net generator, 1 AAD block per ResBlk",
        "G_unet_1block.pth",
        520,
        GHOST_LICENCE,
        url=_ghost("sber-swap-v2.0", "G_unet_1block.pth"),
    ),
    ModelSpec(
        "G_unet_2blocks",
        "AEI-Net generator, 2 AAD blocks (GHOST's main model)",
        "G_unet_2blocks.pth",
        740,
        GHOST_LICENCE,
        url=_ghost("sber-swap-v2.0", "G_unet_2blocks.pth"),
    ),
    ModelSpec(
        "G_unet_3blocks",
        "AEI-Net generator, 3 AAD blocks",
        "G_unet_3blocks.pth",
        960,
        GHOST_LICENCE,
        url=_ghost("sber-swap-v2.0", "G_unet_3blocks.pth"),
    ),
    ModelSpec(
        "D_unet_1block",
        "multiscale PatchGAN discriminator (training, 1-block G)",
        "D_unet_1block.pth",
        130,
        GHOST_LICENCE,
        url=_ghost("sber-swap-v2.0", "D_unet_1block.pth"),
    ),
    ModelSpec(
        "D_unet_2blocks",
        "multiscale PatchGAN discriminator (training, 2-block G)",
        "D_unet_2blocks.pth",
        130,
        GHOST_LICENCE,
        url=_ghost("sber-swap-v2.0", "D_unet_2blocks.pth"),
    ),
    ModelSpec(
        "D_unet_3blocks",
        "multiscale PatchGAN discriminator (training, 3-block G)",
        "D_unet_3blocks.pth",
        130,
        GHOST_LICENCE,
        url=_ghost("sber-swap-v2.0", "D_unet_3blocks.pth"),
    ),
    ModelSpec(
        "backbone",
        "ArcFace IResNet-100 identity encoder (GHOST's)",
        "backbone.pth",
        250,
        GHOST_LICENCE,
        url=_ghost("arcface", "backbone.pth"),
    ),
    ModelSpec(
        "10_net_G",
        "face super-resolution generator (LIP-SPADE)",
        "10_net_G.pth",
        290,
        SR_LICENCE,
        url=_ghost("super-res", "10_net_G.pth"),
    ),
    ModelSpec(
        "WFLW_4HG",
        "AdaptiveWingLoss eye-landmark network (training eye loss)",
        "WFLW_4HG.pth",
        95,
        AWL_LICENCE,
        url=_ghost("awl_detector", "WFLW_4HG.pth"),
    ),
    ModelSpec(
        "scrfd_10g_bnkps",
        "SCRFD face detector with 5 keypoints (GHOST's)",
        "scrfd_10g_bnkps.onnx",
        17,
        INSIGHTFACE_LICENCE,
        url=_ghost("antelope", "scrfd_10g_bnkps.onnx"),
    ),
    ModelSpec(
        "glintr100",
        "ArcFace R100 ONNX recogniser (antelope)",
        "glintr100.onnx",
        250,
        INSIGHTFACE_LICENCE,
        url=_ghost("antelope", "glintr100.onnx"),
    ),
    ModelSpec(
        "det_10g",
        "SCRFD face detector with 5 keypoints (buffalo_l)",
        "det_10g.onnx",
        17,
        INSIGHTFACE_LICENCE,
        pack="buffalo_l",
    ),
    ModelSpec(
        "w600k_r50",
        "ArcFace R50 ONNX recogniser (buffalo_l)",
        "w600k_r50.onnx",
        167,
        INSIGHTFACE_LICENCE,
        pack="buffalo_l",
    ),
    ModelSpec(
        "2d106det",
        "106-point dense face landmarks (adaptive mask)",
        "2d106det.onnx",
        5,
        INSIGHTFACE_LICENCE,
        pack="buffalo_l",
    ),
)


def ghost_model_names(blocks: int = 2, sr: bool = False, own_generator: bool = False) -> tuple[str, ...]:
    """The models the ghost engine loads (`engines.ghost.load_ghost_parts`) for these options:
    SCRFD, 2d106, the ArcFace backbone, G_unet_{blocks} (unless a generator of one's own), SR."""
    generator = {1: "G_unet_1block", 2: "G_unet_2blocks", 3: "G_unet_3blocks"}.get(blocks)
    if generator is None:
        raise InputError(f"--blocks {blocks}: GHOST publishes 1, 2 and 3 blocks")
    return (
        "scrfd_10g_bnkps",
        "2d106det",
        "backbone",
        *(() if own_generator else (generator,)),
        *(("10_net_G",) if sr else ()),
    )


def find_model(name: str) -> ModelSpec | None:
    """The catalogue entry called `name` (or whose file is called `name`), or None."""
    for spec in MODELS:
        if name in (spec.name, spec.filename):
            return spec
    return None


def find_pack(name: str) -> Pack | None:
    """The pack called `name` (or whose archive is called `name`), or None."""
    for pack in PACKS:
        if name in (pack.name, pack.filename):
            return pack
    return None
