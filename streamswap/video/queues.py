"""A source and a sink that hand frames over in memory, for frames that come from (and go back to)
another part of the process, e.g. a browser's camera over WebRTC (`streamswap.serve.live`).

`QueueSource` is a live source: `put` hands it a frame from any thread; when the job lags, the
oldest waiting frame is dropped (the graph's own live mode drops further on). `QueueSink` keeps
only the newest result, which a consumer takes with `get`. Neither encodes or decodes anything.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np
import torch

from streamswap.frames import Frame
from streamswap.video.nv import BackendChoice
from streamswap.video.probe import VideoInfo
from streamswap.video.sinks import SinkReport
from streamswap.video.sources.base import VideoSource


class QueueSource(VideoSource):
    """Frames put in by another thread, as a webcam delivers them (see the module docstring).
    `put(rgb, pts)`: an (H, W, 3) uint8 array of the size given at construction, pts in
    `time_base`; `end()` ends the input (the job then finishes normally)."""

    def __init__(
        self,
        width: int,
        height: int,
        *,
        fps: float = 30.0,
        time_base: Fraction = Fraction(1, 90_000),
        device: str = "cpu",
        depth: int = 2,
        spec: str = "webrtc",
    ) -> None:
        super().__init__()
        self.spec, self.kind, self.live = spec, "webcam", True
        self.info = VideoInfo(
            width, height, Fraction(fps).limit_denominator(1001), time_base, None, None, "rawvideo", live=True
        )
        self.choice = BackendChoice("memory", spec)
        self._device = torch.device(device)
        self._frames: deque[tuple[np.ndarray, int]] = deque(maxlen=depth)  # maxlen: the oldest falls out
        self._ready = threading.Condition()
        self._ended = False
        self.dropped = 0

    def put(self, rgb: np.ndarray, pts: int) -> None:
        """Hand over one frame (never blocks; a full queue loses its oldest frame)."""
        if rgb.shape != (self.info.height, self.info.width, 3):
            raise ValueError(f"frame of {rgb.shape} does not match the source's {self.info.width}x{self.info.height}")
        with self._ready:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append((rgb, pts))
            self._ready.notify()

    def end(self) -> None:
        """No more frames: the job ends once the waiting ones are processed."""
        with self._ready:
            self._ended = True
            self._ready.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._ready:
                # a timed wait, so a stop (close) is seen even if no frame ever comes again
                while not self._frames and not self._ended:
                    self._ready.wait(0.1)
                if not self._frames:
                    return
                rgb, pts = self._frames.popleft()
            image = torch.from_numpy(np.ascontiguousarray(rgb)).to(self._device)
            yield Frame(self.frames_read, pts, self.info.time_base, image)
            self.frames_read += 1

    def close(self) -> None:
        self.end()


class QueueSink:
    """Keeps the newest frame written (as a host (H, W, 3) uint8 array with its pts); `get` waits
    for one newer than the last taken. `on_frame`, if given, is called from the sink's thread
    after each write (to wake an event loop)."""

    def __init__(self, spec: str = "webrtc", on_frame: Callable[[], None] | None = None) -> None:
        self.report = SinkReport(spec, "memory")
        self.choice = BackendChoice("memory", spec)
        self._latest: tuple[np.ndarray, int] | None = None
        self._taken = 0
        self._cond = threading.Condition()
        self._on_frame = on_frame
        self.closed = False

    def write(self, frame: Frame) -> None:
        """Keep `frame` as the newest result."""
        rgb = frame.image.cpu().numpy()
        with self._cond:
            self._latest = (rgb, frame.pts)
            self.report.frames += 1
            self._cond.notify_all()
        if self._on_frame is not None:
            self._on_frame()

    def get(self, timeout: float | None = None) -> tuple[np.ndarray, int] | None:
        """The newest frame not taken yet (waiting up to `timeout` s), or None (timed out, or closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.report.frames == self._taken and not self.closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(0.1 if left is None else min(0.1, left))
            if self._latest is None or self.report.frames == self._taken:
                return None
            self._taken = self.report.frames
            return self._latest

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.closed = True
            self.report.finalised = self.report.complete = True
            self._cond.notify_all()


__all__ = ["QueueSink", "QueueSource"]
