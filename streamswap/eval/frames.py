"""The original video and its outputs read in lockstep, frame by frame, aligned by timestamp."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamswap.errors import InputError

if TYPE_CHECKING:
    from streamswap.frames import Frame
    from streamswap.video.sources import VideoSource


@dataclass(frozen=True)
class FrameSelection:
    """Which original frames are evaluated: the first `frames` (None: all), every `every`-th."""

    frames: int | None = None
    every: int = 1

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise InputError("--frames must be at least 1")
        if self.every < 1:
            raise InputError("--every must be at least 1")


@dataclass(frozen=True)
class AlignedFrame:
    """One evaluated instant: index (the original's frame number, 0-based), time (seconds from
    the original's first frame), original (H, W, 3) uint8 RGB, outputs: one (H, W, 3) uint8 RGB
    per output, None where that output has no frame within half a frame of `time`."""

    index: int
    time: float
    original: np.ndarray
    outputs: tuple[np.ndarray | None, ...]


def _open(path: str) -> VideoSource:
    from streamswap.video.sources import SourceOptions, open_source

    src = open_source(path, SourceOptions(decoder="pyav"))
    if src.kind != "file":
        src.close()
        raise InputError(f"{path} is not a video file (eval compares videos)")
    return src


class _Follower:
    """An output stream read forward to the frame nearest each requested time."""

    def __init__(self, src: VideoSource) -> None:
        self.src = src
        self._it: Iterator[Frame] = iter(src)
        self._start: float | None = None
        self._current: tuple[float, np.ndarray] | None = None
        self._next = self._read()
        self.used = 0

    def _read(self) -> tuple[float, np.ndarray] | None:
        frame = next(self._it, None)
        if frame is None:
            return None
        if self._start is None:
            self._start = frame.time
        return frame.time - self._start, frame.image.numpy()

    def at(self, t: float, tolerance: float) -> np.ndarray | None:
        """The frame nearest `t` seconds (from this stream's first frame), if within `tolerance`."""
        while self._next is not None and self._next[0] <= t + tolerance:
            self._current, self._next = self._next, self._read()
            if self._current[0] >= t - tolerance:
                break
        best = self._current
        if best is None or abs(best[0] - t) > tolerance:
            return None
        self.used += 1
        return best[1]

    @property
    def frames_read(self) -> int:
        return self.src.frames_read


def aligned_frames(
    original: str, outputs: Sequence[str], selection: FrameSelection, notes: list[str]
) -> tuple[int | None, Iterator[AlignedFrame]]:
    """Open the videos (InputError, one line, for any unusable one) and return (the number of
    frames that will be evaluated, if known; their iterator). A different frame size is an
    InputError; different frame counts or rates are aligned by timestamp and said in `notes`
    once the iterator is exhausted."""
    orig = _open(original)
    followers: list[_Follower] = []
    try:
        for path in outputs:
            src = _open(path)
            followers.append(_Follower(src))
            o, i = orig.info, src.info
            if (o.width, o.height) != (i.width, i.height):
                raise InputError(
                    f"{path} is {i.width}x{i.height}, the original is {o.width}x{o.height}: "
                    "eval compares frames of the same size"
                )
    except BaseException:
        orig.close()
        for f in followers:
            f.src.close()
        raise
    total = orig.info.frames
    if selection.frames is not None:
        total = min(total, selection.frames) if total else selection.frames
    expected = -(-total // selection.every) if total else None
    fps = float(orig.info.fps) if orig.info.fps else 25.0

    def run() -> Iterator[AlignedFrame]:
        start: float | None = None
        try:
            for frame in orig:
                if selection.frames is not None and frame.index >= selection.frames:
                    break
                start = frame.time if start is None else start
                t = frame.time - start
                if frame.index % selection.every:
                    for f in followers:  # keep the outputs in step without decoding work being kept
                        f.at(t, 0.5 / fps)
                    continue
                images = tuple(f.at(t, 0.5 / fps) for f in followers)
                yield AlignedFrame(frame.index, t, frame.image.numpy(), images)
            for path, f in zip(outputs, followers, strict=True):
                if selection.frames is not None:
                    continue  # only the first frames were read: the counts cannot be compared
                for _ in f._it:  # the output's frames past the original's end
                    pass
                n_out = f.frames_read
                if n_out != orig.frames_read:
                    notes.append(
                        f"{path} has {n_out} frames, the original {orig.frames_read}: frames were paired by timestamp"
                    )
            for f in followers:
                notes.extend(f.src.warnings)
            notes.extend(orig.warnings)
        finally:
            orig.close()
            for f in followers:
                f.src.close()

    return expected, run()
