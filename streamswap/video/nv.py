"""PyNvVideoCodec glue (NVDEC decode, NVENC encode) and the backend choices.

`import PyNvVideoCodec` raises RuntimeError on a machine without an NVIDIA driver (it loads
libnvidia-encode even to decode), so it is imported lazily and guarded with `except Exception`.
The choice functions are pure: they take what was probed and return the backend with the reason,
so they are unit-tested without a GPU.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from streamswap.errors import InputError

log = logging.getLogger(__name__)

# codecs NVDEC handles on current GPUs (AV1 is absent on A100/H100/H200: checked separately)
NVDEC_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "mpeg2video", "mpeg4", "vp8", "mjpeg"})
# data-centre GPUs without NVENC (their NVDEC also lacks AV1)
NO_NVENC_GPUS = ("A100", "H100", "H200", "H20", "A30", "B200")

# x264 preset names -> NVENC presets P1 (fastest) .. P7 (best)
NVENC_PRESETS = {
    "ultrafast": "P1",
    "superfast": "P2",
    "veryfast": "P3",
    "faster": "P3",
    "fast": "P4",
    "medium": "P4",
    "slow": "P5",
    "slower": "P6",
    "veryslow": "P7",
    "placebo": "P7",
}


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """Which backend a source or sink uses and why (printed at start-up)."""

    backend: str
    reason: str

    def __str__(self) -> str:
        return f"{self.backend} ({self.reason})"


@dataclass(frozen=True, slots=True)
class GpuProbe:
    """What the machine offers: CUDA, PyNvVideoCodec, NVENC; each `*_why` says why not."""

    cuda: bool
    gpu_name: str | None
    nvcodec: bool
    nvcodec_why: str
    nvenc: bool
    nvenc_why: str


def import_nvcodec() -> tuple[ModuleType | None, str]:
    """(PyNvVideoCodec module or None, why not)."""
    try:
        return importlib.import_module("PyNvVideoCodec"), "PyNvVideoCodec imported"
    except Exception as exc:  # ImportError when absent, RuntimeError without a driver
        return None, f"PyNvVideoCodec unavailable ({type(exc).__name__}: {str(exc).strip() or 'no detail'})"


def probe_nvenc(nvc: ModuleType | None, gpu_name: str | None) -> tuple[bool, str]:
    """Whether the GPU has an H.264 encoder, by asking the driver (GetEncoderCaps)."""
    if nvc is None:
        return False, "PyNvVideoCodec unavailable"
    if gpu_name and any(tag in gpu_name for tag in NO_NVENC_GPUS):
        return False, f"{gpu_name} has no NVENC"
    try:
        caps = nvc.GetEncoderCaps(codec="h264")
    except Exception as exc:  # no encoder engine: the call fails
        return False, f"NVENC probe failed on {gpu_name or 'this GPU'} ({type(exc).__name__}: {exc})"
    if not caps:
        return False, f"{gpu_name or 'this GPU'} reports no H.264 encoder"
    return True, "NVENC H.264 available"


def probe_gpu(device: torch.device | str | None = None) -> GpuProbe:
    """Probe CUDA, PyNvVideoCodec and NVENC on `device` (default: the current CUDA device)."""
    cuda = torch.cuda.is_available()
    if not cuda:
        return GpuProbe(False, None, False, "no CUDA device", False, "no CUDA device")
    dev = torch.device(device) if device is not None else torch.device("cuda")
    name = torch.cuda.get_device_name(dev if dev.type == "cuda" else None)
    nvc, why = import_nvcodec()
    ok, enc_why = probe_nvenc(nvc, name)
    return GpuProbe(True, name, nvc is not None, why, ok, enc_why)


NOT_PROBED = GpuProbe(False, None, False, "not probed", False, "not probed")


def gpu_for(device: torch.device) -> GpuProbe:
    """`probe_gpu` for a CUDA device; `NOT_PROBED` for any other (a CPU job asks nothing of a GPU)."""
    return probe_gpu(device) if device.type == "cuda" else NOT_PROBED


def choose_decoder(requested: str, *, kind: str, codec: str, device: torch.device, gpu: GpuProbe) -> BackendChoice:
    """Pick "nvdec" or "pyav" for an input.

    requested: "auto", "pyav" or "nvdec" (forced; InputError if impossible).
    kind: classify() of the input (NVDEC here reads local files only); codec: FFmpeg codec name.
    """
    if requested not in ("auto", "pyav", "nvdec"):
        raise InputError(f"unknown decoder {requested!r} (choose auto, pyav or nvdec)")
    if requested == "pyav":
        return BackendChoice("pyav", "forced by --decoder pyav")
    why_not = None
    if kind != "file":
        why_not = f"NVDEC reads local video files here, not {kind} inputs"
    elif not gpu.cuda:
        why_not = "no CUDA device"
    elif device.type != "cuda":
        why_not = f"the pipeline runs on {device.type}"
    elif not gpu.nvcodec:
        why_not = gpu.nvcodec_why
    elif codec not in NVDEC_CODECS:
        why_not = f"NVDEC does not decode {codec}"
    elif codec == "av1" and gpu.gpu_name and any(t in gpu.gpu_name for t in NO_NVENC_GPUS):
        why_not = f"{gpu.gpu_name} NVDEC has no AV1"
    if why_not is None:
        return BackendChoice(
            "nvdec",
            "forced by --decoder nvdec"
            if requested == "nvdec"
            else f"CUDA device {gpu.gpu_name} with NVDEC for {codec}",
        )
    if requested == "nvdec":
        raise InputError(f"--decoder nvdec is not possible: {why_not}; use --decoder pyav")
    return BackendChoice("pyav", f"PyAV (FFmpeg) on the CPU: {why_not}")


def choose_encoder(requested: str, *, device: torch.device, gpu: GpuProbe) -> BackendChoice:
    """Pick "nvenc" or "x264". requested: "auto", "x264" or "nvenc" (forced; InputError if impossible)."""
    if requested not in ("auto", "x264", "nvenc"):
        raise InputError(f"unknown encoder {requested!r} (choose auto, x264 or nvenc)")
    if requested == "x264":
        return BackendChoice("x264", "forced by --encoder x264")
    why_not = None
    if not gpu.cuda:
        why_not = "no CUDA device"
    elif device.type != "cuda":
        why_not = f"the pipeline runs on {device.type}"
    elif not gpu.nvenc:
        why_not = gpu.nvenc_why
    if why_not is None:
        return BackendChoice(
            "nvenc", "forced by --encoder nvenc" if requested == "nvenc" else f"NVENC on {gpu.gpu_name}"
        )
    if requested == "nvenc":
        raise InputError(f"--encoder nvenc is not possible: {why_not}; use --encoder x264")
    return BackendChoice("x264", f"CPU libx264: {why_not}")


# --- NVDEC ---------------------------------------------------------------------------------------


class NvDecoder:
    """Decode a local file with NVDEC into NV12 tensors, in display order.

    Yields (nv12, pts): nv12 is (H * 3 // 2, W) uint8 on `device` (a copy, safe to keep), pts in
    the stream's time base (None if the decoder did not report one).
    """

    def __init__(self, path: str, device: torch.device, nvc: ModuleType | None = None) -> None:
        if nvc is None:
            nvc, why = import_nvcodec()
            if nvc is None:
                raise InputError(why)
        self._device = device
        gpu_id = (device.index or 0) if device.type == "cuda" else 0
        self._demuxer = nvc.CreateDemuxer(filename=path)
        self._decoder = nvc.CreateDecoder(
            gpuid=gpu_id, codec=self._demuxer.GetNvCodecId(), cudacontext=0, cudastream=0, usedevicememory=True
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int | None]]:
        cuda = self._device.type == "cuda"
        for packet in self._demuxer:
            for frame in self._decoder.Decode(packet):
                nv12 = torch.from_dlpack(frame).to(self._device).clone()
                if cuda:  # the decoder reuses its surfaces: finish the copy before the next frame
                    torch.cuda.current_stream(self._device).synchronize()
                pts = getattr(frame, "timestamp", None)
                yield nv12, (int(pts) if pts is not None else None)


# --- NVENC ---------------------------------------------------------------------------------------


class NvEncoder:
    """Encode NV12 CUDA frames to an H.264 Annex B byte stream with NVENC (no B-frames, so
    access units come out in input order; the sink splits and timestamps them).

    `encode(nv12)` and `flush()` return the bytes produced so far (possibly empty).
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        fps: float,
        crf: int,
        preset: str,
        gop: int = 250,
        nvc: ModuleType | None = None,
    ) -> None:
        if nvc is None:
            nvc, why = import_nvcodec()
            if nvc is None:
                raise InputError(why)
        self._enc = nvc.CreateEncoder(
            width,
            height,
            "NV12",
            False,
            codec="h264",
            preset=NVENC_PRESETS.get(preset, "P4"),
            tuning_info="high_quality",
            rc="constqp",
            constqp=str(crf),
            fps=str(max(1, int(round(fps)))),
            gop=str(gop),
            bf="0",
        )

    @staticmethod
    def _bytes(chunks: Any) -> bytes:
        if chunks is None:
            return b""
        if isinstance(chunks, (bytes, bytearray, memoryview)):
            return bytes(chunks)
        return b"".join(bytes(c) for c in chunks)

    def encode(self, nv12: torch.Tensor) -> bytes:
        """nv12: (H * 3 // 2, W) uint8 contiguous CUDA tensor."""
        return self._bytes(self._enc.Encode(nv12.contiguous()))

    def flush(self) -> bytes:
        return self._bytes(self._enc.EndEncode())
