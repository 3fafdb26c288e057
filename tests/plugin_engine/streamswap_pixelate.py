"""A third engine in one file, registered as a plugin (the `streamswap.engines` entry point of the
dist-info beside it): it pixelates every tracked face instead of swapping it. It reuses the lite
engine's dlib analysis, and meets the whole `Engine` protocol, phased swapper included, so
`swap`, `live`, `batch`, `bench` and `doctor` run it unchanged (tests/test_engine_plugin.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from streamswap.checks import Check
from streamswap.engines.base import EngineDefaults, EngineModels, EngineSession, SourceIdentity, effective_detect_every
from streamswap.engines.lite import LiteAnalyser
from streamswap.errors import InputError
from streamswap.faces.lite import LITE_MATCH_THRESHOLD, DlibDetector, LiteSettings
from streamswap.faces.records import FaceBatch
from streamswap.models.registry import Registry
from streamswap.options import SwapOptions

BLOCKS = 4  # a face becomes BLOCKS x BLOCKS cells


@dataclass(frozen=True)
class BoxCrops:
    """boxes (K, 4) int64 frame pixels (x1, y1, x2, y2), frame_index (K,), target (K, 3, B, B) float."""

    boxes: torch.Tensor
    frame_index: torch.Tensor
    target: torch.Tensor


class Pixelator:
    """Pixelates the box of every face (the phased swapper protocol)."""

    refine_stage = None

    def __init__(self) -> None:
        self.faces_skipped_nonfinite = 0

    def __call__(self, frames: torch.Tensor, faces: FaceBatch, keys: Sequence[int], *,
                 inplace: bool = False) -> torch.Tensor:
        if len(faces) == 0:
            return frames
        crops = self.align(frames, faces)
        return self.blend(frames, crops, self.generate(crops), keys, inplace=inplace)

    def forget(self, keys: Sequence[int]) -> None:
        """No per-track state."""

    def align(self, frames: torch.Tensor, faces: FaceBatch) -> BoxCrops:
        h, w = frames.shape[-2:]
        b = faces.boxes.round().long()
        b[:, 0::2] = b[:, 0::2].clamp(0, w - 1)
        b[:, 1::2] = b[:, 1::2].clamp(0, h - 1)
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
        cells = [F.adaptive_avg_pool2d(frames[int(i), :, y1:y2, x1:x2].float()[None], BLOCKS)
                 for (x1, y1, x2, y2), i in zip(b.tolist(), faces.frame_index.tolist())]
        return BoxCrops(b, faces.frame_index, torch.cat(cells))

    def generate(self, crops: BoxCrops) -> tuple[torch.Tensor, ...]:
        return (crops.target,)

    def refine(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return generated

    def keep(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (generated[0].round().clamp(0, 255).to("cpu", torch.uint8),)

    def restore(self, kept: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
        return (kept[0].to(device).float(),)

    def blend(self, frames: torch.Tensor, crops: BoxCrops, generated: tuple[torch.Tensor, ...],
              keys: Sequence[int], *, inplace: bool = False) -> torch.Tensor:
        out = frames if inplace else frames.clone()
        for (x1, y1, x2, y2), i, cells in zip(crops.boxes.tolist(), crops.frame_index.tolist(), generated[0]):
            out[int(i), :, y1:y2, x1:x2] = F.interpolate(cells[None], size=(y2 - y1, x2 - x1),
                                                         mode="nearest")[0].round().to(out.dtype)
        return out


class PixelateEngine:
    name = "pixelate"
    summary = "pixelates every face (a test plugin)"
    auto_rank = None  # never chosen by --engine auto
    defaults = EngineDefaults(detect_every=5, similarity=LITE_MATCH_THRESHOLD)

    def unready(self, registry: Registry) -> str | None:
        return None

    def checks(self, registry: Registry, needed: bool) -> list[Check]:
        return [Check("pixelate (plugin)", True, f"loaded from {Path(__file__).name}", needed=needed)]

    def model_files(self, options: SwapOptions) -> dict[str, str | None]:
        return {}

    def fetch(self, options: SwapOptions) -> None:
        """Nothing to fetch."""

    def load(self, options: SwapOptions, device: torch.device) -> EngineModels:
        return EngineModels(self.name, device, DlibDetector(LiteSettings(max_side=640)))

    def stand_in(self, options: SwapOptions, device: torch.device, workdir: Path, *, width: float = 1.0) -> EngineModels:
        return self.load(options, device)

    def source_identity(self, models: EngineModels, options: SwapOptions) -> SourceIdentity:
        if options.target_faces:
            raise InputError("the pixelate engine pixelates everyone: no --target-face")
        return SourceIdentity(tuple(0 for _ in options.sources), None)

    def session(self, models: EngineModels, identity: SourceIdentity, options: SwapOptions) -> EngineSession:
        every = effective_detect_every(self, options)
        return EngineSession(LiteAnalyser(models.nets, None, every), [Pixelator() for _ in identity.sources], None,
                             self.defaults.similarity)


ENGINE = PixelateEngine()
