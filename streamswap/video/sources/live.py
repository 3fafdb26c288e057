"""Live inputs: webcams (v4l2) and network streams (RTSP/RTMP/HTTP), with timeouts and
reconnects with back-off."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import torch

from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.redact import redact_url
from streamswap.video.nv import BackendChoice
from streamswap.video.probe import (
    LIVE_SCHEMES,
    InputKind,
    video_info,
    video_stream,
    webcam_device,
)
from streamswap.video.sources.base import (
    SourceOptions,
    VideoSource,
    _chain_first,
    _decode_packets,
    _rgb_tensor,
    _Timestamps,
)

log = logging.getLogger(__name__)


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
            opts = {
                k: v
                for k, v in (
                    ("video_size", o.webcam_size),
                    ("framerate", o.webcam_fps),
                    ("input_format", o.webcam_format),
                )
                if v
            }
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
                log.info(
                    "reconnecting to %s in %.1f s (attempt %d of %d)",
                    redact_url(self.spec),
                    delay,
                    attempt,
                    attempts - 1,
                )
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
        first: av.VideoFrame | None = self._first
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
