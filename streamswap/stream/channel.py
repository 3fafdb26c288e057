"""Bounded queues between stages: blocking puts (back-pressure), batched gets, drop-oldest for
live sources, and an abort that wakes every waiting thread at once."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from threading import Condition
from typing import Any


class Stopped(Exception):
    """Raised inside a stage's thread when the graph is shutting down; unwinds blocked waits."""


@dataclass(slots=True)
class Envelope:
    """What travels through a channel: the payload plus the graph's bookkeeping.

    seq: position in the stream (0, 1, 2, ...), assigned when the item leaves the first channel,
        so frames a live source drops leave no gaps. The sink writes in `seq` order.
    t_source: `time.monotonic()` when the source produced the item (for latency).
    ready: what the consumer waits for before using the item on a device (a CUDA event recorded
        by the producer's stream, see `stream.streams`); None on the CPU.
    """

    seq: int
    t_source: float
    item: Any
    ready: Any = None


class Channel:
    """A bounded FIFO of envelopes between one stage (possibly several workers) and the next.

    `capacity` bounds memory: a full channel blocks `put` (back-pressure) unless the producer asks
    to drop the oldest item instead (live mode). The channel closes once all `producers` called
    `producer_done()`; `get_batch` then drains what is left and returns None.
    """

    def __init__(self, capacity: int, producers: int = 1, stamp: bool = False) -> None:
        if capacity < 1:
            raise ValueError("channel capacity must be >= 1")
        self.capacity = capacity
        self._items: deque[Envelope] = deque()
        self._cond = Condition()
        self._producers = producers
        self._aborted = False
        self._stamp = stamp
        self._next_seq = 0
        self.max_depth = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._producers <= 0

    def put(self, env: Envelope, *, drop_oldest: bool = False) -> int:
        """Append `env`, blocking while full (or dropping the oldest items when `drop_oldest`).

        Returns how many items were dropped. Raises Stopped if the channel is aborted.
        """
        dropped = 0
        with self._cond:
            while len(self._items) >= self.capacity and not self._aborted:
                if drop_oldest:
                    self._items.popleft()
                    dropped += 1
                else:
                    self._cond.wait()
            if self._aborted:
                raise Stopped
            self._items.append(env)
            self.max_depth = max(self.max_depth, len(self._items))
            self._cond.notify_all()
        return dropped

    def get_batch(self, max_items: int, max_wait_s: float = 0.0) -> list[Envelope] | None:
        """Take 1..max_items envelopes, waiting up to `max_wait_s` after the first for more.

        Blocks until at least one item is available. Returns None once the channel is closed and
        empty. Raises Stopped if the channel is aborted.
        """
        with self._cond:
            while not self._items and not self.closed and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise Stopped
            if not self._items:
                return None
            if max_wait_s > 0 and len(self._items) < max_items:
                deadline = time.monotonic() + max_wait_s
                while len(self._items) < max_items and not self.closed and not self._aborted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._aborted:
                    raise Stopped
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            if self._stamp:
                for env in batch:
                    env.seq = self._next_seq
                    self._next_seq += 1
            self._cond.notify_all()
            return batch

    def producer_done(self) -> None:
        """One producer finished; the channel closes when all have."""
        with self._cond:
            self._producers -= 1
            self._cond.notify_all()

    def abort(self) -> None:
        """Wake every waiter with Stopped and drop the contents (they will not be processed)."""
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._cond.notify_all()
