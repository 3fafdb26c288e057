"""The lite engine, made to hold a chunk on request: a test plugin (the `streamswap.engines` entry
point of the dist-info beside it) for tests/test_cluster_ray.py's worker-kill test, which needs a
worker to be busy with a chunk long enough to kill it.

It is the lite engine in everything (models, source identity, defaults, the frames it writes),
except that its analyser waits, once, when the file HOLDS/<pid of this process> exists, HOLDS
being the folder named by STREAMSWAP_SLOW_LITE_HOLDS: it removes the file and sleeps the seconds
written in it. A test creates that file for the worker it has just handed a chunk to; the analyser
looks for it before each batch, so the worker holds that very chunk, whenever the file appears.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from streamswap.checks import Check
from streamswap.engines.base import (
    Analyser,
    EngineModels,
    EngineSession,
    SourceIdentity,
)
from streamswap.engines.lite import ENGINE as LITE
from streamswap.faces.records import FaceBatch
from streamswap.models.registry import Registry
from streamswap.options import SwapOptions

HOLDS = "STREAMSWAP_SLOW_LITE_HOLDS"


@dataclass
class HoldingAnalyser:
    """The lite analyser, after a wait when `hold` exists (see the module docstring)."""

    analyser: Analyser
    hold: Path

    def __call__(self, frames: torch.Tensor, with_identity: bool) -> FaceBatch:
        try:
            seconds = float(self.hold.read_text())
            self.hold.unlink()  # once: a retry of the chunk runs at lite's pace
        except (FileNotFoundError, ValueError):
            pass
        else:
            time.sleep(seconds)
        return self.analyser(frames, with_identity)


class SlowLiteEngine:
    name = "slow-lite"
    summary = "the lite engine, holding a chunk on request (a test plugin)"
    auto_rank = None  # never chosen by --engine auto
    defaults = LITE.defaults

    def unready(self, registry: Registry) -> str | None:
        return LITE.unready(registry)

    def checks(self, registry: Registry, needed: bool) -> list[Check]:
        return LITE.checks(registry, needed)

    def model_files(self, options: SwapOptions) -> dict[str, str | None]:
        return LITE.model_files(options)

    def fetch(self, options: SwapOptions) -> None:
        LITE.fetch(options)

    def load(self, options: SwapOptions, device: torch.device) -> EngineModels:
        # named for this engine: a job given these models asks this engine for its session
        return replace(LITE.load(options, device), engine=self.name)

    def stand_in(self, options: SwapOptions, device: torch.device, workdir: Path, *, width: float = 1.0) -> EngineModels:
        return self.load(options, device)

    def source_identity(self, models: EngineModels, options: SwapOptions) -> SourceIdentity:
        return LITE.source_identity(models, options)

    def session(self, models: EngineModels, identity: SourceIdentity, options: SwapOptions) -> EngineSession:
        session = LITE.session(models, identity, options)
        holds = os.environ.get(HOLDS)
        if not holds:
            return session
        return replace(session, analyser=HoldingAnalyser(session.analyser, Path(holds) / str(os.getpid())))


ENGINE = SlowLiteEngine()
