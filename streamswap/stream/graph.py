"""The stage graph: wires source -> stages -> sink with bounded queues, runs each in its own
thread(s), and owns shutdown.

- Back-pressure: every queue is bounded; a slow stage blocks the puts of the one before it, up to
  the source, so nothing buffers a whole video.
- Order: the sink writes items in source order whatever the stages' worker counts.
- Flow modes: "file" never drops an item; "live" keeps latency bounded: when the first queue is
  full the source drops the oldest queued items (counted in the source's `dropped`).
- Errors: the first exception in any stage aborts every queue at once (blocked threads wake up and
  leave, in-flight items are discarded), the sink's `close(error)` finalises the output with what
  was written, and `run()` raises PipelineError naming the stage. Ctrl-C in the thread running
  `run()` does the same and re-raises KeyboardInterrupt. `StopPipeline` from a stage stops
  the graph the same way without an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from streamswap.errors import PipelineError, StreamSwapError
from streamswap.stream.channel import Channel
from streamswap.stream.metrics import GraphStats, StageMeter
from streamswap.stream.stage import (
    Fault,
    InjectedFault,
    Sink,
    SinkRunner,
    Source,
    SourceRunner,
    Stage,
    StageRunner,
    StopPipeline,
)
from streamswap.stream.streams import NoStreams, StageStreams

log = logging.getLogger(__name__)

FlowMode = Literal["file", "live"]


def _max_depth(channel: Channel) -> Callable[[], int]:
    """The deepest `channel` has been so far, read when called (what a StageMeter asks)."""
    return lambda: channel.max_depth


_POLL_S = 0.02  # how often a waiting caller looks whether the stages are done


class Interrupted(Exception):
    """Marks an abort caused by Ctrl-C or another stop signal (a KeyboardInterrupt cannot be stored
    as a stage error); its text is the reason, e.g. 'stopped by SIGTERM'. The sink's `close(error)`
    receives it, so a sink can tell a stop from a failure."""


class Graph:
    """A linear graph source -> stages -> sink.

    Each stage's (and the sink's) `queue_size` bounds its input queue; in live mode the source
    drops from the first one.
    fault: make a stage fail on purpose (see `Fault`, `STREAMSWAP_FAULT`).
    gpu_memory: optional function returning (allocated MiB, peak MiB), sampled into the stats.
    stop_timeout_s: how long to wait for threads to leave after an abort before giving up on them.
    streams: how the threads use device streams (`stream.streams`: a CUDA stream each, events
    between them); default none (the CPU).
    """

    def __init__(
        self,
        source: Source,
        stages: Sequence[Stage],
        sink: Sink,
        *,
        mode: FlowMode = "file",
        fault: Fault | None = None,
        gpu_memory: Callable[[], tuple[float, float]] | None = None,
        stop_timeout_s: float = 5.0,
        streams: StageStreams | None = None,
    ) -> None:
        if mode not in ("file", "live"):
            raise ValueError(f"unknown flow mode {mode!r}")
        names = [source.name, *(s.name for s in stages), sink.name]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        self.mode: str = mode
        self.fault = fault
        self.streams: StageStreams = streams or NoStreams()
        self._gpu_memory = gpu_memory
        self._stop_timeout = stop_timeout_s
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._failed_stage: str | None = None
        self._failed_item: int | None = None
        self._t_error: float | None = None
        self._t_done: float | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._started = False
        self._t_start = time.monotonic()
        self._names = names

        # channel i feeds stage i (the sink's channel is the last); the first one stamps seq numbers
        # each stage's queue_size bounds its input queue; the first one is where a live source drops
        caps = [*(s.queue_size for s in stages), sink.queue_size]
        producers = [1, *(s.workers for s in stages)]
        self._channels = [
            Channel(c, producers=p, stamp=(i == 0)) for i, (c, p) in enumerate(zip(caps, producers, strict=False))
        ]
        self._meters: list[StageMeter] = []
        self._runners: list[Any] = []

        t0 = self._t_start
        m = StageMeter(source.name, t0)
        self._meters.append(m)
        self._runners.append(SourceRunner(source, self._channels[0], m, self))
        for i, spec in enumerate(stages):
            ch_in, ch_out = self._channels[i], self._channels[i + 1]
            m = StageMeter(spec.name, t0, ch_in.capacity, ch_in.__len__, _max_depth(ch_in))
            self._meters.append(m)
            self._runners.append(StageRunner(spec, ch_in, ch_out, m, self))
        ch_last = self._channels[-1]
        m = StageMeter(sink.name, t0, ch_last.capacity, ch_last.__len__, _max_depth(ch_last))
        self._meters.append(m)
        self._sink_runner = SinkRunner(sink, ch_last, m, self, self._sink_error)
        self._runners.append(self._sink_runner)

    # --- the Control protocol the stage threads call -------------------------------------------
    def fail(self, stage: str | None, item: int | None, exc: BaseException) -> None:
        """Record the first failure and abort every queue (later failures are only logged)."""
        with self._lock:
            first = self._error is None
            if first:
                self._error, self._failed_stage, self._failed_item = exc, stage, item
                self._t_error = time.monotonic()
        if not first:
            log.debug("after the first failure, stage %s also raised %r", stage, exc)
            return
        if not isinstance(exc, (StopPipeline, Interrupted)):
            log.debug("stage %s failed at item %s", stage, item, exc_info=exc)
        self._stop.set()
        for ch in self._channels:
            ch.abort()

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def _sink_error(self) -> BaseException | None:
        err = self._error
        return None if isinstance(err, StopPipeline) else err

    # --- running ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start all stage threads (once)."""
        if self._started:
            raise RuntimeError("a graph runs once")
        self._started = True
        self._t_start = time.monotonic()
        for m in self._meters:
            m._t_start = self._t_start  # noqa: SLF001 - the clock starts now, not at construction
        for r in reversed(self._runners):  # consumers first, so nothing waits on a missing reader
            r.start()
        threading.Thread(target=self._watch, name="graph-watch", daemon=True).start()

    def _threads(self) -> list[threading.Thread]:
        return [t for r in self._runners for t in r.threads]

    def _watch(self) -> None:
        for t in self._threads():
            t.join()
        self._t_done = time.monotonic()
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every stage finished; True if they did within `timeout`.

        Polls with `time.sleep` rather than `Event.wait`: a stop signal's handler raises in this
        thread, and raised inside `Event.wait` (between its condition's release and re-acquire)
        it leaves that lock released, so the `with` around it fails with "release unlocked lock"
        and the stop becomes an unexpected RuntimeError. An exception out of `sleep` is clean."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            time.sleep(_POLL_S if left is None else min(_POLL_S, left))
        return True

    def stop(self) -> None:
        """Ask the source to stop producing; what is in flight still reaches the sink."""
        self._stop.set()

    def interrupt(self, reason: str = "interrupted") -> None:
        """Abort as Ctrl-C does: stop everything now; the sink still finalises."""
        self.fail(None, None, Interrupted(reason))

    def run(self, progress: Callable[[GraphStats], None] | None = None, interval_s: float = 0.25) -> GraphStats:
        """Run to the end and return the final stats.

        progress: called from this thread with a snapshot every `interval_s`.
        Raises PipelineError naming the failed stage; KeyboardInterrupt after a clean abort.
        """
        self.start()
        try:
            while not self.wait(interval_s):
                if progress:
                    progress(self.stats())
                if self._t_error is not None:  # aborting: wait for the threads, but not forever
                    self._join_after_abort()
                    break
        except BaseException as exc:  # Ctrl-C, or the progress callback failed: stop everything first
            self.interrupt(str(exc) if isinstance(exc, KeyboardInterrupt) and str(exc) else "interrupted")
            self._join_after_abort()
            raise
        final = self.stats()
        if progress:
            progress(final)
        if final.state == "failed":
            raise self._pipeline_error()
        return final

    def _join_after_abort(self) -> None:
        if not self.wait(self._stop_timeout):
            stuck = [t.name for t in self._threads() if t.is_alive()]
            log.warning("stages still running %.1f s after the stop: %s", self._stop_timeout, stuck)

    def _pipeline_error(self) -> PipelineError:
        exc, stage, item = self._error, self._failed_stage, self._failed_item
        assert exc is not None
        where = f" at item {item}" if item is not None else ""
        if isinstance(exc, StreamSwapError):
            why = str(exc)
        elif isinstance(exc, InjectedFault):
            why = str(exc)
        else:
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        err = PipelineError(f"stage '{stage}' failed{where}: {why}")
        err.stage = stage
        err.item = item
        err.__cause__ = exc
        return err

    # --- observing -----------------------------------------------------------------------------
    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def failed_stage(self) -> str | None:
        return self._failed_stage

    def state(self) -> str:
        err = self._error
        if err is None:
            return "done" if self._done.is_set() else "running"
        if isinstance(err, Interrupted):
            return "interrupted"
        if isinstance(err, StopPipeline):
            return "stopped"
        return "failed"

    def stats(self) -> GraphStats:
        """A consistent-enough snapshot of every stage (cheap; call it from any thread)."""
        stages = tuple(m.snapshot() for m in self._meters)
        sink = stages[-1]
        now = self._t_done if self._t_done is not None else time.monotonic()
        elapsed = max(now - self._t_start, 1e-9) if self._started else 0.0
        gpu_now = gpu_peak = None
        if self._gpu_memory is not None:
            try:
                gpu_now, gpu_peak = self._gpu_memory()
            except Exception:  # noqa: BLE001 - metrics never break the run
                pass
        state = self.state()
        stop_latency = None
        if self._t_error is not None and self._t_done is not None:
            stop_latency = self._t_done - self._t_error
        err = self._error
        error_text = None
        if state == "failed":
            error_text = str(self._pipeline_error())
        return GraphStats(
            state=state,
            elapsed_s=elapsed,
            stages=stages,
            frames_out=sink.items,
            frames_per_s=sink.items / elapsed if elapsed else 0.0,
            latency_p50_s=sink.latency_p50_s,
            latency_p95_s=sink.latency_p95_s,
            dropped=sum(s.dropped for s in stages),
            gpu_memory_mb=gpu_now,
            gpu_peak_mb=gpu_peak,
            error=error_text,
            failed_stage=self._failed_stage if state == "failed" else None,
            stop_latency_s=stop_latency if err is not None else None,
        )


__all__ = ["FlowMode", "Graph", "Interrupted"]
