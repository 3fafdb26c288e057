"""The ghost engine: GHOST's face swap with the published networks, on batches of faces.

Per target face: GHOST's 224 crop (best of five pose templates), resized to 256 in [-1, 1]
(bilinear both ways: GHOST-SPEC does not pin the interpolation of these two resizes);
AEI-Net with the source's ArcFace embedding (fed unnormalised, as GHOST does); optional face
super-resolution; back to 224; 2d106 landmarks of the generated and the target crop give the
adaptive mask (hysteresis per track); paste-back with the inverse transform.

The parts are handed in (`GhostParts`), so the same code runs the published networks
(`load_ghost_parts`) and the tiny random-initialised ones the tests use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from streamswap.blend import paste_back
from streamswap.errors import InputError
from streamswap.faces.align import GHOST_CROP, ghost_align, warp_crops
from streamswap.faces.detect import SCRFDDetector
from streamswap.faces.identity import TorchArcFace, chosen_face
from streamswap.faces.landmarks import Landmark106
from streamswap.faces.records import FaceBatch
from streamswap.masks import GHOST_106, AdaptiveMasker, MaskSettings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from streamswap.models.aei_net import AEINet
    from streamswap.models.registry import Registry
    from streamswap.models.sr import SRGenerator

GENERATOR_SIZE = 256
#: generator(x_t (B, 3, 256, 256) in [-1, 1], z_id (B, 512)) -> (B, 3, 256, 256) in [-1, 1]
Generator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: super_resolution((B, 3, 256, 256) in [0, 1]) -> (B, 3, 256, 256), clamped to [0, 1] after
SuperResolution = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GhostParts:
    """The networks of the ghost engine, ready on one device."""

    detector: SCRFDDetector
    landmarker: Landmark106
    identity: TorchArcFace
    generator: Generator
    super_resolution: SuperResolution | None = None


class GhostAnalyser:
    """SCRFD on every frame of a batch, 2d106 landmarks, ArcFace embeddings when asked.
    __call__(frames (N, 3, H, W) uint8, with_identity) -> FaceBatch on the frames' device."""

    def __init__(self, parts: GhostParts) -> None:
        self.parts = parts

    def __call__(self, frames: torch.Tensor, with_identity: bool) -> FaceBatch:
        faces = self.parts.landmarker(frames, self.parts.detector.detect(frames))
        if with_identity:
            faces = faces.with_embeddings(self.parts.identity.embed(frames, faces))
        return faces


def source_embedding(parts: GhostParts, image: torch.Tensor, index: int | None = None,
                     what: str = "the source image") -> torch.Tensor:
    """The identity to put in: image (1, 3, H, W) uint8 -> (512,) float32, not normalised (GHOST
    feeds the generator the raw embedding). With several faces `index` (left to right) picks one."""
    face = chosen_face(parts.detector.detect(image), index, what)
    m, _ = ghost_align(face.kps)
    crop = warp_crops(image, face.frame_index, m.to(image.device), GHOST_CROP).round_()
    return parts.identity.embed_crops(crop, normalise=False)[0]


def _whole_crop_faces(k: int, device: torch.device) -> FaceBatch:
    """Each of k 224 crops as one face covering it (GHOST runs 2d106 on the whole crop)."""
    box = torch.tensor([[0.0, 0.0, GHOST_CROP, GHOST_CROP]], device=device).expand(k, 4)
    return FaceBatch(n_frames=k, boxes=box.contiguous(), scores=torch.ones(k, device=device),
                     kps=torch.zeros((k, 5, 2), device=device), frame_index=torch.arange(k, device=device))


@dataclass(frozen=True)
class GhostCrops:
    """Faces in GHOST's crop: m (K, 2, 3) frame -> crop, frame_index (K,), target (K, 3, 224, 224)
    float [0, 255] (rounded, as GHOST's uint8 crops)."""

    m: torch.Tensor
    frame_index: torch.Tensor
    target: torch.Tensor


