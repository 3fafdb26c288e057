"""A sliding-window rate limit (job creation): at most `limit` events in any `window_s` seconds."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimit:
    """`take()` records an event and returns 0, or, when the window is full, the seconds until
    one is allowed again (nothing recorded)."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, now: float | None = None) -> float:
        """0 when allowed (and counted), else the wait in seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._events and now - self._events[0] >= self.window_s:
                self._events.popleft()
            if len(self._events) >= self.limit:
                return self.window_s - (now - self._events[0])
            self._events.append(now)
            return 0.0
