"""NVIDIA DALI pipeline for training pairs: the torch loader's batches, decoded and augmented by DALI.

The pair sampler (train/data.py) decides everything random on the host: which files pair up, the
same flags and each image's colour-jitter factors. A non-parallel `fn.external_source` feeds step
k's plan (the encoded file bytes, the factors as per-sample scalars and 3x3 colour matrices);
DALI decodes (`fn.decoders.image`, "mixed" = nvJPEG on the GPU, "cpu" without one), jitters with
the same arithmetic as train/augment.py, resizes (linear, antialiased) to S x S and normalises to
[-1, 1] CHW float32. The plan's step comes back with each batch, so the iterator checks that
batch k is step k's. DALI's own RNG is never used, so a restarted pipeline repeats the batches.

DALI is imported only when a pipeline is built; without it, `import_dali` raises one InputError
line. The CPU variant (device_id None) runs without a GPU (GPU-NOTES.md: DALI's CPU backend
decodes images, not H.264).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from streamswap.errors import InputError, PipelineError
from train.augment import GRAY, hue_matrix, saturation_matrix

DALI_INSTALL = "pip install nvidia-dali-cuda130"
OUTPUTS = ("source", "target", "same", "step")


def import_dali() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(nvidia.dali, nvidia.dali.fn, nvidia.dali.types), or InputError when DALI is missing."""
    try:
        return (importlib.import_module("nvidia.dali"), importlib.import_module("nvidia.dali.fn"),
                importlib.import_module("nvidia.dali.types"))
    except ImportError as exc:
        raise InputError(f"the DALI loader needs NVIDIA DALI ({DALI_INSTALL}, the `train` extra); "
                         f"or use the torch loader (--loader torch) [{exc}]") from None


@dataclass(frozen=True)
class PairPipelineSpec:
    """files: dataset image paths (the plan's indices point here); batch_size; size: output side S;
    augment: apply the plan's jitter factors; threads: DALI CPU threads; device_id: CUDA device for
    GPU decode and operators, None for the CPU-only pipeline; seed: DALI's (unused) RNG seed."""

    files: tuple[str, ...]
    batch_size: int
    size: int
    augment: bool = True
    threads: int = 2
    device_id: int | None = None
    seed: int = 0
    prefetch: int = 2


class _PlanSource:
    """external_source callback (batch mode, batch_info): iteration i -> plan(start + i) as DALI
    inputs. Reads the encoded bytes on the host; DALI decodes."""

    def __init__(self, spec: PairPipelineSpec, plan: Callable[[int], Any], start: int) -> None:
        self.spec, self.plan, self.start = spec, plan, start

    def __call__(self, info: Any) -> list[Any]:
        p = self.plan(self.start + info.iteration)
        files = self.spec.files
        out: list[Any] = [
            [np.fromfile(files[i], dtype=np.uint8) for i in p.source],
            [np.fromfile(files[i], dtype=np.uint8) for i in p.target],
            p.same.astype(np.float32),
            np.full(len(p.source), p.step, dtype=np.int64),
        ]
        if not self.spec.augment:
            return out
        for side in (0, 1):  # per image: brightness, contrast, saturation matrix, hue matrix
            f = p.jitter[:, side]
            out += [f[:, 0].astype(np.float32), f[:, 1].astype(np.float32),
                    np.stack([saturation_matrix(s) for s in f[:, 2]]), np.stack([hue_matrix(h) for h in f[:, 3]])]
        return out


def _image(dali: ModuleType, fn: ModuleType, types: ModuleType, encoded: Any, jitter: Sequence[Any],
           spec: PairPipelineSpec) -> Any:
    """Encoded bytes -> (3, S, S) float32 in [-1, 1], jittered as train/augment.jitter."""
    gpu = spec.device_id is not None
    x = fn.decoders.image(encoded, device="mixed" if gpu else "cpu", output_type=types.RGB)
    x = fn.cast(x, dtype=types.FLOAT)
    if spec.augment:
        b, c, m_sat, m_hue = jitter
        if gpu:  # arithmetic operands share the device; the matrices stay CPU argument inputs
            b, c = b.gpu(), c.gpu()
        x = dali.math.clamp(x * b, 0.0, 255.0)
        mean = fn.reductions.mean(fn.coord_transform(x, M=np.array([GRAY], dtype=np.float32)))
        x = dali.math.clamp(x * c + (1.0 - c) * mean, 0.0, 255.0)
        x = dali.math.clamp(fn.coord_transform(x, M=m_sat), 0.0, 255.0)
        x = dali.math.clamp(fn.coord_transform(x, M=m_hue), 0.0, 255.0)
    x = fn.resize(x, size=[spec.size, spec.size], interp_type=types.INTERP_LINEAR, antialias=True)
    x = fn.crop_mirror_normalize(x, dtype=types.FLOAT, output_layout="CHW", mean=[127.5] * 3, std=[127.5] * 3)
    return dali.math.clamp(x, -1.0, 1.0)


def build_pair_pipeline(spec: PairPipelineSpec, plan: Callable[[int], Any], start: int = 0) -> Any:
    """A built DALI Pipeline whose outputs are OUTPUTS for steps start, start + 1, ... forever.
    plan(step) -> an object with source, target (B,) int, same (B,) float32, jitter (B, 2, 4), step."""
    dali, fn, types = import_dali()

    @dali.pipeline_def(batch_size=spec.batch_size, num_threads=spec.threads, device_id=spec.device_id,
                       seed=spec.seed, prefetch_queue_depth=spec.prefetch, exec_dynamic=False)
    def pairs() -> tuple[Any, ...]:
        # non-parallel source: the plan is cheap, and parallel external_source with the dynamic
        # executor is known to corrupt outputs (GPU-NOTES.md)
        inputs = fn.external_source(source=_PlanSource(spec, plan, start), num_outputs=12 if spec.augment else 4,
                                    batch=True,
                                    batch_info=True, parallel=False)
        src_bytes, tgt_bytes, same, step = inputs[:4]
        source = _image(dali, fn, types, src_bytes, inputs[4:8] if spec.augment else (), spec)
        target = _image(dali, fn, types, tgt_bytes, inputs[8:12] if spec.augment else (), spec)
        return source, target, same, step

    pipe = pairs()
    pipe.build()
    return pipe


def iterate_pairs(spec: PairPipelineSpec, plan: Callable[[int], Any], start: int = 0
                  ) -> Iterator[dict[str, torch.Tensor]]:
    """Batches {"source", "target": (B, 3, S, S) float32 [-1, 1], "same": (B,) float32} for steps
    start, start + 1, ... (on device_id's GPU, or the CPU). Raises PipelineError if DALI ever hands
    back a batch of another step than expected."""
    import_dali()
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    pipe = build_pair_pipeline(spec, plan, start)
    iterator = DALIGenericIterator([pipe], list(OUTPUTS), auto_reset=False)
    try:
        expected = start
        for (batch,) in iterator:
            got = batch["step"].cpu()
            if not bool((got == expected).all()):
                raise PipelineError(f"DALI pair pipeline: expected step {expected}, got {got.tolist()}")
            yield {"source": batch["source"], "target": batch["target"], "same": batch["same"]}
            expected += 1
    finally:
        del iterator, pipe  # releases DALI's threads and buffers now, not at interpreter exit
