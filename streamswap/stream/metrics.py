"""Per-stage runtime metrics: throughput, busy fraction, queue depth, latency, GPU memory.

Each running graph owns one `StageMeter` per stage (no module-level state); stage threads record
into it and any thread may take a `StageStats` snapshot. Latencies are kept in a bounded window
of the most recent items, so memory stays flat however long the stream.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from threading import Lock
from typing import Any

import numpy as np

LATENCY_WINDOW = 2048  # recent items the latency percentiles are computed over


@dataclass(frozen=True, slots=True)
class StageStats:
    """A snapshot of one stage.

    items: items the stage has output; items_per_s: items / seconds since the graph started
    (until the stage finished); busy: fraction of that time spent in the stage's own work
    (decode, fn, write), the rest being waits on queues; queue_depth/queue_max/queue_capacity:
    the stage's input queue now / at most / its bound (None for the source, which has none);
    latency_p50_s/p95_s: time from the source producing an item to this stage outputting it,
    over the last `LATENCY_WINDOW` items; dropped: items dropped (live sources only);
    batches: calls of the stage's function (mean batch size = items / batches).
    """

    name: str
    items: int
    items_per_s: float
    busy: float
    queue_depth: int | None
    queue_max: int | None
    queue_capacity: int | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    dropped: int
    batches: int
    finished: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GraphStats:
    """A snapshot of the whole graph: its stages (source first, sink last) and totals.

    state: "running", "done", "failed", "interrupted" or "stopped". latency_*: source-to-sink.
    gpu_memory_mb / gpu_peak_mb: allocated CUDA memory of this process now / at peak (None off CUDA).
    """

    state: str
    elapsed_s: float
    stages: tuple[StageStats, ...]
    frames_out: int
    frames_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    dropped: int
    gpu_memory_mb: float | None = None
    gpu_peak_mb: float | None = None
    error: str | None = None
    failed_stage: str | None = None
    stop_latency_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> StageStats:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [s.to_dict() for s in self.stages]
        return d


def percentiles(values: list[float] | deque[float], qs: tuple[float, ...] = (50, 95)) -> tuple[float | None, ...]:
    """Percentiles of `values` (None each when empty)."""
    if not values:
        return tuple(None for _ in qs)
    arr = np.fromiter(values, dtype=np.float64)
    return tuple(float(v) for v in np.percentile(arr, qs))


class StageMeter:
    """Thread-safe accumulator for one stage's metrics."""

    def __init__(
        self,
        name: str,
        t_start: float,
        queue_capacity: int | None = None,
        queue_len: Callable[[], int] | None = None,
        queue_max: Callable[[], int] | None = None,
    ) -> None:
        self.name = name
        self._t_start = t_start
        self._t_end: float | None = None
        self._queue_capacity = queue_capacity
        self._queue_len = queue_len
        self._queue_max = queue_max
        self._lock = Lock()
        self._items = 0
        self._batches = 0
        self._busy = 0.0
        self._dropped = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record(self, n_items: int, busy_s: float, t_sources: list[float] | None = None) -> None:
        """`n_items` left the stage after `busy_s` seconds of work; t_sources: their source times."""
        now = time.monotonic()
        with self._lock:
            self._items += n_items
            self._batches += 1
            self._busy += busy_s
            if t_sources:
                self._latencies.extend(now - t for t in t_sources)

    def add_busy(self, busy_s: float) -> None:
        with self._lock:
            self._busy += busy_s

    def record_drop(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    def finish(self) -> None:
        with self._lock:
            if self._t_end is None:
                self._t_end = time.monotonic()

    def snapshot(self) -> StageStats:
        with self._lock:
            end = self._t_end if self._t_end is not None else time.monotonic()
            span = max(end - self._t_start, 1e-9)
            p50, p95 = percentiles(self._latencies)
            return StageStats(
                name=self.name,
                items=self._items,
                items_per_s=self._items / span,
                busy=min(1.0, self._busy / span),
                queue_depth=self._queue_len() if self._queue_len else None,
                queue_max=self._queue_max() if self._queue_max else None,
                queue_capacity=self._queue_capacity,
                latency_p50_s=p50,
                latency_p95_s=p95,
                dropped=self._dropped,
                batches=self._batches,
                finished=self._t_end is not None,
            )


def cuda_memory_probe(device: Any) -> Callable[[], tuple[float, float]] | None:
    """A function returning (allocated MiB, peak MiB) on `device` if it is CUDA, else None."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None

    def probe() -> tuple[float, float]:
        return (torch.cuda.memory_allocated(dev) / 2**20, torch.cuda.max_memory_allocated(dev) / 2**20)

    return probe
