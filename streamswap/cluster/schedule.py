"""Which chunk runs on which worker, and what a failure does: the cluster job's scheduling policy,
without Ray (run.py drives it with Ray's futures; the tests with plain objects).

- Queue: chunk items in the order given (every input's chunks share the pool); each idle worker,
  in turn, takes the first queued item it has not failed on (any item, once it has failed on as
  many workers as are alive).
- Failures: a chunk that failed goes back to the front of the queue, up to `max_retries` times
  after its first attempt; then its file gives up: its other queued chunks are dropped, and what
  of it is still running is ignored when it ends.
- Lost workers: a worker that died (rather than its chunk raising) is out of the pool until a
  probe it answers brings it back, or a probe finds it out of restarts, when it leaves the pool
  for good. When no worker is alive, every queued chunk is given up.

Futures are opaque: any hashable object the caller can wait on. The scheduler keeps no report:
its calls return what happened, and the caller does the bookkeeping.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Generic, TypeVar

C = TypeVar("C")  # a chunk, whatever the caller runs: the scheduler only hands it back


@dataclass(frozen=True)
class ChunkItem(Generic[C]):
    """One chunk to run: `job` says which input it belongs to (its file gives up as a whole);
    attempts: failures so far; failed_on: the workers it failed on. A failure queues a new item
    with one more of each."""

    job: int
    chunk: C
    attempts: int = 0
    failed_on: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Assignment(Generic[C]):
    """An item for a worker."""

    worker: int
    item: ChunkItem[C]


class Outcome(Enum):
    """What a failed chunk comes to."""

    REQUEUED = "requeued"  # at the front of the queue, for another attempt
    GAVE_UP = "gave up"  # out of retries: its file fails
    IGNORED = "ignored"  # its file had already failed: nothing to retry


@dataclass(frozen=True)
class Finished(Generic[C]):
    """A chunk that succeeded on `worker`; wanted is False when its file had already failed (its
    output is of no use)."""

    worker: int
    item: ChunkItem[C]
    wanted: bool


@dataclass(frozen=True)
class Failure(Generic[C]):
    """A chunk that failed on `worker` (why: the caller's words), and what came of it; item: the
    chunk with this failure counted; dropped: its file's other queued chunks, when it gave up."""

    worker: int
    item: ChunkItem[C]
    why: str
    outcome: Outcome
    dropped: tuple[ChunkItem[C], ...] = ()


class ProbeAnswer(Enum):
    """What a probe of a lost worker found."""

    BACK = "back"  # it answered: idle again
    RESTARTING = "restarting"  # not yet: probe it again
    GONE = "gone"  # out of restarts: it leaves the pool


@dataclass(frozen=True)
class Probed(Generic[C]):
    """A probe's result for `worker`; dropped: every queued chunk, given up when the worker was
    the last one alive."""

    worker: int
    answer: ProbeAnswer
    dropped: tuple[ChunkItem[C], ...] = ()


class ChunkScheduler(Generic[C]):
    """The queue of chunk items, the workers (ids 0..workers-1: idle, busy, lost or gone), the
    futures in flight and the probes of lost workers (see the module docstring)."""

    def __init__(self, items: Iterable[ChunkItem[C]], workers: int, max_retries: int) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        self.max_retries = max_retries
        self._queue: deque[ChunkItem[C]] = deque(items)
        self._idle = list(range(workers))  # in the order they became idle: the first asks first
        self._alive = set(range(workers))  # idle, busy or being probed
        self._inflight: dict[Hashable, Assignment[C]] = {}
        self._probes: dict[Hashable, int] = {}
        self._failed_jobs: set[int] = set()

    @property
    def done(self) -> bool:
        """Nothing queued and nothing running (probes still out do not count)."""
        return not self._queue and not self._inflight

    @property
    def busy(self) -> int:
        """Chunks running."""
        return len(self._inflight)

    @property
    def alive(self) -> int:
        """Workers in the pool (a lost worker counts until a probe finds it gone)."""
        return len(self._alive)

    @property
    def queued(self) -> list[ChunkItem[C]]:
        """The items waiting, in queue order."""
        return list(self._queue)

    def assignments(self) -> list[Assignment[C]]:
        """What to start now: each idle worker in turn with the first item it may take (see the
        module docstring). Nothing changes until the caller reports each one `started`."""
        left, out = list(self._queue), []
        for w in self._idle:
            item = next((it for it in left if self._may_take(w, it)), None)
            if item is not None:
                left.remove(item)
                out.append(Assignment(w, item))
        return out

    def _may_take(self, worker: int, item: ChunkItem[C]) -> bool:
        # a chunk every live worker has failed must still run somewhere
        return worker not in item.failed_on or len(item.failed_on) >= len(self._alive)

    def started(self, future: Hashable, worker: int, item: ChunkItem[C]) -> None:
        """`worker` runs `item` (an assignment), to be answered through `future`."""
        self._idle.remove(worker)
        self._queue.remove(item)
        self._inflight[future] = Assignment(worker, item)

    def pending(self) -> list[Hashable]:
        """The futures to wait on: chunks in flight (in the order started), then probes."""
        return [*self._inflight, *self._probes]

    def is_probe(self, future: Hashable) -> bool:
        """Whether `future` is a probe's (else a chunk's)."""
        return future in self._probes

    def running(self, future: Hashable) -> Assignment[C]:
        """Which worker runs which item for a chunk's future."""
        return self._inflight[future]

    def succeeded(self, future: Hashable) -> Finished[C]:
        """A chunk's future answered with its result: the worker is idle again."""
        a = self._inflight.pop(future)
        self._idle.append(a.worker)
        return Finished(a.worker, a.item, a.item.job not in self._failed_jobs)

    def failed(self, future: Hashable, why: str, worker_lost: bool) -> Failure[C]:
        """A chunk's future answered with an error: the chunk raised (the worker is idle again), or
        `worker_lost` (it died: out of the pool until the caller's `probe` of it answers). The
        chunk is queued again or its file gives up (see the module docstring)."""
        a = self._inflight.pop(future)
        if not worker_lost:
            self._idle.append(a.worker)
        if a.item.job in self._failed_jobs:
            return Failure(a.worker, a.item, why, Outcome.IGNORED)
        item = replace(a.item, attempts=a.item.attempts + 1, failed_on=a.item.failed_on | {a.worker})
        if item.attempts <= self.max_retries:
            self._queue.appendleft(item)
            return Failure(a.worker, item, why, Outcome.REQUEUED)
        self._failed_jobs.add(item.job)
        dropped = tuple(it for it in self._queue if it.job == item.job)
        self._queue = deque(it for it in self._queue if it.job != item.job)
        return Failure(a.worker, item, why, Outcome.GAVE_UP, dropped)

    def probe(self, future: Hashable, worker: int) -> None:
        """A probe of lost `worker` is out, to be answered through `future`."""
        self._probes[future] = worker

    def probe_answered(self, future: Hashable, answer: ProbeAnswer) -> Probed[C]:
        """A probe's future answered: the worker is back (idle), still restarting (the caller
        probes it again) or gone (out of the pool; the last one gone gives up everything queued)."""
        worker = self._probes.pop(future)
        if answer is ProbeAnswer.BACK:
            self._idle.append(worker)
        elif answer is ProbeAnswer.GONE:
            self._alive.discard(worker)
            if not self._alive:
                dropped = tuple(self._queue)
                self._queue.clear()
                self._failed_jobs.update(it.job for it in dropped)
                return Probed(worker, answer, dropped)
        return Probed(worker, answer)


__all__ = ["Assignment", "ChunkItem", "ChunkScheduler", "Failure", "Finished", "Outcome", "ProbeAnswer", "Probed"]
