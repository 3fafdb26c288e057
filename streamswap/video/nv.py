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
from streamswap.video.nvdec_support import StreamFacts, nvdec_refusal

log = logging.getLogger(__name__)

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
    capability: tuple[int, int] | None = None  # CUDA compute capability: which NVDEC generation


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
    major, minor = torch.cuda.get_device_capability(dev if dev.type == "cuda" else None)
    nvc, why = import_nvcodec()
    ok, enc_why = probe_nvenc(nvc, name)
    return GpuProbe(True, name, nvc is not None, why, ok, enc_why, (int(major), int(minor)))


NOT_PROBED = GpuProbe(False, None, False, "not probed", False, "not probed")


def gpu_for(device: torch.device) -> GpuProbe:
    """`probe_gpu` for a CUDA device; `NOT_PROBED` for any other (a CPU job asks nothing of a GPU)."""
    return probe_gpu(device) if device.type == "cuda" else NOT_PROBED


def choose_decoder(
    requested: str, *, kind: str, facts: StreamFacts | None, device: torch.device, gpu: GpuProbe
) -> BackendChoice:
    """Pick "nvdec" or "pyav" for an input, once, when it is opened.

    requested: "auto", "pyav" or "nvdec" (forced; InputError if impossible).
    kind: classify() of the input (NVDEC here reads local files only). facts: the probed stream
    (None when nothing was probed: a CPU job); NVDEC's support matrix decides (`nvdec_support`).
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
    elif facts is None:
        why_not = "the stream was not probed"
    else:
        refusal = nvdec_refusal(facts, gpu.capability)
        if refusal is not None:
            why_not = f"{gpu.gpu_name}: {refusal}"
    if why_not is None:
        assert facts is not None
        return BackendChoice(
            "nvdec",
            "forced by --decoder nvdec"
            if requested == "nvdec"
            else f"CUDA device {gpu.gpu_name} with NVDEC for {facts.codec}",
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


def decoder_pts(value: object) -> int | None:
    """A decoded frame's timestamp, or None when it is missing: absent, INT64_MIN (FFmpeg's
    AV_NOPTS_VALUE, as PyNvVideoCodec passes it on) or negative; the source then fills it in
    as it does for PyAV."""
    if value is None:
        return None
    pts = int(value)  # type: ignore[call-overload]
    return None if pts < 0 else pts


class NvDecoder:
    """Decode a local file with NVDEC into surface tensors, in display order.

    Yields (surface, pts): the surface as `color.surface_to_rgb` reads it ((H * 3 // 2, W) for
    4:2:0, (3 * H, W) for 4:4:4; uint8, or uint16 above 8 bits) on `device` (a copy, safe to
    keep); pts in the stream's time base, None when the decoder gave none (see `decoder_pts`).
    """

    def __init__(self, path: str, device: torch.device, nvc: ModuleType | None = None) -> None:
        if nvc is None:
            nvc, why = import_nvcodec()
            if nvc is None:
                raise InputError(why)
        self._device, self._nvc = device, nvc
        self._demuxer = nvc.CreateDemuxer(filename=path)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int | None]]:
        cuda = self._device.type == "cuda"
        # the decoder is made here, in the thread that reads it, on that thread's stream (the graph
        # gives its source a stream of its own): a null stream would make PyNvVideoCodec wait
        # for the whole device (cuStreamSynchronize(NULL)) at every frame
        stream = torch.cuda.current_stream(self._device).cuda_stream if cuda else 0
        decoder = self._nvc.CreateDecoder(
            gpuid=(self._device.index or 0) if cuda else 0,
            codec=self._demuxer.GetNvCodecId(),
            cudacontext=0,
            cudastream=stream,
            usedevicememory=True,
        )
        for packet in self._demuxer:
            for frame in decoder.Decode(packet):
                # the copy is queued on this stream after the decoder's own copy-out of the frame and
                # before its next one (same stream), so its reused buffer needs no host wait
                surface = torch.from_dlpack(frame).to(self._device).clone()
                yield surface, decoder_pts(getattr(frame, "timestamp", None))


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
