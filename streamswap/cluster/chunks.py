"""Where a video is cut: its keyframes, found by demuxing packets (no frame is decoded), and the
chunk plan built on them.

A chunk writes frames [first, end) (presentation order, indices from the file's first frame) and
starts at a keyframe, so it encodes and seeks on its own. For continuity at the seams it also
processes, without writing them, a warm-up of frames before `first` (tracking, landmark fitting
and mask hysteresis settle there) and the tracker's look-ahead after `end` (the file-mode
smoother outputs frame t only once frame t + window is known). The warm-up starts on a frame
whose index is a multiple of the detector interval, counted from the job's first frame, so
the detector runs on the same frames as in a single-process job.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from streamswap.cluster.spans import FrameSpan
from streamswap.errors import InputError


@dataclass(frozen=True)
class VideoIndex:
    """A video stream's frames without decoding: pts in presentation order (`time_base` units),
    the indices (into `pts`) of keyframes, the nominal rate (None if unknown)."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction
    fps: Fraction | None

    @property
    def frames(self) -> int:
        return len(self.pts)

    def time(self, i: int) -> float:
        """Seconds of frame i."""
        return float(self.pts[i] * self.time_base)


def index_video(path: str | Path) -> VideoIndex:
    """Demux the first video stream's packets (no decoding): frame pts and keyframes.
    InputError when the file has no readable video packet."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = container.streams.video[0]
        entries: list[tuple[int, bool]] = []
        try:
            for pkt in container.demux(stream):
                if pkt.pts is not None and pkt.size:
                    entries.append((pkt.pts, pkt.is_keyframe))
        except av.error.FFmpegError:
            pass  # a damaged tail: plan what could be read, the chunk jobs decode what is there
        tb, rate = stream.time_base, stream.average_rate
    if not entries or tb is None:
        raise InputError(f"no video packet could be read from {path} (damaged, or not a video)")
    entries.sort()
    pts = tuple(p for p, _ in entries)
    keys = tuple(i for i, (_, k) in enumerate(entries) if k)
    if not keys or keys[0] != 0:
        keys = (0, *keys)  # what precedes the first keyframe decodes (if at all) only from the start
    return VideoIndex(pts, keys, Fraction(tb), Fraction(rate) if rate else None)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a plan: writes frames [first, end) of the index, processes [run_from, run_to),
    decodes from keyframe `seek`. Indices are into the video's frames (presentation order)."""

    number: int
    first: int
    end: int
    run_from: int
    run_to: int
    seek: int

    @property
    def frames(self) -> int:
        return self.end - self.first

    @property
    def processed(self) -> int:
        return self.run_to - self.run_from

    def span(self, index: VideoIndex) -> FrameSpan:
        """The chunk as a FrameSpan (pts) for `api.swap_span`."""
        n = index.frames
        return FrameSpan(
            seek=None if self.seek == 0 else index.pts[self.seek],
            run_from=index.pts[self.run_from],
            emit_from=index.pts[self.first],
            emit_to=index.pts[self.end] if self.end < n else None,
            run_to=index.pts[self.run_to] if self.run_to < n else None,
            frames=self.frames,
        )


@dataclass(frozen=True)
class PlanSettings:
    """chunk_s: target chunk length, s (chunks end at the first keyframe at or after each
    multiple); warmup_s: frames processed before a chunk, s; lookahead: frames processed after it
    (the tracker's file-mode window); detect_every: the detector interval whose phase is kept."""

    chunk_s: float = 30.0
    warmup_s: float = 1.0
    lookahead: int = 15
    detect_every: int = 1

    def __post_init__(self) -> None:
        if self.chunk_s <= 0 or self.warmup_s < 0 or self.lookahead < 0 or self.detect_every < 1:
            raise InputError("chunk plan: --chunk-seconds must be > 0, warm-up >= 0, look-ahead >= 0")


def plan_chunks(
    index: VideoIndex, settings: PlanSettings, first: int = 0, end: int | None = None, *, at_keyframes: bool = True
) -> list[Chunk]:
    """Cut frames [first, end) of `index` at keyframes (or, `at_keyframes` False, at any frame)
    into chunks of about `chunk_s` seconds.
    `first` is the job's first frame (a --start): the detector phase and the warm-up count from it.
    Chunks cover the range exactly, in order, without overlap of written frames."""
    end = index.frames if end is None else end
    if not 0 <= first < end <= index.frames:
        raise InputError(f"chunk plan: no frame in [{first}, {end}) of a {index.frames}-frame video")
    rate = float(index.fps) if index.fps else _rate(index)
    warm = math.ceil(settings.warmup_s * rate)
    cuts = [first]
    for key in index.keyframes if at_keyframes else range(index.frames):  # each cut: the first
        # keyframe (frame) at least chunk_s after the previous one
        if cuts[-1] < key < end and index.time(key) - index.time(cuts[-1]) >= settings.chunk_s - 1e-6:
            cuts.append(key)
    if len(cuts) > 1 and _seconds(index, cuts[-1], end, rate) < settings.chunk_s / 2:
        cuts.pop()  # a short tail joins the chunk before it: its warm-up would cost more than it does
    cuts.append(end)
    chunks = []
    d = settings.detect_every
    for n, (a, b) in enumerate(itertools.pairwise(cuts)):
        run_from = first + (max(0, a - warm - first) // d) * d if a > first else first
        run_to = min(end, b + settings.lookahead)
        seek = index.keyframes[bisect.bisect_right(index.keyframes, run_from) - 1]
        chunks.append(Chunk(n, a, b, run_from, run_to, seek))
    return chunks


def _seconds(index: VideoIndex, a: int, b: int, rate: float) -> float:
    """Duration of frames [a, b)."""
    return (index.time(b) - index.time(a)) if b < index.frames else index.time(b - 1) - index.time(a) + 1 / rate


def _rate(index: VideoIndex) -> float:
    if index.frames < 2:
        return 30.0
    span = index.time(index.frames - 1) - index.time(0)
    return (index.frames - 1) / span if span > 0 else 30.0


def frame_range(index: VideoIndex, start_s: float, end_s: float | None) -> tuple[int, int]:
    """Frame indices [first, end) of a --start/--end time range (as `time_range` selects them)."""
    first = next((i for i in range(index.frames) if index.time(i) >= start_s - 1e-6), index.frames)
    end = (
        index.frames
        if end_s is None
        else next((i for i in range(first, index.frames) if index.time(i) >= end_s - 1e-6), index.frames)
    )
    if first >= end:
        raise InputError(f"--start {start_s} / --end {end_s}: no frame of the video in that range")
    return first, end
