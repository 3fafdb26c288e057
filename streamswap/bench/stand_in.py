"""The ghost engine without the published weights: random-initialised networks of the real
architectures (AEI-Net, IResNet, optional LIP-SPADE SR) and the ONNX stand-ins for SCRFD and
2d106. Throughput of the generator and the blend is the real one at width 1; the stand-in
detector and landmarker are lighter than the published ones (their time is not representative)."""

from __future__ import annotations

from pathlib import Path

import torch

from streamswap.engines.ghost import GhostParts, assemble_ghost_parts
from streamswap.faces.detect import DetectSettings, SCRFDDetector
from streamswap.faces.landmarks import Landmark106
from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.arcface import IResNet
from streamswap.models.stand_ins import export_fake_2d106, export_fake_scrfd


def stand_in_ghost_parts(workdir: Path, device: torch.device, *, width: float = 1.0, blocks: int = 2,
                         sr: bool = False, compile: bool = False, seed: int = 0) -> GhostParts:
    """GhostParts on `device`; width < 1 shrinks AEI-Net's and the SR network's channels (CPU harness
    runs), width 1 is GHOST's full size (the generator in fp16 on CUDA, as the published one runs).
    The ONNX stand-ins are written to workdir."""
    torch.manual_seed(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    detector = SCRFDDetector.load(export_fake_scrfd(workdir / "scrfd_stand_in.onnx"), DetectSettings(max_faces=4),
                                  device=device)
    landmarker = Landmark106.load(export_fake_2d106(workdir / "2d106_stand_in.onnx"), device=device)
    identity = IResNet("r100" if width >= 1 else "r18")
    generator = AEINet(AEINetConfig(num_blocks=blocks, width=width))
    sr_net = None
    if sr:
        from streamswap.models.sr import SRConfig, SRGenerator

        sr_net = SRGenerator(SRConfig(ngf=max(4, round(SRConfig.ngf * width))))
    return assemble_ghost_parts(detector, landmarker, identity, generator, device, sr_net=sr_net, compile=compile)


def ghost_parts(workdir: Path, device: torch.device, *, stand_in: bool, width: float = 1.0,
                sr: bool = False) -> GhostParts:
    """The ghost engine's networks for a benchmark: the stand-ins above, or the published ones
    from the model cache (verified)."""
    if stand_in:
        return stand_in_ghost_parts(workdir, device, width=width, sr=sr)
    from streamswap.engines.ghost import load_ghost_parts
    from streamswap.models.registry import Registry, RegistryConfig

    return load_ghost_parts(Registry(RegistryConfig.from_env()), device, sr=sr)
