"""The Ray actor that runs chunks: it loads the engine's models once (on its GPU when it holds
one) and keeps them for every chunk; each chunk gets a fresh analyser, tracker and swappers (they
hold per-stream state) over those models, and the job's source identity, which the driver shares
through the object store.

This module does not import Ray: the driver wraps `ChunkWorker` with `ray.remote(...)` and its
resources when a cluster job starts.

A worker refuses every call, with one line, when it does not run the driver's StreamSwap version
or does not see the driver's model files (`cluster.trust`).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from streamswap.cluster.spans import FrameSpan
from streamswap.engines.base import EngineModels, SourceIdentity
from streamswap.errors import PipelineError
from streamswap.options import SwapOptions


@dataclass(frozen=True)
class ChunkTask:
    """One chunk to run: the input file, the chunk's span, ids for the driver (job: which input,
    number: which chunk), and which attempt at it this is (0: the first)."""

    job: int
    number: int
    input: str
    span: FrameSpan
    attempt: int = 0


@dataclass(frozen=True)
class ChunkOutput:
    """A finished chunk: the encoded file's bytes (returned through the object store) and what
    it took: frames written and processed, seconds, the worker (id, pid, host)."""

    job: int
    number: int
    data: bytes
    frames: int
    processed: int
    seconds: float
    worker: int
    pid: int
    host: str


class ChunkWorker:
    """Runs chunks of swap jobs with one engine's models kept loaded (see the module docstring).
    options: the job's swap options; engine: "lite" or "ghost"; worker: an id for reports;
    expected: the driver's `trust.job_identity` (None: not checked)."""

    def __init__(self, options: SwapOptions, engine: str, worker: int, expected: dict[str, Any] | None = None) -> None:
        # chunk files are this worker's own temporaries; a --start/--end is already in the spans
        self.options = replace(options, overwrite=True, start_s=0.0, end_s=None)
        self.engine, self.worker = engine, worker
        self._expected = expected
        self._refusal: str | None = None
        self._checked = expected is None
        self._models: EngineModels | None = None

    def _check(self) -> None:
        """PipelineError (one line) when this worker does not match the driver's job."""
        if not self._checked:
            from streamswap.cluster.trust import job_identity, refusal

            assert self._expected is not None
            self._refusal = refusal(
                self._expected, job_identity(self.options, self.engine), worker=self.worker, host=socket.gethostname()
            )
            self._checked = True
        if self._refusal is not None:
            raise PipelineError(self._refusal)

    def info(self) -> dict[str, Any]:
        """Who this worker is: id, process id, host, the devices it may use. PipelineError when it
        refuses the job (another StreamSwap version, other model files)."""
        self._check()
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def models(self) -> EngineModels:
        """The engine's models, loaded on the first call and kept."""
        if self._models is None:
            from streamswap.devices import resolve_device
            from streamswap.engines.registry import engine_named

            self._models = engine_named(self.engine).load(self.options, resolve_device(self.options.device))
        return self._models

    def source_identity(self) -> SourceIdentity:
        """The job's source identity (reads the source and reference images; the driver puts
        the result in the object store for every worker)."""
        from streamswap.engines.registry import engine_named

        self._check()
        return engine_named(self.engine).source_identity(self.models(), self.options)

    def run_chunk(self, task: ChunkTask, identity: SourceIdentity) -> ChunkOutput:
        """Run the whole pipeline on one chunk; PipelineError when it writes another number of
        frames than its span holds."""
        from streamswap.api import swap_span

        self._check()
        models = self.models()
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="streamswap-chunk-") as tmp:
            out = Path(tmp) / f"chunk-{task.number:04d}.mp4"
            report = swap_span(self.options, task.input, str(out), task.span, models=models, identity=identity)
            if report.frames != task.span.frames:
                raise PipelineError(
                    f"chunk {task.number} of {task.input}: wrote {report.frames} frames, "
                    f"expected {task.span.frames} (damaged input?)"
                )
            data = out.read_bytes()
        return ChunkOutput(
            task.job,
            task.number,
            data,
            report.frames,
            report.frames_in,
            time.monotonic() - t0,
            self.worker,
            os.getpid(),
            socket.gethostname(),
        )
