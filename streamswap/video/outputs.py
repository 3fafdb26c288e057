"""Where frames go: the `VideoSink` protocol every sink meets, and `open_sink`, the one front
door every job uses (swap, live, transcode), as `open_source` is for inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from streamswap.errors import InputError
from streamswap.video.nv import BackendChoice, GpuProbe, choose_encoder
from streamswap.video.probe import classify

if TYPE_CHECKING:
    from streamswap.frames import Frame
    from streamswap.video.probe import VideoInfo
    from streamswap.video.sinks import EncodeSettings, SinkReport


@runtime_checkable
class VideoSink(Protocol):
    """Takes frames in order (`write`), then `close(error)` finalises it (error: why the job
    ended early, or None). `choice`: the encoder (or window) and why; `report`: what it wrote
    (for a file: its final or partial path, and whether it is complete)."""

    choice: BackendChoice
    report: SinkReport

    def write(self, frame: Frame) -> None: ...

    def close(self, error: BaseException | None = None) -> None: ...


@dataclass(frozen=True)
class OutputOptions:
    """How a job writes its output. overwrite: replace an existing file; audio_from: a file whose
    audio is copied (None: no audio) over `audio_range` seconds; metadata: container tags;
    recording: a live job's file (published whenever it is stopped, not only when complete)."""

    settings: EncodeSettings
    overwrite: bool = False
    audio_from: str | None = None
    audio_range: tuple[float, float | None] = (0.0, None)
    metadata: dict[str, str] | None = None
    recording: bool = False


def output_kind(output: str) -> str:
    """preview, virtual-cam, network (rtsp:// rtmp:// ...), image or file."""
    if output in ("preview", "virtual-cam"):
        return output
    return classify(output)


def open_sink(
    output: str, info: VideoInfo, options: OutputOptions, *, device: torch.device, gpu: GpuProbe, still: bool = False
) -> VideoSink:
    """The sink for `output`: "preview" (a window), "virtual-cam", an rtsp:// or rtmp:// stream
    (x264 tuned for latency), an image file (when the input is a `still`), or a video file
    (x264 or NVENC, `choose_encoder`)."""
    from streamswap.video.sinks import FileSink, ImageSink, NetworkSink, PreviewSink, VirtualCamSink

    kind = output_kind(output)
    if kind == "preview":
        return PreviewSink()
    if kind == "virtual-cam":
        return VirtualCamSink(info)
    if kind == "network":
        if options.settings.encoder == "nvenc":
            raise InputError("--encoder nvenc writes files only; streams use x264")
        return NetworkSink(output, info, options.settings)
    if still and kind == "image":
        return ImageSink(output)
    enc = choose_encoder(options.settings.encoder, device=device, gpu=gpu)
    return FileSink(
        output,
        info,
        options.settings,
        enc,
        overwrite=options.overwrite,
        audio_from=options.audio_from,
        metadata=options.metadata,
        audio_range=options.audio_range,
        recording=options.recording,
    )
