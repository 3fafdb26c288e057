"""The ghost engine: GHOST's face swap with the published networks, on batches of faces.

Per target face: GHOST's 224 crop (best of five pose templates), resized to 256 in [-1, 1]
(bilinear both ways: GHOST-SPEC does not pin the interpolation of these two resizes);
AEI-Net with the source's ArcFace embedding (fed unnormalised, as GHOST does); optional face
super-resolution; back to 224; 2d106 landmarks of the generated and the target crop give the
adaptive mask (hysteresis per track); paste-back with the inverse transform.

The parts are handed in (`GhostParts`), so the same code runs the published networks
(`load_ghost_parts`) and random-initialised ones (`stand_in_ghost_parts`, for tests and
benchmarks). `ENGINE` is the engine seam (`streamswap.engines.base.Engine`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

from streamswap.blend import paste_back
from streamswap.engines.base import EngineDefaults, EngineModels, EngineSession, SourceIdentity, threshold_of
from streamswap.errors import InputError
from streamswap.faces.align import GHOST_CROP, ghost_align, warp_crops
from streamswap.faces.detect import DetectSettings, SCRFDDetector
from streamswap.faces.identity import GHOST_MATCH_THRESHOLD, TorchArcFace, chosen_face
from streamswap.faces.landmarks import Landmark106
from streamswap.faces.records import FaceBatch
from streamswap.masks import GHOST_106, AdaptiveMasker, MaskSettings
from streamswap.transfer import host_tensors

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from streamswap.checks import Check
    from streamswap.faces.onnx_runtime import Runtime
    from streamswap.models.aei_net import AEINet
    from streamswap.models.registry import Registry
    from streamswap.models.sr import SRGenerator
    from streamswap.options import SwapOptions

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


def source_embedding(
    parts: GhostParts, image: torch.Tensor, index: int | None = None, what: str = "the source image"
) -> torch.Tensor:
    """The identity to put in: image (1, 3, H, W) uint8 -> (512,) float32, not normalised (GHOST
    feeds the generator the raw embedding). With several faces `index` (left to right) picks one."""
    face = chosen_face(parts.detector.detect(image), index, what)
    m, _ = ghost_align(face.kps)
    crop = warp_crops(image, face.frame_index, m, GHOST_CROP).round_()
    return parts.identity.embed_crops(crop, normalise=False)[0]


@dataclass(frozen=True)
class GhostCrops:
    """Faces in GHOST's crop: m (K, 2, 3) frame -> crop and frame_index (K,) where the faces were
    (host memory, from the tracker), target (K, 3, 224, 224) float [0, 255] on the frames' device
    (rounded, as GHOST's uint8 crops)."""

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
        self.masker = AdaptiveMasker(
            MaskSettings(scheme=GHOST_106, size=GHOST_CROP, hysteresis_frames=hysteresis_frames)
        )
        self.faces_skipped_nonfinite = 0  # generated faces with NaN/Inf values, left unswapped
        parts.landmarker.prepare_crops(parts.identity.device, GHOST_CROP)  # its one upload, now

    @property
    def refine_stage(self) -> str | None:
        return "super-resolution" if self.parts.super_resolution is not None else None

    def __call__(
        self, frames: torch.Tensor, faces: FaceBatch, keys: Sequence[int], *, inplace: bool = False
    ) -> torch.Tensor:
        if len(faces) == 0:
            return frames
        crops = self.align(frames, faces)
        (y,) = self.refine(self.generate(crops))
        # A generator that overflows (fp16) or was trained into NaN gives non-finite values, which
        # the blend would turn into a black face: such faces are left as they are, and counted.
        finite = torch.isfinite(y).flatten(1).all(1)  # one reduction for the whole batch
        (ok,) = host_tensors([finite])  # one host sync per batch
        if not bool(ok.all()):
            keep = ok.nonzero().flatten()
            skipped = len(y) - len(keep)
            if not self.faces_skipped_nonfinite:
                log.warning("the generator gave non-finite values (NaN/Inf) for %d face(s): left unswapped", skipped)
            self.faces_skipped_nonfinite += skipped
            if len(keep) == 0:
                return frames if inplace else frames.clone()
            kept = keep.to(y.device)
            crops = GhostCrops(crops.m[keep], crops.frame_index[keep], crops.target[kept])
            y = y[kept]
            keys = [keys[i] for i in keep.tolist()]
        return self.blend(frames, crops, (y,), keys, inplace=inplace)

    def forget(self, keys: Sequence[int]) -> None:
        """Drop the per-track state (mask hysteresis) of tracks that ended."""
        self.masker.forget(keys)

    # The phases, separately callable so `bench stages` can time each alone.
    def align(self, frames: torch.Tensor, faces: FaceBatch) -> GhostCrops:
        """GHOST's 224 crops of the faces (best of its five templates), on the frames' device."""
        # the geometry where the faces are (the host, after tracking): no sync; warp_crops and
        # paste_back read their regions there
        m, _ = ghost_align(faces.kps)
        return GhostCrops(m, faces.frame_index, warp_crops(frames, faces.frame_index, m, GHOST_CROP).round_())

    def generate(self, crops: GhostCrops) -> tuple[torch.Tensor]:
        """AEI-Net on the crops resized to 256: -> ((K, 3, 256, 256) float32 in [-1, 1],)."""
        x = F.interpolate(
            crops.target / 127.5 - 1, size=(GENERATOR_SIZE, GENERATOR_SIZE), mode="bilinear", align_corners=False
        )
        z = self.identity.to(x.device, torch.float32)[None].expand(len(x), -1)
        return (self.parts.generator(x, z).float(),)

    def refine(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        """The optional face super-resolution: ((K, 3, 256, 256) [-1, 1],) -> the same (unchanged
        without SR)."""
        (y,) = generated
        if self.parts.super_resolution is None:
            return (y,)
        return (self.parts.super_resolution((y + 1) / 2).float().clamp(0, 1) * 2 - 1,)

    def keep(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        """The generated faces as the seed holds them: ((K, 3, 256, 256) uint8 CPU,), (y + 1) * 127.5."""
        return (((generated[0] + 1) * 127.5).round().clamp(0, 255).to("cpu", torch.uint8),)

    def restore(self, kept: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor]:
        """Inverse of `keep`: float32 [-1, 1] on `device`."""
        return (kept[0].to(device).float() / 127.5 - 1,)

    def blend(
        self,
        frames: torch.Tensor,
        crops: GhostCrops,
        generated: tuple[torch.Tensor, ...],
        keys: Sequence[int],
        *,
        inplace: bool = False,
    ) -> torch.Tensor:
        """Back to 224, 2d106 on the generated and target crops, adaptive mask, paste-back:
        -> (N, 3, H, W) uint8 (`frames` itself when inplace, else a copy)."""
        (y,) = generated
        swapped = ((y.clamp(-1, 1) + 1) * 127.5).round()  # GHOST turns the output into uint8, then resizes
        swapped = F.interpolate(swapped, size=(GHOST_CROP, GHOST_CROP), mode="bilinear", align_corners=False)
        swapped = swapped.clamp(0, 255).round()
        gen_lm = self.parts.landmarker.landmarks_in_crops(swapped.to(torch.uint8))
        tgt_lm = self.parts.landmarker.landmarks_in_crops(crops.target.to(torch.uint8))
        masks, _ = self.masker(gen_lm, tgt_lm, keys)
        return paste_back(frames, swapped, masks, crops.m, crops.frame_index, inplace=inplace)


def load_ghost_parts(
    registry: Registry,
    device: torch.device,
    *,
    blocks: int = 2,
    sr: bool = False,
    compile: bool = False,
    generator: str | Path | None = None,
    runtime: Runtime | None = None,
) -> GhostParts:
    """The published networks from the model cache (verified), ready on `device`: SCRFD
    (scrfd_10g_bnkps, threshold 0.6 as GHOST), 2d106, GHOST's IResNet-100 (float32: its
    activations pass fp16's range), AEI-Net G_unet_{blocks} (fp16 on CUDA; `generator`: a file of
    your own with that architecture instead, e.g. from `train export`), optional SR. runtime:
    the ONNX face models' (None: the device's default)."""
    from streamswap.models.weights import build_model

    if blocks not in (1, 2, 3):
        raise InputError(f"--blocks {blocks}: GHOST publishes 1, 2 and 3 blocks")
    g_name = {1: "G_unet_1block", 2: "G_unet_2blocks", 3: "G_unet_3blocks"}[blocks]
    detector = SCRFDDetector.load(
        registry.require("scrfd_10g_bnkps"), DetectSettings(score_threshold=0.6), runtime=runtime, device=device
    )
    landmarker = Landmark106.load(registry.require("2d106det"), runtime=runtime, device=device)
    identity_net = build_model("backbone", registry.require("backbone"))
    # casts: weights.MODEL_BUILDS builds G_unet_* as an AEINet and 10_net_G as an SRGenerator
    generator_net = cast("AEINet", build_model(g_name, generator or registry.require(g_name)))
    sr_net = cast("SRGenerator", build_model("10_net_G", registry.require("10_net_G"))) if sr else None
    return assemble_ghost_parts(
        detector, landmarker, identity_net, generator_net, device, sr_net=sr_net, compile=compile
    )


def assemble_ghost_parts(
    detector: SCRFDDetector,
    landmarker: Landmark106,
    identity_net: torch.nn.Module,
    generator_net: AEINet,
    device: torch.device,
    *,
    sr_net: SRGenerator | None = None,
    compile: bool = False,
) -> GhostParts:
    """GhostParts from loaded (or random-initialised) networks: IResNet float32, the generator
    prepared for inference (fp16 + channels_last on CUDA, optionally compiled), SR in GHOST's mode."""
    from streamswap.models.buckets import in_buckets
    from streamswap.models.inference import InferenceSettings, prepare_generator, prepare_sr, run_generator

    identity = TorchArcFace(identity_net, device, fp16=False)
    settings = InferenceSettings(device=str(device), compile=compile)
    net = prepare_generator(generator_net, settings)

    def generator(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # a bounded set of batch shapes for cuDNN's autotuner and compile (on a GPU, or compiled)
        return in_buckets(lambda a, b: run_generator(net, a, b, settings), x, z, enabled=x.is_cuda or compile)

    super_resolution = None
    if sr_net is not None:
        sr_ready = prepare_sr(sr_net, str(device))

        def super_resolution(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return sr_ready(x)

    return GhostParts(detector, landmarker, identity, generator, super_resolution)


def stand_in_ghost_parts(
    workdir: Path,
    device: torch.device,
    *,
    width: float = 1.0,
    blocks: int = 2,
    sr: bool = False,
    compile: bool = False,
    seed: int = 0,
    runtime: Runtime | None = None,
    detect: DetectSettings | None = None,
) -> GhostParts:
    """GhostParts without the published weights: random-initialised networks of the real
    architectures (AEI-Net, IResNet, optional LIP-SPADE SR) and the ONNX stand-ins for SCRFD and
    2d106, written to `workdir`. Throughput of the generator and the blend is the real one at
    width 1 (GHOST's full size, the generator in fp16 on CUDA as the published one runs); width
    < 1 shrinks AEI-Net's and SR's channels (CPU harness runs). The stand-in detector and
    landmarker are lighter than the published ones (their time is not representative).
    runtime: the face models' ONNX runtime (None: the device's default; "torch" is what CUDA
    runs, so a CPU host-sync audit with it walks the GPU's code); detect: the detector's settings
    (default: at most 4 faces per frame)."""
    from streamswap.models.aei_net import AEINet, AEINetConfig
    from streamswap.models.arcface import IResNet
    from streamswap.models.stand_ins import export_fake_2d106, export_fake_scrfd

    torch.manual_seed(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    detector = SCRFDDetector.load(
        export_fake_scrfd(workdir / "scrfd_stand_in.onnx"),
        detect or DetectSettings(max_faces=4),
        runtime=runtime,
        device=device,
    )
    landmarker = Landmark106.load(export_fake_2d106(workdir / "2d106_stand_in.onnx"), runtime=runtime, device=device)
    identity = IResNet("r100" if width >= 1 else "r18")
    generator = AEINet(AEINetConfig(num_blocks=blocks, width=width))
    sr_net = None
    if sr:
        from streamswap.models.sr import SRConfig, SRGenerator

        sr_net = SRGenerator(SRConfig(ngf=max(4, round(SRConfig.ngf * width))))
    return assemble_ghost_parts(detector, landmarker, identity, generator, device, sr_net=sr_net, compile=compile)


def _runtime(options: SwapOptions) -> Runtime | None:
    return None if options.face_runtime == "auto" else cast("Runtime", options.face_runtime)


def ghost_models(parts: GhostParts) -> EngineModels:
    """Networks of your own (e.g. tiny random-initialised ones) as the ghost engine's models."""
    return EngineModels("ghost", parts.identity.device, parts)


class GhostEngine:
    """GHOST (AEI-Net with an ArcFace identity, adaptive masks, optional SR): the quality engine.
    Detects on every frame (SCRFD is batched and cheap next to the generator)."""

    name = "ghost"
    summary = "GHOST: AEI-Net, ArcFace identity, adaptive masks"
    auto_rank: int | None = 0
    defaults = EngineDefaults(detect_every=None, similarity=GHOST_MATCH_THRESHOLD)

    def unready(self, registry: Registry) -> str | None:
        from streamswap.models.catalog import ghost_model_names

        if all(registry.find(registry.spec(n)) is not None for n in ghost_model_names()):
            return None
        return (
            f"GHOST models not found (run `streamswap models fetch {' '.join(ghost_model_names())}` for GHOST quality)"
        )

    def checks(self, registry: Registry, needed: bool) -> list[Check]:
        from streamswap.checks import Check
        from streamswap.models.catalog import ghost_model_names
        from streamswap.models.registry import Status

        states = [registry.state(registry.spec(n)) for n in ghost_model_names()]
        missing = [s.spec.name for s in states if s.status is Status.MISSING]
        bad = [s.spec.name for s in states if s.status is Status.MISMATCH]
        if bad:
            return [
                Check(
                    "ghost models",
                    False,
                    f"hash mismatch: {', '.join(bad)}",
                    "delete them and run: streamswap models fetch " + " ".join(bad),
                    needed=True,
                )
            ]
        if missing:
            return [
                Check(
                    "ghost models",
                    False if needed else None,
                    f"missing: {', '.join(missing)}",
                    "streamswap models fetch " + " ".join(missing),
                    needed,
                )
            ]
        return [Check("ghost models", True, f"present and verified in {registry.cache_dir}", needed=needed)]

    def model_files(self, options: SwapOptions) -> dict[str, str | None]:
        from streamswap.errors import StreamSwapError
        from streamswap.files import sha256_of
        from streamswap.models.catalog import ghost_model_names
        from streamswap.models.registry import Registry, RegistryConfig

        registry = Registry(RegistryConfig.from_env())
        out: dict[str, str | None] = {}
        for name in ghost_model_names(options.blocks, options.sr, options.generator is not None):
            spec = registry.spec(name)
            try:
                expected, _ = registry.expected_hash(spec)
                if expected is None and (path := registry.find(spec)) is not None:
                    expected = sha256_of(path)
            except (StreamSwapError, OSError):
                expected = None
            out[spec.filename] = expected
        if options.generator is not None:
            try:
                out[f"generator {Path(options.generator).name}"] = sha256_of(options.generator)
            except OSError:
                out[f"generator {Path(options.generator).name}"] = None
        return out

    def fetch(self, options: SwapOptions) -> None:
        from streamswap.models.catalog import ghost_model_names
        from streamswap.models.registry import Registry, RegistryConfig

        registry = Registry(RegistryConfig.from_env())
        for name in ghost_model_names(options.blocks, options.sr, options.generator is not None):
            registry.require(name)

    def load(self, options: SwapOptions, device: torch.device) -> EngineModels:
        from streamswap.models.registry import Registry, RegistryConfig

        return ghost_models(
            load_ghost_parts(
                Registry(RegistryConfig.from_env()),
                device,
                blocks=options.blocks,
                sr=options.sr,
                compile=options.compile,
                generator=options.generator,
                runtime=_runtime(options),
            )
        )

    def stand_in(
        self, options: SwapOptions, device: torch.device, workdir: Path, *, width: float = 1.0
    ) -> EngineModels:
        return ghost_models(
            stand_in_ghost_parts(
                workdir,
                device,
                width=width,
                blocks=options.blocks,
                sr=options.sr,
                compile=options.compile,
                runtime=_runtime(options),
            )
        )

    def source_identity(self, models: EngineModels, options: SwapOptions) -> SourceIdentity:
        from streamswap.faces.identity import largest_face
        from streamswap.faces.image import read_image

        parts: GhostParts = models.nets
        device = parts.identity.device
        sources = tuple(
            source_embedding(parts, read_image(p, device), options.source_face_index, what=f"source {p}").cpu()
            for p in options.sources
        )
        targets = None
        if options.target_faces:
            refs = []
            for path in options.target_faces:
                image = read_image(path, device)
                face = largest_face(parts.detector.detect(image), what=f"target face {path}")
                refs.append(parts.identity.embed(image, face))
            targets = torch.cat(refs).cpu().numpy()
        return SourceIdentity(sources, targets)

    def session(self, models: EngineModels, identity: SourceIdentity, options: SwapOptions) -> EngineSession:
        parts: GhostParts = models.nets
        device = parts.identity.device
        faces = f"SCRFD on {parts.detector.runner.provider}, 2d106 on {parts.landmarker.runner.provider}"
        sr = ", SR" if parts.super_resolution is not None else ""
        return EngineSession(
            GhostAnalyser(parts),
            [GhostSwapper(parts, e.to(device)) for e in identity.sources],
            identity.targets,
            threshold_of(self, options),
            backends={"analyse": f"{faces}, ArcFace on {device}", "swap": f"AEI-Net{sr} on {device}"},
        )


ENGINE = GhostEngine()
