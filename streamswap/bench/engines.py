"""The engine a benchmark runs, through the engine seam: its real models, or its stand-in
(`Engine.stand_in`: networks of the real architectures that need no published weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from streamswap.engines.base import EngineModels, EngineSession, PhasedSwapper
from streamswap.engines.registry import engine_named
from streamswap.errors import InputError
from streamswap.options import SwapOptions


def bench_options(engine: str, source: str, *, stand_in: bool, **options: Any) -> SwapOptions:
    """SwapOptions for a benchmark. A stand-in detector finds skin-coloured regions, several per
    photo: the first is taken as the source face."""
    return SwapOptions(sources=(source,), engine=engine, source_face_index=0 if stand_in else None, **options)


def bench_models(
    options: SwapOptions, device: torch.device, workdir: Path, *, stand_in: bool, width: float = 1.0
) -> EngineModels:
    """The engine's stand-in (`width`: its networks' channel scale) or its real models."""
    engine = engine_named(options.engine)
    if stand_in:
        return engine.stand_in(options, device, workdir, width=width)
    return engine.load(options, device)


def bench_session(
    options: SwapOptions, device: torch.device, workdir: Path, *, stand_in: bool, width: float = 1.0
) -> EngineSession:
    """A job's analyser and swappers over `bench_models`, with the source identity."""
    engine = engine_named(options.engine)
    models = bench_models(options, device, workdir, stand_in=stand_in, width=width)
    return engine.session(models, engine.source_identity(models, options), options)


def phased_swapper(session: EngineSession, engine: str) -> PhasedSwapper:
    """The session's first swapper, which must have separately callable phases (InputError
    otherwise: the benchmarks that time phases cannot run that engine)."""
    swapper = session.swappers[0]
    if not isinstance(swapper, PhasedSwapper):
        raise InputError(
            f"the {engine} engine's swapper has no separate phases (align, generate, refine, "
            "blend): this benchmark times them, use `bench pipeline` for that engine"
        )
    return swapper
