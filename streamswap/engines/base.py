"""What a swap engine is: the `Engine` protocol, and the records it hands the job.

An engine knows everything about itself: the models it needs (for `doctor`, the automatic
choice, the cluster's trust check and the pre-fetch), its defaults (detector interval, identity
thresholds), how to load its networks, a stand-in for tests and benchmarks, and how to build the
per-job analyser and swappers. The job (`streamswap.job`) knows none of that: it asks the engine.

A new engine is one module that defines an `Engine` and is listed in `registry.BUILT_IN`, or a
plugin package that names it under the `streamswap.engines` entry-point group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

import numpy as np
import torch

from streamswap.faces.records import FaceBatch

if TYPE_CHECKING:
    from streamswap.checks import Check
    from streamswap.models.registry import Registry
    from streamswap.options import SwapOptions


class Analyser(Protocol):
    """Faces of a batch: frames (N, 3, H, W) uint8 RGB -> FaceBatch with landmarks (and
    embeddings when `with_identity`), on the frames' device. Frames arrive in order."""

    def __call__(self, frames: torch.Tensor, with_identity: bool) -> FaceBatch: ...


class Swapper(Protocol):
    """One source identity onto batches of faces: frames (N, 3, H, W) uint8, faces with
    landmarks (smoothed by the tracker), a track id per face -> swapped frames (pasted into
    `frames` itself when inplace). `faces_skipped_nonfinite` counts the faces it left alone
    (the generator gave NaN/Inf); `forget(keys)` drops per-track state of tracks that ended.
    This is all the pipeline asks of a swapper."""

    faces_skipped_nonfinite: int

    def __call__(
        self, frames: torch.Tensor, faces: FaceBatch, keys: Sequence[int], *, inplace: bool = False
    ) -> torch.Tensor: ...

    def forget(self, keys: Sequence[int]) -> None: ...


@runtime_checkable
class PhasedSwapper(Swapper, Protocol):
    """A swapper whose phases are separately callable, so `bench stages` and the seed-way
    baseline can time them alone: `align` -> crops, `generate` -> a tuple of tensors, `refine`
    (identity, or e.g. super-resolution), `blend`; `keep` / `restore` turn the generated tuple
    into the uint8 images a seed-like implementation holds in memory, and back. Both built-in
    engines' swappers are phased; a plugin's need not be (the benchmarks that time phases then
    refuse it)."""

    refine_stage: str | None  # the name `bench stages` gives `refine` (None: it does nothing)

    def align(self, frames: torch.Tensor, faces: FaceBatch) -> Any: ...

    def generate(self, crops: Any) -> tuple[torch.Tensor, ...]: ...

    def refine(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]: ...

    def blend(
        self,
        frames: torch.Tensor,
        crops: Any,
        generated: tuple[torch.Tensor, ...],
        keys: Sequence[int],
        *,
        inplace: bool = False,
    ) -> torch.Tensor: ...

    def keep(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]: ...

    def restore(self, kept: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]: ...


class TrackerOverrides(TypedDict, total=False):
    """The `streamswap.tracking.TrackerSettings` fields an engine may set (`EngineDefaults.tracker`);
    the job itself sets mode, window and target_threshold."""

    min_hits: int
    max_missed: int
    coast_output: int
    max_jump: float
    gap_growth: float
    identity_match: float
    identity_reject: float
    identity_weight: float
    measurement_noise: float
    accel_noise: float
    initial_speed: float
    min_visible: float
    embedding_momentum: float


@dataclass(frozen=True)
class EngineDefaults:
    """What an engine does unless told otherwise. detect_every: detector interval (None: the
    engine detects on every frame whatever --detect-every says); similarity: the identity match
    threshold of --target-face; tracker: TrackerSettings fields it overrides (e.g. identity
    thresholds for embeddings that sit closer together than ArcFace's)."""

    detect_every: int | None
    similarity: float
    tracker: TrackerOverrides = field(default_factory=TrackerOverrides)


@dataclass(frozen=True)
class EngineModels:
    """An engine's loaded networks (`nets`: whatever the engine's `load` returns), on `device`;
    loaded once, a cluster worker keeps them for every chunk it runs."""

    engine: str
    device: torch.device
    nets: Any


@dataclass(frozen=True)
class SourceIdentity:
    """What the source faces and target references come to, computed once per job and shared by
    every chunk: one entry per source (the engine's own swap data, on the CPU so it travels
    through Ray's object store) and the (P, D) float32 reference embeddings of the people to
    replace (None: everyone)."""

    sources: tuple[Any, ...]
    targets: np.ndarray | None


@dataclass
class EngineSession:
    """One job's engine: an analyser and one swapper per source (both hold per-job state), the
    reference embeddings, the identity threshold and the tracker overrides for them."""

    analyser: Analyser
    swappers: list[Swapper]
    targets: np.ndarray | None
    threshold: float
    tracker: TrackerOverrides = field(default_factory=TrackerOverrides)
    # what runs the analyse and swap stages, for the job's report ({"analyse": ..., "swap": ...})
    backends: dict[str, str] = field(default_factory=dict)


class Engine(Protocol):
    """A swap engine (see the module docstring). `name` is its --engine value; `summary` one line
    for the help and `doctor`; `auto_rank`: --engine auto takes the ready engine of lowest rank
    (None: never chosen automatically)."""

    name: str
    summary: str
    auto_rank: int | None
    defaults: EngineDefaults

    def unready(self, registry: Registry) -> str | None:
        """Why this engine cannot run here (one line with the fix), or None when it can. Cheap:
        looks for files, loads nothing."""
        ...

    def checks(self, registry: Registry, needed: bool) -> list[Check]:
        """`streamswap doctor`'s findings about this engine (its packages and model files)."""
        ...

    def model_files(self, options: SwapOptions) -> dict[str, str | None]:
        """{model file: SHA-256, or None when unknown here} of the files `load` reads: every
        worker of a cluster job must hold the same."""
        ...

    def fetch(self, options: SwapOptions) -> None:
        """Download (and verify) what `load` needs, before a cluster's workers start."""
        ...

    def load(self, options: SwapOptions, device: torch.device) -> EngineModels:
        """The networks, ready on `device`. Raises ModelError with the fix when they are missing."""
        ...

    def stand_in(
        self, options: SwapOptions, device: torch.device, workdir: Path, *, width: float = 1.0
    ) -> EngineModels:
        """Networks of the real architectures that need no published weights (random-initialised
        where the real ones are learned), for tests and benchmarks; `width` scales their channels
        (1: the real size); files go in `workdir`."""
        ...

    def source_identity(self, models: EngineModels, options: SwapOptions) -> SourceIdentity:
        """The sources' swap data and the target references' embeddings (reads the images)."""
        ...

    def session(self, models: EngineModels, identity: SourceIdentity, options: SwapOptions) -> EngineSession:
        """A fresh analyser and swappers over loaded models, for one job (or one chunk)."""
        ...


def effective_detect_every(engine: Engine, options: SwapOptions) -> int:
    """The detector interval a job of `engine` runs with: --detect-every, else the engine's
    default; 1 for an engine that detects on every frame."""
    if engine.defaults.detect_every is None:
        return 1
    return engine.defaults.detect_every if options.detect_every is None else options.detect_every


def threshold_of(engine: Engine, options: SwapOptions) -> float:
    """The identity match threshold: --similarity, else the engine's default."""
    return engine.defaults.similarity if options.similarity is None else options.similarity
