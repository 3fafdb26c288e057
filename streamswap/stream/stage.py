"""Stages: what a stage is (a spec) and how it runs (a thread reading a bounded input queue
in batches).

Three kinds, wired by `graph.Graph` as source -> stages... -> sink:
- `Source`: an iterable read in its own thread; its items enter the graph.
- `Stage`: `fn(list[item]) -> list[item]`, same length and order, called on batches formed by a
  `BatchPolicy` (up to `max_batch` items, waiting at most `max_wait_s` for a batch to fill);
  `workers > 1` runs several threads on one queue (the sink restores the order).
  A stage with `flush` may lag (look-ahead, e.g. smoothing that needs later frames): `fn` may
  return fewer items than it was given, the outputs of its oldest inputs not yet answered, in
  order; at the end of the input `flush()` returns the outputs of the rest. One worker only.
- `Sink`: `write(item)` called in input order in its own thread; `close(error)` is always called
  at the end, also after an error or an interrupt, so the sink can finalise its output.

A stage stops the whole graph cleanly (no error) by raising `StopPipeline`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamswap.stream.channel import Channel, Envelope, Stopped
from streamswap.stream.metrics import StageMeter
from streamswap.stream.streams import StageStreams

FAULT_ENV = "STREAMSWAP_FAULT"


class StopPipeline(Exception):
    """Raised by a stage to stop the graph without an error (e.g. the preview window was closed)."""


class InjectedFault(RuntimeError):
    """The failure `STREAMSWAP_FAULT` asked for (testing error handling end to end)."""


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """How a stage forms batches: up to `max_batch` items, waiting at most `max_wait_s` after the
    first item for more (0: take what is queued, never wait)."""

    max_batch: int = 1
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_s < 0:
            raise ValueError("BatchPolicy needs max_batch >= 1 and max_wait_s >= 0")


@dataclass(frozen=True, slots=True)
class Source:
    """The graph's input: `items` is iterated in the source thread; `close()` runs after."""

    name: str
    items: Iterable[Any]
    close: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """A processing step: `fn` maps a batch (list) of items to the same number of items, in order."""

    name: str
    fn: Callable[[list[Any]], Sequence[Any]]
    batch: BatchPolicy = BatchPolicy()
    queue_size: int = 8
    workers: int = 1
    close: Callable[[], None] | None = None
    flush: Callable[[], Sequence[Any]] | None = None

    def __post_init__(self) -> None:
        if self.flush is not None and self.workers != 1:
            raise ValueError(f"stage {self.name}: a lagging stage (with flush) runs one worker")


@dataclass(frozen=True, slots=True)
class Sink:
    """The graph's output: `write(item)` in input order; `close(error)` always runs at the end
    (error is None on success) and must leave the output finalised."""

    name: str
    write: Callable[[Any], None]
    close: Callable[[BaseException | None], None] | None = None
    queue_size: int = 8


@dataclass(frozen=True, slots=True)
class Fault:
    """Make stage `stage` raise InjectedFault when it reaches item `item` (0-based)."""

    stage: str
    item: int

    @staticmethod
    def parse(text: str) -> Fault:
        """Parse "stage:item", e.g. "encode:40"."""
        name, sep, num = text.rpartition(":")
        if not sep or not name or not num.strip().isdigit():
            raise ValueError(f"fault spec {text!r} is not STAGE:ITEM (e.g. encode:40)")
        return Fault(name.strip(), int(num))

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> Fault | None:
        """The fault requested by the STREAMSWAP_FAULT environment variable, if any."""
        text = (os.environ if env is None else env).get(FAULT_ENV, "").strip()
        return Fault.parse(text) if text else None

    def check(self, stage: str, first: int, count: int = 1) -> None:
        """Raise InjectedFault if this stage's items first..first+count-1 include the fault item."""
        if stage == self.stage and first <= self.item < first + count:
            raise InjectedFault(f"fault injected by {FAULT_ENV} at item {self.item}")


class Control(Protocol):
    """What a running stage needs from its graph."""

    mode: str
    fault: Fault | None
    streams: StageStreams

    def fail(self, stage: str, item: int | None, exc: BaseException) -> None: ...

    def stop_requested(self) -> bool: ...


class _Runner:
    """Common parts of a running stage: its meter and its threads."""

    def __init__(self, name: str, meter: StageMeter, control: Control) -> None:
        self.name = name
        self.meter = meter
        self.control = control
        self.threads: list[threading.Thread] = []

    def _spawn(self, target: Callable[[], None], n: int = 1) -> None:
        def on_own_stream() -> None:
            with self.control.streams.enter():  # each thread's device work on a stream of its own
                target()

        for i in range(n):
            suffix = f"-{i}" if n > 1 else ""
            t = threading.Thread(target=on_own_stream, name=f"stage-{self.name}{suffix}", daemon=True)
            self.threads.append(t)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _finish(self, close: Callable[[], None] | None) -> None:
        """Run the spec's close hook (a failure there fails the graph), then stop the meter."""
        try:
            if close:
                close()
        except Exception as exc:  # noqa: BLE001
            self.control.fail(self.name, None, exc)
        self.meter.finish()


