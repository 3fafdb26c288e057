"""Training settings: frozen dataclasses with GHOST's defaults, built once by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from streamswap.errors import InputError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class LossWeights:
    """GHOST's loss weights; the eye loss is off by default (enable it after the first epochs)."""

    adv: float = 1.0
    attr: float = 10.0
    id: float = 20.0
    rec: float = 10.0
    eyes: float = 0.0


@dataclass(frozen=True)
class ModelSettings:
    """Which networks to train and with which frozen helpers.

    Published widths by default (G_unet_{blocks}, D_unet_*, IResNet-100 `backbone.pth`, AWL
    `WFLW_4HG.pth`). `tiny()` gives random networks a CPU runs in seconds (CI smoke runs)."""

    blocks: int = 2
    g_width: float = 1.0        # AEI-Net channel multiplier (1.0 = published)
    id_dim: int = 512           # identity embedding size (IResNet output = G input)
    d_ndf: int = 64
    d_layers: int = 5
    d_scales: int = 3
    # frozen helpers: "published" loads the weight file (path below or the model cache); "tiny" is a
    # tiny random network; "random" the published architecture with random weights (benchmarks)
    identity: Literal["published", "tiny", "random"] = "published"
    eye_net: Literal["published", "tiny", "random"] = "published"
    arcface_weights: Path | None = None   # backbone.pth; None = find it in the model cache
    eye_weights: Path | None = None       # WFLW_4HG.pth; None = find it in the model cache

    @classmethod
    def tiny(cls, blocks: int = 1) -> ModelSettings:
        """Random tiny networks (AEI-Net width 1/32, D ndf 4, IResNet-18 width 4, FAN 1 hourglass)."""
        return cls(blocks=blocks, g_width=1 / 32, id_dim=64, d_ndf=4, d_layers=3, d_scales=2,
                   identity="tiny", eye_net="tiny")

    @property
    def is_published_shape(self) -> bool:
        """True when G and D have the published layouts (fine-tuning and export to `swap` need it)."""
        return self.g_width == 1.0 and self.id_dim == 512


@dataclass(frozen=True)
class TrainSettings:
    """One training run. `batch_size` is per process (GHOST: 16 on one GPU); with torchrun the
    effective batch is batch_size x world size."""

    out_dir: Path
    steps: int = 100_000
    batch_size: int = 16
    lr: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 1e-4
    scheduler: bool = False          # GHOST's optional StepLR
    scheduler_step: int = 5000
    scheduler_gamma: float = 0.2
    weights: LossWeights = field(default_factory=LossWeights)
    model: ModelSettings = field(default_factory=ModelSettings)
    precision: Precision = "fp32"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3        # newest N kept; 0 = keep all
    log_every: int = 10
    image_every: int = 500
    fixed_batch_size: int = 4        # the fixed batch whose reconstruction loss is tracked
    seed: int = 0
    device: str = "auto"             # auto = cuda:LOCAL_RANK when CUDA exists, else cpu
    init_g: Path | None = None       # fine-tune from a published G_unet_*.pth
    init_d: Path | None = None       # ... and D_unet_*.pth
    resume: bool = False             # continue from the newest checkpoint in out_dir
    models_dir: Path | None = None   # where published helper weights are (else the model cache)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "image_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def log_dir(self) -> Path:
        return self.out_dir / "logs"


# `train prepare` (its settings here, torch-free, so the command line is built without torch)
DETECTORS = ("lite", "scrfd")
TEMPLATES = ("ghost", "arcface")
FORMATS = ("jpg", "png")
# settings that change what a crop looks like: a resumed run must use the same ones
CROP_KEYS = ("detector", "template", "size", "image_format", "min_face")


@dataclass(frozen=True)
class PrepareSettings:
    """input: folder of identity sub-folders (or loose files); output: dataset folder.
    every: keep every N-th video frame; max_per_video: most crops per video (0: no limit);
    detector: "lite" (dlib) or "scrfd"; scrfd_model: SCRFD ONNX path (None: the model cache,
    `models_dir` as `streamswap models`); template: "ghost" or "arcface"; size: crop side (a
    multiple of 112); min_face: smallest usable face box side (px); image_format: "jpg" (GHOST
    keeps VGGFace2's JPEGs; DALI decodes them on the GPU) or "png"; jpeg_quality; device: where
    detection and warping run; save_every: photos between manifest saves."""

    input: Path
    output: Path
    every: int = 10
    max_per_video: int = 0
    detector: str = "lite"
    scrfd_model: Path | None = None
    models_dir: Path | None = None
    template: str = "ghost"
    size: int = 224
    min_face: int = 64
    image_format: str = "jpg"
    jpeg_quality: int = 95
    device: str = "cpu"
    save_every: int = 50

    def __post_init__(self) -> None:
        problems = [
            (self.every >= 1, f"--every must be >= 1, got {self.every}"),
            (self.max_per_video >= 0, f"--max-per-video must be >= 0, got {self.max_per_video}"),
            (self.detector in DETECTORS, f"--detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}"),
            (self.template in TEMPLATES, f"--template must be one of {', '.join(TEMPLATES)}, got {self.template!r}"),
            (self.size > 0 and self.size % 112 == 0, f"crop size must be a multiple of 112, got {self.size}"),
            (self.min_face >= 0, f"--min-face must be >= 0, got {self.min_face}"),
            (self.image_format in FORMATS, f"--format must be one of {', '.join(FORMATS)}, got {self.image_format!r}"),
            (1 <= self.jpeg_quality <= 100, f"JPEG quality must be in 1..100, got {self.jpeg_quality}"),
            (self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}"),
        ]
        for ok, message in problems:
            if not ok:
                raise InputError(message)

    def crop_settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CROP_KEYS}
