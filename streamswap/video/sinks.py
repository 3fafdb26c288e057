"""Where frames go: video files (libx264 through PyAV, or NVENC through PyNvVideoCodec on GPUs that
have one), RTSP/RTMP servers, and a preview window.

File output:
- written to a hidden, exclusively created temporary file in the output's folder
  (`streamswap.files`) and renamed to the final name only when complete; after an error or a
  stop signal the sink still flushes the encoder and closes the container, and the file, playable
  up to the last written frame, becomes `NAME.partial.EXT`: an existing complete output is never
  replaced by a partial one (a live recording's stop is its normal end: it takes the final name;
  nothing is kept if no frame was written);
- each frame keeps its pts and time base, so variable frame rates stay in sync;
- audio and subtitle streams of `audio_from` are copied packet by packet, not re-encoded
  (with `audio_range`, only that stretch of the input, shifted to start at 0 like the video),
  interleaved with the video by time (after an error, only up to the last written frame);
  streams the output container cannot hold are skipped with a note;
- yuv420p (what players expect of H.264) needs even sizes: an odd width or height is padded by one
  pixel, repeating the last column/row, so no input pixel is lost (`padded` says so).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import av
import numpy as np
import torch

from streamswap.errors import InputError
from streamswap.files import partial_name, publish, temp_beside
from streamswap.frames import Frame
from streamswap.redact import redact_url
from streamswap.stream.graph import Interrupted
from streamswap.stream.stage import StopPipeline
from streamswap.video.color import rgb_to_nv12
from streamswap.video.containers import add_video_stream, choose_file_encoder, encoder_options, quiet_svt
from streamswap.video.nv import BackendChoice, NvEncoder
from streamswap.video.probe import VideoInfo

log = logging.getLogger(__name__)

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# x264's rc-lookahead per preset (frames), from x264's preset table
X264_LOOKAHEAD = {
    "ultrafast": 0,
    "superfast": 0,
    "veryfast": 10,
    "faster": 20,
    "fast": 30,
    "medium": 40,
    "slow": 50,
    "slower": 60,
    "veryslow": 60,
    "placebo": 60,
}


@dataclass(frozen=True, slots=True)
class EncodeSettings:
    """Video encoder settings. crf: quality (x264 CRF, 0 lossless .. 51; NVENC constant QP);
    preset: x264 speed preset (mapped to NVENC P1..P7); threads: encoder threads (0: auto);
    gop: keyframe interval in frames (None: the encoder's default); max_lookahead: caps x264's
    rate-control look-ahead (medium's 40 frames hold about 60 MB more than 20 at 720p, for a
    small gain in bits; 20 is what x264's `faster` uses; None: the preset's own)."""

    encoder: str = "auto"
    crf: int = 18
    preset: str = "medium"
    threads: int = 0
    gop: int | None = None
    max_lookahead: int | None = 20
    # where RGB -> YUV 4:2:0 happens for x264: None: on the frames' device (a GPU's frames are
    # converted there and cross to the host at half the bytes, through a ring of pinned buffers),
    # True: in torch whatever the device (how the tests walk the GPU's code), False: swscale
    yuv_in_torch: bool | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.crf <= 51:
            raise InputError(f"--crf {self.crf} is out of range (0 best .. 51 worst)")
        if self.preset not in X264_PRESETS:
            raise InputError(f"unknown --preset {self.preset!r} (one of {', '.join(X264_PRESETS)})")


def pad_even(img: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) -> (H + H % 2, W + W % 2, 3), repeating the last row/column (any device)."""
    h, w = img.shape[:2]
    if h % 2:
        img = torch.cat([img, img[-1:]], dim=0)
    if w % 2:
        img = torch.cat([img, img[:, -1:]], dim=1)
    return img


def _fps_hint(info: VideoInfo) -> Fraction:
    return Fraction(info.fps) if info.fps else Fraction(30)


class _X264Writer:
    """libx264 (or `codec`, another CPU encoder such as libvpx-vp9 for containers that do not hold
    H.264; see `video.containers`) through PyAV: RGB frames in, packets of the output stream out."""

    def __init__(
        self,
        out: av.container.OutputContainer,
        width: int,
        height: int,
        info: VideoInfo,
        settings: EncodeSettings,
        codec: str = "libx264",
    ) -> None:
        s = add_video_stream(out, codec, rate=_fps_hint(info))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = info.time_base
        cc = s.codec_context
        cc.time_base = info.time_base
        if codec == "libx264":
            opts = {"crf": str(settings.crf), "preset": settings.preset}
            preset_lookahead = X264_LOOKAHEAD[settings.preset]
            if settings.max_lookahead is not None and settings.max_lookahead < preset_lookahead:
                opts["rc-lookahead"] = str(settings.max_lookahead)
        else:
            if codec == "libsvtav1":
                quiet_svt()
            opts = encoder_options(codec, settings.crf, settings.preset, settings.max_lookahead)
        if settings.gop:
            opts["g"] = str(settings.gop)
        cc.options = opts
        cc.thread_count = settings.threads
        cc.color_range = 1  # MPEG levels, what we convert to
        if info.colorspace:
            cc.colorspace = {"ITU709": 1, "ITU601": 5, "SMPTE170M": 6, "SMPTE240M": 7, "BT2020": 9}[info.colorspace]
        self.stream = s
        self._colorspace = info.colorspace

        self._yuv_in_torch = settings.yuv_in_torch
        self._ring: YuvRing | None = None

    def encode(self, img: torch.Tensor, pts: int, time_base: Fraction) -> list[av.Packet]:
        if self._yuv_in_torch is None:
            self._yuv_in_torch = img.device.type != "cpu"
        if self._yuv_in_torch:
            if self._ring is None:
                self._ring = YuvRing(img.shape[0], img.shape[1], img.device, matrix=self._colorspace)
            self._ring.put(img, pts, time_base)
            return self._encode_ready(keep=1)  # the newest frame's copy runs on while the older ones encode
        vf = av.VideoFrame.from_ndarray(img.cpu().numpy(), format="rgb24")
        vf = vf.reformat(format="yuv420p", dst_colorspace=self._colorspace, dst_color_range="MPEG")
        vf.pts, vf.time_base = pts, time_base
        return list(self.stream.encode(vf))

    def _encode_ready(self, keep: int) -> list[av.Packet]:
        packets: list[av.Packet] = []
        assert self._ring is not None
        for yuv, pts, time_base in self._ring.take(keep):
            vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")  # copies: the ring's buffer is free again
            vf.pts, vf.time_base = pts, time_base
            if self._colorspace:
                vf.colorspace = self.stream.codec_context.colorspace
            vf.color_range = 1
            packets += self.stream.encode(vf)
        return packets

    def flush(self) -> list[av.Packet]:
        held = self._encode_ready(keep=0) if self._ring is not None else []
        return held + list(self.stream.encode(None))


class YuvRing:
    """RGB frames on a device -> YUV 4:2:0 on that device (`color.rgb_to_yuv420`, BT.601/709
    limited range as x264 is told), copied without blocking into a few host buffers, pinned when
    the device is a GPU; each copy is waited for (its CUDA event) only when its frame is taken.

    put((H, W, 3) uint8 on the device, pts, time_base); take(keep) -> the oldest frames but the
    `keep` newest, as ((H * 3 // 2, W) uint8 numpy yuv420p, pts, time_base), in order."""

    def __init__(self, height: int, width: int, device: torch.device, *, matrix: str | None, slots: int = 3) -> None:
        pinned = device.type == "cuda"
        self._buffers = [
            torch.empty((height * 3 // 2, width), dtype=torch.uint8, pin_memory=pinned) for _ in range(slots)
        ]
        self._events = [torch.cuda.Event() if pinned else None for _ in range(slots)]
        self._device, self._matrix = device, matrix
        self._held: deque[tuple[int, int, Fraction]] = deque()
        self._next = 0

    def put(self, rgb: torch.Tensor, pts: int, time_base: Fraction) -> None:
        from streamswap.video.color import rgb_to_yuv420

        if len(self._held) == len(self._buffers):
            raise RuntimeError("YuvRing: every buffer is still held; take frames before putting more")
        slot, self._next = self._next, (self._next + 1) % len(self._buffers)
        self._buffers[slot].copy_(rgb_to_yuv420(rgb, matrix=self._matrix), non_blocking=True)
        event = self._events[slot]
        if event is not None:
            event.record(torch.cuda.current_stream(self._device))
        self._held.append((slot, pts, time_base))

    def take(self, keep: int) -> Iterator[tuple[np.ndarray, int, Fraction]]:
        while len(self._held) > keep:
            slot, pts, time_base = self._held.popleft()
            event = self._events[slot]
            if event is not None:
                event.synchronize()  # this frame's copy only, not the device
            yield self._buffers[slot].numpy(), pts, time_base


class _AnnexBWriter:
    """An external H.264 encoder (NVENC) producing an Annex B byte stream: split into access units
    by FFmpeg's parser, timestamped in input order (the encoder runs without B-frames) and muxed
    into a stream without a codec context."""

    def __init__(
        self, out: av.container.OutputContainer, width: int, height: int, info: VideoInfo, encoder: Any
    ) -> None:
        self.stream = out.add_mux_stream(
            "h264", rate=_fps_hint(info), width=width, height=height, time_base=info.time_base
        )
        self._encoder = encoder
        self._parser = av.CodecContext.create("h264", "r")
        self._pts: deque[int] = deque()
        self._tb = info.time_base
        self._matrix = info.colorspace

    def _packets(self, data: bytes, final: bool = False) -> list[av.Packet]:
        pkts = list(self._parser.parse(data)) if data else []
        if final:
            pkts += list(self._parser.parse(b""))
        for p in pkts:
            if not self._pts:
                raise RuntimeError("the encoder returned more frames than it was given")
            p.pts = p.dts = self._pts.popleft()
            p.time_base = self._tb
            p.stream = self.stream
        return pkts

    def encode(self, img: torch.Tensor, pts: int, time_base: Fraction) -> list[av.Packet]:
        self._pts.append(pts)
        return self._packets(self._encoder.encode(rgb_to_nv12(img, matrix=self._matrix)))

    def flush(self) -> list[av.Packet]:
        return self._packets(self._encoder.flush(), final=True)


class _StreamCopier:
    """Copies the input's audio and subtitle packets into the output, unchanged."""

    def __init__(self, src: str, out: av.container.OutputContainer, start_s: float = 0.0) -> None:
        self._in = av.open(src)
        self._out = out
        self._start_s = start_s  # a time range's start: earlier packets are skipped, later ones shifted to 0
        self.notes: list[str] = []
        supported = out.supported_codecs
        self._map: dict[int, Any] = {}
        wanted = []
        for s in self._in.streams:
            if s.type not in ("audio", "subtitle"):
                continue
            name = s.codec_context.name if s.codec_context else "unknown"
            if name not in supported:
                self.notes.append(f"{s.type} stream #{s.index} ({name}) cannot go into {out.format.name}: not copied")
                continue
            self._map[s.index] = out.add_stream_from_template(s)
            wanted.append(s)
        self._demux = self._in.demux(wanted) if wanted else iter(())
        self._pending: av.Packet | None = None
        self.packets = 0

    def pump(self, until_s: float | None) -> None:
        """Mux packets whose dts is at most `until_s` seconds (all that are left if None)."""
        while True:
            pkt = self._pending
            if pkt is None:
                try:
                    pkt = next(self._demux)
                except StopIteration:
                    return
                except av.error.FFmpegError as exc:  # a damaged input's audio ends here
                    log.debug("stopped copying audio: %s", exc)
                    self._demux = iter(())
                    return
            if pkt.dts is None:  # demux's flush packets carry no data
                self._pending = None
                continue
            t = float(pkt.dts * pkt.time_base) - self._start_s
            if until_s is not None and t > until_s:
                self._pending = pkt
                return
            self._pending = None
            if self._start_s and t < 0:  # before the range (a whole file keeps AAC's negative-dts priming)
                continue
            if self._start_s:
                shift = int(round(self._start_s / pkt.time_base))
                pkt.dts -= shift
                if pkt.pts is not None:
                    pkt.pts -= shift
            pkt.stream = self._map[pkt.stream_index]
            self._out.mux(pkt)
            self.packets += 1

    def close(self) -> None:
        self._in.close()


@dataclass
class SinkReport:
    """What a sink did: frames written, where, with what; notes for the user."""

    path: str
    encoder: str
    frames: int = 0
    padded: bool = False
    audio_packets: int = 0
    finalised: bool = False
    complete: bool = False  # True: the output took its final name (see FileSink)
    notes: list[str] = field(default_factory=list)


class FileSink:
    """Encodes frames into a video file; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: VideoInfo,
        settings: EncodeSettings,
        choice: BackendChoice,
        *,
        audio_from: str | None = None,
        overwrite: bool = False,
        nvenc_factory: Callable[..., Any] | None = None,
        metadata: dict[str, str] | None = None,
        audio_range: tuple[float, float | None] = (0.0, None),
        recording: bool = False,
    ) -> None:
        """recording: a live recording, complete whenever it is stopped (not failed)."""
        self.path = Path(path)
        self.recording = recording
        if not self.path.parent.is_dir():
            raise InputError(f"output folder {self.path.parent} does not exist")
        if self.path.exists() and not overwrite:
            raise InputError(f"output {self.path} exists (pass --overwrite to replace it)")
        if self.path.is_dir():
            raise InputError(f"output {self.path} is a directory")
        self.info, self.settings, self.choice = info, settings, choice
        self._encoder, self.choice = choose_file_encoder(self.path, choice)  # e.g. .webm: VP9; .gif: refused
        self._audio_from = audio_from
        self._audio_range = audio_range  # (start, end) s of the input the video frames come from
        self._nvenc_factory = nvenc_factory or NvEncoder
        self.tmp = temp_beside(self.path)
        try:
            self._out = av.open(str(self.tmp), "w")
        except (av.error.FFmpegError, ValueError) as exc:
            self.tmp.unlink(missing_ok=True)
            raise InputError(f"cannot write {self.path}: {exc} (use a video suffix such as .mp4 or .mkv)") from None
        self._out.metadata.update(metadata or {})  # container tags, e.g. marking synthetic media
        self._writer: _X264Writer | _AnnexBWriter | None = None
        self._copier: _StreamCopier | None = None
        self._size: tuple[int, int] | None = None
        self._last_end_s = 0.0
        self.report = SinkReport(str(self.path), self.choice.backend)

    def _open_streams(self, frame: Frame) -> None:
        h, w = frame.height, frame.width
        H, W = h + h % 2, w + w % 2
        self.report.padded = (H, W) != (h, w)
        if self.report.padded:
            self.report.notes.append(f"odd frame size {w}x{h} padded to {W}x{H} (yuv420p needs even sizes)")
        if self.choice.backend == "nvenc":
            try:
                enc = self._nvenc_factory(
                    W,
                    H,
                    fps=float(_fps_hint(self.info)),
                    crf=self.settings.crf,
                    preset=self.settings.preset,
                    gop=self.settings.gop or 250,
                )
            except Exception as exc:  # noqa: BLE001 - the probe said yes, the driver said no: still encode
                failure = f"NVENC failed to start ({type(exc).__name__}: {exc})"
                if self.settings.encoder == "nvenc":  # forced: no silent fallback
                    raise InputError(f"--encoder nvenc: {failure}; use --encoder x264 or auto") from None
                why = f"{failure}; used CPU libx264 instead"
                log.warning(why)
                self.report.notes.append(why)
                self.choice = BackendChoice("x264", why)
                self.report.encoder = "x264"
        if self.choice.backend == "nvenc":
            self._writer = _AnnexBWriter(self._out, W, H, self.info, enc)
        else:
            self._writer = _X264Writer(self._out, W, H, self.info, self.settings, self._encoder.codec)
        if self._audio_from:
            self._copier = _StreamCopier(self._audio_from, self._out, self._audio_range[0])
            self.report.notes += self._copier.notes
        self._size = (h, w)

    def write(self, frame: Frame) -> None:
        """Encode one frame: (H, W, 3) uint8 RGB on any device, pts in its time base."""
        if self._writer is None:
            self._open_streams(frame)
        assert self._writer is not None and self._size is not None  # both set by _open_streams
        if (frame.height, frame.width) != self._size:
            raise RuntimeError(
                f"frame size changed from {self._size[1]}x{self._size[0]} to {frame.width}x{frame.height} mid-stream"
            )
        t = frame.time
        if self._copier:
            self._copier.pump(t)
        for pkt in self._writer.encode(pad_even(frame.image), frame.pts, frame.time_base):
            self._out.mux(pkt)
        self.report.frames += 1
        step = 1 / float(self.info.fps) if self.info.fps else 0.0
        self._last_end_s = t + step

    def close(self, error: BaseException | None = None) -> None:
        """Finalise: flush the encoder, copy the remaining audio (only up to the last frame after
        an error), close the container and move it into place. Always call it."""
        if self.report.finalised:
            return
        self.report.finalised = True
        try:
            if self._writer is not None:
                try:
                    for pkt in self._writer.flush():
                        self._out.mux(pkt)
                finally:
                    if self._copier:
                        end = self._audio_range[1]
                        span = None if end is None else end - self._audio_range[0]
                        self._copier.pump(span if error is None else self._last_end_s)
                        self.report.audio_packets = self._copier.packets
        finally:
            try:
                self._out.close()
            finally:
                if self._copier:
                    self._copier.close()
                if self.report.frames:
                    complete = error is None or (self.recording and isinstance(error, Interrupted))
                    final = self.path if complete else partial_name(self.path)
                    publish(self.tmp, final)
                    self.report.path, self.report.complete = str(final), complete
                    if complete:  # an earlier stopped run's partial is superseded
                        partial_name(self.path).unlink(missing_ok=True)
                else:
                    self.tmp.unlink(missing_ok=True)
                    self.report.notes.append("no frame was written: no output file")


class NetworkSink:
    """Streams H.264 (libx264, zero-latency tuning) to an RTSP server (rtsp://) or an RTMP server
    (rtmp://, FLV).

    PyAV holds the GIL while it opens a network output and ignores timeouts there, so an
    unreachable server would freeze the whole process: a plain TCP connection with a timeout is
    tried first, and an unreachable server is an InputError before FFmpeg is involved.
    """

    def __init__(
        self,
        url: str,
        info: VideoInfo,
        settings: EncodeSettings,
        *,
        transport: str = "udp",
        connect_timeout_s: float = 3.0,
    ) -> None:
        u = urlparse(url)
        scheme = u.scheme.lower()
        if scheme not in ("rtsp", "rtmp"):
            raise InputError(f"cannot stream to {scheme}:// (use rtsp:// or rtmp://)")
        port = u.port or (554 if scheme == "rtsp" else 1935)
        if not u.hostname:
            raise InputError(f"no host in {redact_url(url)}")
        try:
            socket.create_connection((u.hostname, port), timeout=connect_timeout_s).close()
        except OSError as exc:
            raise InputError(
                f"cannot reach the {scheme.upper()} server at {u.hostname}:{port} "
                f"({exc.strerror or exc}); start it or fix the URL"
            ) from None
        opts = {"rtsp_transport": transport} if scheme == "rtsp" else {}
        fmt = "rtsp" if scheme == "rtsp" else "flv"
        try:
            self._out = av.open(url, "w", format=fmt, options=opts)
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot stream to {redact_url(url)}: {redact_url(str(exc))}") from None
        self.url, self.info, self.settings = url, info, settings
        self._stream: Any = None
        self._pts0: int | None = None
        self._last = -1
        self.report = SinkReport(redact_url(url), "x264")  # what is shown: no credentials
        self.choice = BackendChoice("x264", "network output: libx264 tuned for zero latency")

    def _open_stream(self, frame: Frame) -> None:
        fps = _fps_hint(self.info)
        s = self._out.add_stream("libx264", rate=fps)
        s.width, s.height = frame.width + frame.width % 2, frame.height + frame.height % 2
        s.pix_fmt = "yuv420p"
        s.time_base = frame.time_base
        s.codec_context.time_base = frame.time_base
        gop = self.settings.gop or max(1, int(round(float(fps))))
        s.codec_context.options = {
            "preset": self.settings.preset,
            "tune": "zerolatency",
            "crf": str(self.settings.crf),
            "g": str(gop),
            "bf": "0",
        }
        self._stream = s

    def write(self, frame: Frame) -> None:
        if self._stream is None:
            self._open_stream(frame)
            self._pts0 = frame.pts
        pts = max(frame.pts - (self._pts0 or 0), self._last + 1)
        self._last = pts
        vf = av.VideoFrame.from_ndarray(pad_even(frame.image).cpu().numpy(), format="rgb24")
        vf.pts, vf.time_base = pts, frame.time_base
        for pkt in self._stream.encode(vf):
            self._out.mux(pkt)
        self.report.frames += 1

    def close(self, error: BaseException | None = None) -> None:
        if self.report.finalised:
            return
        self.report.finalised = True
        try:
            if self._stream is not None:
                for pkt in self._stream.encode(None):
                    self._out.mux(pkt)
        finally:
            self._out.close()


def display_problem(
    env: dict[str, str] | None = None, build_info: str | None = None, platform: str | None = None
) -> str | None:
    """Why a preview window cannot be shown here (None if it can)."""
    env = dict(os.environ) if env is None else env
    platform = platform or sys.platform
    if platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset; run it on a desktop or over ssh -X)"
    if build_info is None:
        import cv2

        build_info = cv2.getBuildInformation()
    for line in build_info.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI" and value.strip().upper() in ("NONE", ""):
            return (
                "OpenCV has no GUI support (opencv-python-headless is installed; "
                "install opencv-python for a preview window)"
            )
    return None


class PreviewSink:
    """Shows frames in a window (OpenCV). Closing the window or pressing q/Esc stops the pipeline
    cleanly. InputError at construction where no window can be shown."""

    def __init__(self, title: str = "streamswap") -> None:
        why = display_problem()
        if why:
            raise InputError(f"cannot open a preview window: {why}")
        import cv2

        self._cv2 = cv2
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        self.report = SinkReport("preview", "window")
        self.choice = BackendChoice("window", "preview")

    def write(self, frame: Frame) -> None:
        cv2 = self._cv2
        cv2.imshow(self.title, frame.image.cpu().numpy()[:, :, ::-1])
        key = cv2.waitKey(1) & 0xFF
        if key in (27, ord("q")) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            raise StopPipeline
        self.report.frames += 1

    def close(self, error: BaseException | None = None) -> None:
        try:
            self._cv2.destroyWindow(self.title)
        except Exception:  # noqa: BLE001 - the window may already be gone
            pass


def virtual_cam_problem(devices: list[str] | None = None) -> str | None:
    """Why no virtual camera can be fed here (None: it can): pyvirtualcam must be installed and a
    v4l2loopback device must exist (Linux). `devices`: /sys/class/video4linux entries' names."""
    import importlib.util

    if importlib.util.find_spec("pyvirtualcam") is None:
        return "pyvirtualcam is not installed (`pip install pyvirtualcam`)"
    if sys.platform.startswith("linux"):
        if devices is None:
            root = Path("/sys/class/video4linux")
            devices = [(d / "name").read_text().strip() for d in root.iterdir()] if root.is_dir() else []
        if not any("loopback" in name.lower() or "dummy" in name.lower() for name in devices):
            return "no v4l2loopback device (`sudo modprobe v4l2loopback devices=1`)"
    return None


class VirtualCamSink:
    """Feeds frames to a virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS elsewhere) that
    video-call apps can pick. InputError at construction where none can be fed."""

    def __init__(self, info: VideoInfo) -> None:
        why = virtual_cam_problem()
        if why:
            raise InputError(f"cannot feed a virtual camera: {why}")
        import pyvirtualcam

        fps = float(info.fps) if info.fps else 30.0
        self._cam = pyvirtualcam.Camera(width=info.width, height=info.height, fps=fps)
        self.report = SinkReport(self._cam.device, "virtual camera")
        self.choice = BackendChoice("virtual camera", self._cam.device)

    def write(self, frame: Frame) -> None:
        self._cam.send(frame.image.cpu().numpy())
        self.report.frames += 1

    def close(self, error: BaseException | None = None) -> None:
        self._cam.close()
        self.report.finalised = True


class ImageSink:
    """Writes the one frame of an image job to an image file (by its suffix: .png, .jpg, ...),
    atomically: a temporary name in the same folder, then a rename."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.report = SinkReport(str(self.path), "image")
        self.choice = BackendChoice("image", "a still in, a still out")

    def write(self, frame: Frame) -> None:
        import cv2
        import numpy as np

        rgb = frame.image.cpu().numpy()
        ok, data = cv2.imencode(self.path.suffix or ".png", np.ascontiguousarray(rgb[:, :, ::-1]))
        if not ok:
            raise InputError(f"cannot encode {self.path.suffix!r} images; use .png or .jpg")
        tmp = temp_beside(self.path)
        try:
            tmp.write_bytes(data.tobytes())
            publish(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.report.frames += 1
        self.report.complete = True

    def close(self, error: BaseException | None = None) -> None:
        self.report.finalised = True
