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

One front door, `open_source` (as `av.open` is PyAV's); the sources by backend: `pyav.py` (files,
images), `nvdec.py` (files on an NVIDIA GPU), `live.py` (webcams, network streams).
"""

from __future__ import annotations

import os

import torch

from streamswap.errors import InputError
from streamswap.video.nv import NOT_PROBED, BackendChoice, GpuProbe, choose_decoder, probe_gpu
from streamswap.video.probe import check_file, classify
from streamswap.video.sources.base import Seekable, SourceOptions, VideoSource, time_range
from streamswap.video.sources.live import LiveSource
from streamswap.video.sources.nvdec import NvDecFileSource
from streamswap.video.sources.pyav import ImageSource, PyAVFileSource

__all__ = [
    "ImageSource",
    "LiveSource",
    "NvDecFileSource",
    "PyAVFileSource",
    "Seekable",
    "SourceOptions",
    "VideoSource",
    "open_source",
    "time_range",
]


def open_source(
    spec: str | os.PathLike[str], options: SourceOptions = SourceOptions(), *, gpu: GpuProbe | None = None
) -> VideoSource:
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
        choice = choose_decoder(options.decoder, kind=kind, facts=None, device=device, gpu=gpu or NOT_PROBED)
        return PyAVFileSource(spec, options, choice)
    gpu = gpu or probe_gpu(device)
    src = PyAVFileSource(spec, options, BackendChoice("pyav", ""))  # probes and validates the file
    choice = choose_decoder(options.decoder, kind=kind, facts=src.info.facts, device=device, gpu=gpu)
    if choice.backend == "pyav":
        src.choice = choice
        return src
    info = src.info
    src.close()
    return NvDecFileSource(spec, options, choice, info)