class GhostSwapper:
    """One source identity onto batches of faces.

    __call__(frames (N, 3, H, W) uint8 RGB, faces (smoothed keypoints), keys: track ids) ->
    (N, 3, H, W) uint8 on the frames' device (`frames` itself with inplace=True, else a copy).
    """

    def __init__(self, parts: GhostParts, identity: torch.Tensor, hysteresis_frames: int = 5) -> None:
        self.parts, self.identity = parts, identity
        self.masker = AdaptiveMasker(MaskSettings(scheme=GHOST_106, size=GHOST_CROP, hysteresis_frames=hysteresis_frames))
        self.faces_skipped_nonfinite = 0  # generated faces with NaN/Inf values, left unswapped

    def __call__(self, frames: torch.Tensor, faces: FaceBatch, keys: Sequence[int], *,
                 inplace: bool = False) -> torch.Tensor:
        if len(faces) == 0:
            return frames
        crops = self.align(frames, faces)
        y = self.super_resolve(self.generate(crops))
        # A generator that overflows (fp16) or was trained into NaN gives non-finite values, which
        # the blend would turn into a black face: such faces are left as they are, and counted.
        finite = torch.isfinite(y).flatten(1).all(1)  # one reduction for the whole batch
        if not bool(finite.all()):  # one host sync per batch (the paste-back syncs anyway)
            keep = finite.nonzero().flatten()
            skipped = len(y) - len(keep)
            if not self.faces_skipped_nonfinite:
                log.warning("the generator gave non-finite values (NaN/Inf) for %d face(s): left unswapped", skipped)
            self.faces_skipped_nonfinite += skipped
            if len(keep) == 0:
                return frames if inplace else frames.clone()
            crops = GhostCrops(crops.m[keep], crops.frame_index[keep], crops.target[keep])
            y = y[keep]
            keys = [keys[i] for i in keep.tolist()]
        return self.blend(frames, crops, y, keys, inplace=inplace)

    def forget(self, keys: Sequence[int]) -> None:
        """Drop the per-track state (mask hysteresis) of tracks that ended."""
        self.masker.forget(keys)

    # The phases, separately callable so `bench stages` can time each alone.
    def align(self, frames: torch.Tensor, faces: FaceBatch) -> GhostCrops:
        """GHOST's 224 crops of the faces (best of its five templates), on the frames' device."""
        dev = frames.device
        m, _ = ghost_align(faces.kps.to(dev))
        fidx = faces.frame_index.to(dev)
        return GhostCrops(m, fidx, warp_crops(frames, fidx, m, GHOST_CROP).round_())

    def generate(self, crops: GhostCrops) -> torch.Tensor:
        """AEI-Net on the crops resized to 256: -> (K, 3, 256, 256) float32 in [-1, 1]."""
        x = F.interpolate(crops.target / 127.5 - 1, size=(GENERATOR_SIZE, GENERATOR_SIZE), mode="bilinear",
                          align_corners=False)
        z = self.identity.to(x.device, torch.float32)[None].expand(len(x), -1)
        return self.parts.generator(x, z).float()

    def super_resolve(self, y: torch.Tensor) -> torch.Tensor:
        """The optional face super-resolution: (K, 3, 256, 256) [-1, 1] -> the same (identity without SR)."""
        if self.parts.super_resolution is None:
            return y
        return self.parts.super_resolution((y + 1) / 2).float().clamp(0, 1) * 2 - 1

    def blend(self, frames: torch.Tensor, crops: GhostCrops, y: torch.Tensor, keys: Sequence[int], *,
              inplace: bool = False) -> torch.Tensor:
        """Back to 224, 2d106 on the generated and target crops, adaptive mask, paste-back:
        -> (N, 3, H, W) uint8 (`frames` itself when inplace, else a copy)."""
        k, dev = len(y), y.device
        swapped = ((y.clamp(-1, 1) + 1) * 127.5).round()  # GHOST turns the output into uint8, then resizes
        swapped = F.interpolate(swapped, size=(GHOST_CROP, GHOST_CROP), mode="bilinear", align_corners=False)
        swapped = swapped.clamp(0, 255).round()
        whole = _whole_crop_faces(k, dev)
        gen_lm = self.parts.landmarker.landmarks(swapped.to(torch.uint8), whole)
        tgt_lm = self.parts.landmarker.landmarks(crops.target.to(torch.uint8), whole)
        masks, _ = self.masker(gen_lm, tgt_lm, keys)
        return paste_back(frames, swapped, masks, crops.m, crops.frame_index, inplace=inplace)


def load_ghost_parts(registry: "Registry", device: torch.device, *, blocks: int = 2, sr: bool = False,
                     compile: bool = False, generator: str | Path | None = None) -> GhostParts:
    """The published networks from the model cache (verified), ready on `device`: SCRFD
    (scrfd_10g_bnkps, threshold 0.6 as GHOST), 2d106, GHOST's IResNet-100 (float32: its
    activations pass fp16's range), AEI-Net G_unet_{blocks} (fp16 on CUDA; `generator`: a file of
    your own with that architecture instead, e.g. from `train export`), optional SR."""
    from streamswap.faces.detect import DetectSettings
    from streamswap.models.weights import build_model

    if blocks not in (1, 2, 3):
        raise InputError(f"--blocks {blocks}: GHOST publishes 1, 2 and 3 blocks")
    g_name = {1: "G_unet_1block", 2: "G_unet_2blocks", 3: "G_unet_3blocks"}[blocks]
    detector = SCRFDDetector.load(registry.require("scrfd_10g_bnkps"), DetectSettings(score_threshold=0.6),
                                  device=device)
    landmarker = Landmark106.load(registry.require("2d106det"), device=device)
    return assemble_ghost_parts(detector, landmarker, build_model("backbone", registry.require("backbone")),
                                build_model(g_name, generator or registry.require(g_name)), device,  # type: ignore[arg-type]
                                sr_net=build_model("10_net_G", registry.require("10_net_G")) if sr else None,  # type: ignore[arg-type]
                                compile=compile)


def assemble_ghost_parts(detector: SCRFDDetector, landmarker: Landmark106, identity_net: torch.nn.Module,
                         generator_net: AEINet, device: torch.device, *, sr_net: SRGenerator | None = None,
                         compile: bool = False) -> GhostParts:
    """GhostParts from loaded (or random-initialised) networks: IResNet float32, the generator
    prepared for inference (fp16 + channels_last on CUDA, optionally compiled), SR in GHOST's mode."""
    from streamswap.models.inference import InferenceSettings, prepare_generator, prepare_sr, run_generator

    identity = TorchArcFace(identity_net, device, fp16=False)
    settings = InferenceSettings(device=str(device), compile=compile)
    net = prepare_generator(generator_net, settings)

    def generator(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return run_generator(net, x, z, settings)

    super_resolution = None
    if sr_net is not None:
        sr_ready = prepare_sr(sr_net, str(device))

        def super_resolution(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return sr_ready(x)

    return GhostParts(detector, landmarker, identity, generator, super_resolution)
