"""What every source shares: its options (`SourceOptions`), the `VideoSource` base and the
`Seekable` protocol, frame conversion (rotation, RGB on the device), timestamp repair, pacing,
PyAV packet decoding, and `time_range`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, runtime_checkable

import av
import torch

from streamswap.frames import Frame
from streamswap.video.nv import BackendChoice
from streamswap.video.probe import (
    InputKind,
    VideoInfo,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """How to open an input.

    decoder: "auto", "pyav" or "nvdec". device: where frames go ("cpu", "cuda", "cuda:1").
    threads: decoder threads (0: FFmpeg decides). pace: read a file at its own frame rate, as a
    live source would deliver it. max_frames: stop after this many frames.
    Live inputs: transport ("tcp" or "udp", RTSP only); open/read timeouts; `reconnect` attempts
    with exponential back-off from `backoff_s` up to `backoff_max_s` after a network source fails
    (0: give up at once); webcam_size ("1280x720"), webcam_fps, webcam_format ("mjpeg").
    """

    decoder: str = "auto"
    device: str = "cpu"
    threads: int = 0
    pace: bool = False
    max_frames: int | None = None
    transport: str = "tcp"
    open_timeout_s: float = 10.0
    read_timeout_s: float = 3.0
    reconnect: int = 5
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    webcam_size: str | None = None
    webcam_fps: str | None = None
    webcam_format: str | None = None


@runtime_checkable
class Seekable(Protocol):
    """A source that can jump (by demuxing) to the keyframe at or before `seconds`."""

    def seek(self, seconds: float) -> None: ...


class VideoSource:
    """Base of all sources: iterate for frames, then `close()`.

    spec: what the user named; kind: file/image/webcam/network; info: the stream; choice: the
    backend and why; live: whether the graph should run in live mode (drop rather than wait);
    warnings: problems met while reading that did not stop the job (e.g. a truncated file).
    """

    spec: str
    kind: InputKind
    info: VideoInfo
    choice: BackendChoice
    live: bool = False

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.frames_read = 0

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input (idempotent)."""


def _rotate(img: torch.Tensor, rotation: int) -> torch.Tensor:
    """Turn an (H, W, 3) image `rotation` degrees counter-clockwise (the display-matrix angle)."""
    k = (rotation // 90) % 4
    return torch.rot90(img, k, dims=(0, 1)).contiguous() if k else img


def _rgb_tensor(frame: av.VideoFrame, rotation: int, device: torch.device) -> torch.Tensor:
    """A decoded PyAV frame as (H, W, 3) uint8 RGB on `device`, upright."""
    if int(frame.color_range) == 2:  # full-range (JPEG) YUV: tell swscale, it assumes MPEG levels
        arr = frame.reformat(format="rgb24", src_color_range="JPEG", dst_color_range="JPEG").to_ndarray()
    else:
        arr = frame.to_ndarray(format="rgb24")
    img = _rotate(torch.from_numpy(arr), rotation)
    return img.to(device, non_blocking=True) if device.type != "cpu" else img


class _Timestamps:
    """Keeps pts usable by an encoder: fills in missing ones (one frame duration on) and forces
    them strictly increasing."""

    def __init__(self, info: VideoInfo) -> None:
        fps = info.fps or Fraction(30)
        self.step = max(1, int(round(1 / (fps * info.time_base))))
        self.last: int | None = None
        self.fixed = 0

    def __call__(self, pts: int | None) -> int:
        if pts is None:
            pts = 0 if self.last is None else self.last + self.step
            self.fixed += 1
        elif self.last is not None and pts <= self.last:
            pts = self.last + 1
            self.fixed += 1
        self.last = pts
        return pts


class _Pacer:
    """Sleeps so frames are released no faster than their timestamps (simulating a live feed)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.media0 = 0.0

    def wait(self, media_time: float) -> None:
        now = time.monotonic()
        if self.t0 is None:
            self.t0, self.media0 = now, media_time
            return
        ahead = (media_time - self.media0) - (now - self.t0)
        if ahead > 0:
            time.sleep(ahead)


def _decode_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, problems: dict[str, int]
) -> Iterator[av.VideoFrame]:
    """Decode `stream`, skipping packets that fail to decode; stop quietly where the data ends."""
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:  # unreadable data: treat as the end of the input
            problems["read_error"] = 1
            log.debug("demux stopped: %s", exc)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            problems["bad_packets"] = problems.get("bad_packets", 0) + 1
            log.debug("skipped a packet that failed to decode: %s", exc)
            continue
        yield from frames


def _chain_first(first: av.VideoFrame | None, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    if first is not None:
        yield first
    yield from rest


def time_range(src: VideoSource, start_s: float, end_s: float | None) -> Iterator[Frame]:
    """The frames of `src` from `start_s` to `end_s` (seconds), timestamps shifted so the range
    starts at 0 (a file sink given the same range shifts the copied audio alike)."""
    if start_s > 2.0 and isinstance(src, Seekable):
        src.seek(start_s)  # jump near the start instead of decoding everything before it
    shift: int | None = None
    for frame in src:
        if frame.time < start_s - 1e-6:
            continue
        if end_s is not None and frame.time >= end_s - 1e-6:
            break
        if shift is None:
            shift = int(round(start_s / frame.time_base))
        yield Frame(frame.index, frame.pts - shift, frame.time_base, frame.image, frame.faces, frame.extras)