class SourceRunner(_Runner):
    """Reads the source iterable into the first channel; in live mode never blocks, dropping the
    oldest queued items instead."""

    def __init__(self, spec: Source, out: Channel, meter: StageMeter, control: Control) -> None:
        super().__init__(spec.name, meter, control)
        self.spec, self.out = spec, out
        self._spawn(self._read)

    def _read(self) -> None:
        count = 0
        live = self.control.mode == "live"
        fault = self.control.fault
        streams = self.control.streams
        try:
            it = iter(self.spec.items)
            while not self.control.stop_requested():
                t0 = time.monotonic()
                try:
                    item = next(it)
                except StopIteration:
                    break
                t1 = time.monotonic()
                if fault:
                    fault.check(self.name, count)
                dropped = self.out.put(Envelope(-1, t1, item, streams.handed_over()), drop_oldest=live)
                if dropped:
                    self.meter.record_drop(dropped)
                self.meter.record(1, t1 - t0)
                count += 1
        except (Stopped, StopPipeline):
            pass
        except BaseException as exc:  # noqa: BLE001 - any failure stops the graph and is reported
            self.control.fail(self.name, count, exc)
        finally:
            self.out.producer_done()
            self._finish(self.spec.close)


class StageRunner(_Runner):
    """Runs `fn` on batches from its input channel in `workers` threads."""

    def __init__(self, spec: Stage, inp: Channel, out: Channel, meter: StageMeter, control: Control) -> None:
        super().__init__(spec.name, meter, control)
        self.spec, self.inp, self.out = spec, inp, out
        self._alive = spec.workers
        self._lock = threading.Lock()
        self._spawn(self._work, spec.workers)

    def _work(self) -> None:
        policy = self.spec.batch
        fault = self.control.fault
        streams = self.control.streams
        first: int | None = None
        held: deque[Envelope] = deque()  # inputs not yet answered (a lagging stage's look-ahead)
        try:
            while True:
                batch = self.inp.get_batch(policy.max_batch, policy.max_wait_s)
                if batch is None:
                    break
                first = batch[0].seq
                if fault:
                    for env in batch:
                        fault.check(self.name, env.seq)
                for env in batch:
                    streams.received(env.item, env.ready)
                t0 = time.monotonic()
                outs = self.spec.fn([env.item for env in batch])
                busy = time.monotonic() - t0
                held.extend(batch)
                if len(outs) > len(held) or (self.spec.flush is None and len(outs) != len(batch)):
                    raise RuntimeError(f"stage returned {len(outs)} items for a batch of {len(batch)}")
                self.meter.record(len(batch), busy, [env.t_source for env in batch])
                ready = streams.handed_over() if outs else None  # one event for the batch's outputs
                for item in outs:
                    env = held.popleft()
                    self.out.put(Envelope(env.seq, env.t_source, item, ready))
            if self.spec.flush is not None:
                first = held[0].seq if held else None
                outs = self.spec.flush()
                if len(outs) != len(held):
                    raise RuntimeError(f"stage flushed {len(outs)} items for {len(held)} held")
                ready = streams.handed_over() if outs else None
                for item in outs:
                    env = held.popleft()
                    self.out.put(Envelope(env.seq, env.t_source, item, ready))
        except Stopped:
            pass
        except StopPipeline:
            self.control.fail(self.name, None, StopPipeline())
        except BaseException as exc:  # noqa: BLE001
            self.control.fail(self.name, first, exc)
        finally:
            self.out.producer_done()
            with self._lock:
                self._alive -= 1
                last = self._alive == 0
            if last:
                self._finish(self.spec.close)


class SinkRunner(_Runner):
    """Writes items in `seq` order (restoring the order after multi-worker stages) and always
    closes the sink, passing it the error that stopped the graph (if any)."""

    def __init__(
        self, spec: Sink, inp: Channel, meter: StageMeter, control: Control, error: Callable[[], BaseException | None]
    ) -> None:
        super().__init__(spec.name, meter, control)
        self.spec, self.inp = spec, inp
        self._error = error
        self._spawn(self._write)

    def _write(self) -> None:
        pending: dict[int, Envelope] = {}
        next_seq = 0
        fault = self.control.fault
        streams = self.control.streams
        try:
            while True:
                batch = self.inp.get_batch(1)  # one at a time: the queue bound stays the bound
                if batch is None:
                    break
                for env in batch:
                    pending[env.seq] = env
                while next_seq in pending:
                    env = pending.pop(next_seq)
                    if fault:
                        fault.check(self.name, next_seq)
                    streams.received(env.item, env.ready)
                    t0 = time.monotonic()
                    self.spec.write(env.item)
                    self.meter.record(1, time.monotonic() - t0, [env.t_source])
                    next_seq += 1
            if pending:  # only possible if a stage lost items: a bug, say so
                raise RuntimeError(f"{len(pending)} items arrived out of sequence and were never written")
        except Stopped:
            pass
        except StopPipeline:
            self.control.fail(self.name, None, StopPipeline())
        except BaseException as exc:  # noqa: BLE001
            self.control.fail(self.name, next_seq, exc)
        finally:
            t0 = time.monotonic()
            try:
                if self.spec.close:
                    self.spec.close(self._error())
            except BaseException as exc:  # noqa: BLE001
                self.control.fail(self.name, None, exc)
            self.meter.add_busy(time.monotonic() - t0)
            self.meter.finish()
