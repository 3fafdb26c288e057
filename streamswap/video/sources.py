"""Where frames come from: video files (PyAV, or NVDEC on a GPU), webcams (v4l2), network streams
(RTSP/RTMP/HTTP/...) and still images. Every source yields `Frame`s with the container's pts and
time base, upright (rotation metadata applied), as (H, W, 3) uint8 RGB on the pipeline device.

Damaged inputs, decided here once:
- missing, empty, a directory, not a video, no video stream, or a codec FFmpeg cannot decode:
  InputError (one line) when the source is opened, before anything runs;
- truncated (the file ends early but its header is readable): the frames that decode are
  processed, the source records a warning ("decoded N of M frames") in `warnings`, and the job
  succeeds; a file whose header is missing (an MP4 cut before its `moov`) cannot be read: InputError;
- packets that fail to decode mid-stream are skipped and counted in the same warning.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch

from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.redact import redact_url
from streamswap.video.color import nv12_to_rgb
from streamswap.video.nv import BackendChoice, GpuProbe, NvDecoder, choose_decoder, probe_gpu
from streamswap.video.probe import (
    LIVE_SCHEMES,
    InputKind,
    VideoInfo,
    check_file,
    classify,
    open_container,
    video_info,
    video_stream,
    webcam_device,
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


def _decode_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    problems: dict[str, int]) -> Iterator[av.VideoFrame]:
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


class PyAVFileSource(VideoSource):
    """A video file decoded by FFmpeg (threaded) on the CPU."""

    kind: InputKind = "file"

    def __init__(self, path: str, options: SourceOptions, choice: BackendChoice) -> None:
        super().__init__()
        self.spec, self.choice, self._opt = path, choice, options
        self._device = torch.device(options.device)
        self._container = open_container(path)
        try:
            self._stream = video_stream(self._container, path)
            self._stream.thread_type = "AUTO"
            self._stream.codec_context.thread_count = options.threads
            self._problems: dict[str, int] = {}
            self._frames = _decode_packets(self._container, self._stream, self._problems)
            self._first = next(self._frames, None)
            if self._first is None:
                raise InputError(f"no frame of {path} could be decoded (damaged, or not a video)")
            self.info = video_info(self._container, self._stream, self._first)
        except BaseException:
            self._container.close()
            raise
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        fix = _Timestamps(self.info)
        pacer = _Pacer() if self._opt.pace else None
        first, self._first = self._first, None
        frames = _chain_first(first, self._frames)
        tb = self.info.time_base
        limit = self._opt.max_frames
        for avf in frames:
            if limit is not None and self.frames_read >= limit:
                break
            pts = fix(avf.pts)
            if pacer:
                pacer.wait(float(pts * tb))
            img = _rgb_tensor(avf, self.info.rotation, self._device)
            yield Frame(self.frames_read, pts, tb, img)
            self.frames_read += 1
        self._check_complete()

    def seek(self, seconds: float) -> None:
        """Start decoding near `seconds` (at the keyframe before it; earlier frames still come
        and are for the caller to skip). Call before iterating."""
        self._container.seek(int(seconds / self._stream.time_base), stream=self._stream, backward=True)
        self._first = None
        self._frames = _decode_packets(self._container, self._stream, self._problems)
        self._seeked = True

    def _check_complete(self) -> None:
        if getattr(self, "_seeked", False):
            return  # a time range: the frame count cannot be compared with the whole file's
        expected = self._stream.frames or None
        if self._opt.max_frames is not None:
            return
        bad = self._problems.get("bad_packets", 0)
        if (expected and self.frames_read < expected) or self._problems.get("read_error") or bad:
            of = f" of {expected}" if expected else ""
            msg = f"{self.spec} ended early: decoded {self.frames_read}{of} frames"
            if bad:
                msg += f", skipped {bad} undecodable packets"
            self.warnings.append(msg + " (truncated or damaged file?)")
            log.warning(self.warnings[-1])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()


def _chain_first(first: av.VideoFrame | None, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    if first is not None:
        yield first
    yield from rest


class NvDecFileSource(VideoSource):
    """A video file decoded by NVDEC straight into CUDA memory (NV12 -> RGB on the GPU).

    PyAV still probes the file (size, rate, rotation, colour matrix, timestamps if the decoder
    gives none), but no pixel goes through the CPU.
    """

    kind: InputKind = "file"

    def __init__(self, path: str, options: SourceOptions, choice: BackendChoice, info: VideoInfo,
                 nvc: object | None = None) -> None:
        super().__init__()
        self.spec, self.choice, self.info, self._opt = path, choice, info, options
        self._device = torch.device(options.device)
        self._decoder = NvDecoder(path, self._device, nvc=nvc)  # type: ignore[arg-type]
        self._pts_list: list[int] | None = None

    def _fallback_pts(self, i: int) -> int | None:
        if self._pts_list is None:  # one demux pass, no decoding: the presentation order of pts
            with av.open(self.spec) as c:
                self._pts_list = sorted(p.pts for p in c.demux(video=0) if p.pts is not None)
        return self._pts_list[i] if i < len(self._pts_list) else None

    def __iter__(self) -> Iterator[Frame]:
        fix = _Timestamps(self.info)
        pacer = _Pacer() if self._opt.pace else None
        tb = self.info.time_base
        rot = self.info.rotation
        h, w = (self.info.width, self.info.height) if rot in (90, 270) else (self.info.height, self.info.width)
        for nv12, pts in self._decoder:
            if self._opt.max_frames is not None and self.frames_read >= self._opt.max_frames:
                break
            if pts is None:
                pts = self._fallback_pts(self.frames_read)
            pts = fix(pts)
            if pacer:
                pacer.wait(float(pts * tb))
            rgb = nv12_to_rgb(nv12, h, w, matrix=self.info.colorspace, full_range=self.info.full_range)
            yield Frame(self.frames_read, pts, tb, _rotate(rgb, rot))
            self.frames_read += 1


class ImageSource(VideoSource):
    """A still image as a one-frame source (EXIF orientation applied by OpenCV)."""

    kind: InputKind = "image"

    def __init__(self, path: str, options: SourceOptions) -> None:
        super().__init__()
        import cv2

        self.spec = path
        self.choice = BackendChoice("opencv", "still image")
        from streamswap.limits import check_image

        # the size from the header first: a huge image is refused before it is decoded
        bgr = cv2.imread(path, cv2.IMREAD_COLOR) if check_image(path) is not None else None
        if bgr is None:
            raise InputError(f"cannot read {path} as an image (damaged, or not an image)")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        self._image = torch.from_numpy(rgb).to(torch.device(options.device))
        h, w = rgb.shape[:2]
        self.info = VideoInfo(width=w, height=h, fps=None, time_base=Fraction(1, 1), frames=1,
                              duration_s=None, codec="image")

    def __iter__(self) -> Iterator[Frame]:
        self.frames_read = 1
        yield Frame(0, 0, Fraction(1, 1), self._image)


class LiveSource(VideoSource):
    """A webcam (v4l2) or network stream read by FFmpeg with low-latency settings.

    A network source that fails (cannot connect, times out, ends) is reopened with exponential
    back-off, `reconnect` times in a row at most; pts stay increasing across reconnects.
    Frames' `index` counts every frame received, so frames the graph drops leave gaps.
    """

    def __init__(self, spec: str, kind: InputKind, options: SourceOptions) -> None:
        super().__init__()
        self.spec, self.kind, self._opt = spec, kind, options
        self._device = torch.device(options.device)
        self._stop = threading.Event()
        self.reconnects = 0
        if kind == "webcam":
            dev = webcam_device(spec)
            if not Path(dev).exists():
                raise InputError(f"no webcam at {dev} (is it connected, and is this machine allowed to see it?)")
            self.choice = BackendChoice("pyav", f"v4l2 webcam {dev}")
        else:
            self.choice = BackendChoice("pyav", "network stream via FFmpeg, low-latency options")
        self._container, self._stream, self._first = self._connect(initial=True)
        scheme = spec.split("://", 1)[0].lower()
        self.live = kind == "webcam" or scheme in LIVE_SCHEMES or self._container.duration is None
        self.info = video_info(self._container, self._stream, self._first, live=self.live)

    def _open_args(self) -> tuple[str, dict]:
        o = self._opt
        if self.kind == "webcam":
            opts = {k: v for k, v in (("video_size", o.webcam_size), ("framerate", o.webcam_fps),
                                      ("input_format", o.webcam_format)) if v}
            return webcam_device(self.spec), {"format": "v4l2", "options": opts}
        scheme = self.spec.split("://", 1)[0].lower()
        opts = {"fflags": "nobuffer", "flags": "low_delay"}
        if scheme.startswith("rtsp"):
            opts["rtsp_transport"] = o.transport
        if scheme.startswith("http"):
            opts.update(reconnect="1", reconnect_streamed="1")
        return self.spec, {"options": opts, "timeout": (o.open_timeout_s, o.read_timeout_s)}

    def _connect(self, initial: bool) -> tuple[av.container.InputContainer, av.video.stream.VideoStream, av.VideoFrame]:
        """Open and decode a first frame, retrying with back-off; InputError when out of attempts."""
        attempts = 1 if self.kind == "webcam" else 1 + max(0, self._opt.reconnect)
        delay = self._opt.backoff_s
        last_err = "no attempt"
        for attempt in range(attempts):
            if self._stop.is_set():
                break
            if attempt:
                log.info("reconnecting to %s in %.1f s (attempt %d of %d)", redact_url(self.spec), delay, attempt,
                         attempts - 1)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self._opt.backoff_max_s)
            target, kwargs = self._open_args()
            try:
                container = av.open(target, **kwargs)
            except (av.error.FFmpegError, OSError) as exc:
                last_err = getattr(exc, "strerror", None) or str(exc)
                log.info("cannot open %s: %s", redact_url(self.spec), redact_url(last_err))
                continue
            try:
                stream = video_stream(container, self.spec)
                stream.thread_type = "SLICE"  # frame threading would add frames of latency
                self._problems: dict[str, int] = {}
                frames = _decode_packets(container, stream, self._problems)
                first = next(frames, None)
                if first is None:
                    raise av.error.EOFError(0, "stream ended before its first frame")
                self._frames = frames
                return container, stream, first
            except (av.error.FFmpegError, OSError) as exc:
                last_err = getattr(exc, "strerror", None) or str(exc)
                log.info("no frame from %s: %s", redact_url(self.spec), redact_url(last_err))
                container.close()
        what = "open" if initial else "reconnect to"
        raise InputError(f"cannot {what} {redact_url(self.spec)} after {attempts} attempt(s): {redact_url(last_err)}")

    def __iter__(self) -> Iterator[Frame]:
        tb = self.info.time_base
        fix = _Timestamps(self.info)
        offset = 0  # added to pts after a reconnect so they keep increasing
        first = self._first
        while not self._stop.is_set():
            frames = _chain_first(first, self._frames)
            first = None
            base: int | None = None
            for avf in frames:
                if self._opt.max_frames is not None and self.frames_read >= self._opt.max_frames:
                    return
                pts = avf.pts
                if pts is not None and avf.time_base is not None and avf.time_base != tb:
                    pts = int(pts * avf.time_base / tb)
                if pts is not None and offset:
                    if base is None:
                        base = pts
                    pts = pts - base + offset
                img = _rgb_tensor(avf, self.info.rotation, self._device)
                yield Frame(self.frames_read, fix(pts), tb, img)
                self.frames_read += 1
                if self._stop.is_set():
                    return
            if self.kind == "webcam" or not self.live or self._stop.is_set():
                return
            log.warning("%s stopped delivering frames; reconnecting", redact_url(self.spec))
            self._container.close()
            self._container, self._stream, first = self._connect(initial=False)
            self.reconnects += 1
            offset = (fix.last or 0) + fix.step

    def close(self) -> None:
        self._stop.set()
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not mask the real error
            pass


def open_source(spec: str | os.PathLike[str], options: SourceOptions = SourceOptions(), *,
                gpu: GpuProbe | None = None) -> VideoSource:
    """Open an input of any kind, choosing the decoder (see `choose_decoder`); `source.choice`
    says which and why. Raises InputError with a one-line reason for unusable inputs."""
    spec = str(spec)
    kind = classify(spec)
    if kind in ("webcam", "network"):
        if options.decoder == "nvdec":
            raise InputError(f"--decoder nvdec reads local files only, not {kind} inputs")
        return LiveSource(spec, kind, options)
    check_file(spec)
    if kind == "image":
        return ImageSource(spec, options)
    device = torch.device(options.device)
    if options.decoder == "pyav" or (options.decoder == "auto" and device.type != "cuda"):
        choice = choose_decoder(options.decoder, kind=kind, codec="", device=device,
                                gpu=gpu or GpuProbe(False, None, False, "not probed", False, "not probed"))
        return PyAVFileSource(spec, options, choice)
    gpu = gpu or probe_gpu(device)
    src = PyAVFileSource(spec, options, BackendChoice("pyav", ""))  # probes and validates the file
    choice = choose_decoder(options.decoder, kind=kind, codec=src.info.codec, device=device, gpu=gpu)
    if choice.backend == "pyav":
        src.choice = choice
        return src
    info = src.info
    src.close()
    return NvDecFileSource(spec, options, choice, info)


def time_range(src: VideoSource, start_s: float, end_s: float | None) -> Iterator[Frame]:
    """The frames of `src` from `start_s` to `end_s` (seconds), timestamps shifted so the range
    starts at 0 (a file sink given the same range shifts the copied audio alike)."""
    if start_s > 2.0 and hasattr(src, "seek"):
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


@dataclass(frozen=True, slots=True)
class FrameSpan:
    """One chunk of a video file for a distributed job, as pts in the file's video time base.

    Decoding starts at the keyframe `seek` (None: the file's start; demux-seek, nothing before it
    is decoded); frames from `run_from` on enter the pipeline, those before `emit_from` only as
    warm-up (tracking, landmarks and mask hysteresis start there so they are settled at the seam);
    frames in [emit_from, emit_to) are written; processing stops before `run_to` (the tracker's
    look-ahead past `emit_to`). None for `emit_to` / `run_to`: the end of the file.
    frames: how many frames the span writes.
    """

    seek: int | None
    run_from: int
    emit_from: int
    emit_to: int | None
    run_to: int | None
    frames: int

    def emits(self, pts: int) -> bool:
        """Whether the frame at `pts` is written (not warm-up or look-ahead)."""
        return pts >= self.emit_from and (self.emit_to is None or pts < self.emit_to)


def frame_span(src: VideoSource, span: FrameSpan) -> Iterator[Frame]:
    """The frames of `src` (a file source) the span processes: from `run_from` to before `run_to`,
    pts unchanged, indices counted from 0."""
    if span.seek is not None:
        if not hasattr(src, "seek"):
            raise InputError(f"{src.spec}: this decoder cannot seek; a frame span needs PyAV")
        # half a tick on: the float round trip must not land before the keyframe (an earlier one
        # would only cost decoding, a later one would lose frames)
        src.seek(float((span.seek + Fraction(1, 2)) * src.info.time_base))
    n = 0
    for frame in src:
        if frame.pts < span.run_from:
            continue
        if span.run_to is not None and frame.pts >= span.run_to:
            break
        yield Frame(n, frame.pts, frame.time_base, frame.image, frame.faces, frame.extras)
        n += 1
