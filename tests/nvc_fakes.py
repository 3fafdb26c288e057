"""A stand-in for PyNvVideoCodec's decoder (the one part that cannot exist without an NVIDIA GPU),
built on FFmpeg: it demuxes and decodes with PyAV and hands each frame over as NVDEC would, a
DLPack surface in NVDEC's native layout for the stream (NV12, P016, YUV444, YUV444_16Bit) and a
timestamp attribute."""

from __future__ import annotations

import types

import av
import numpy as np
import torch

from streamswap.video.nvdec_support import pixel_layout


class FakeNvFrame:
    """Quacks like a PyNvVideoCodec decoded frame: DLPack export of a surface + `timestamp`."""

    def __init__(self, surface: torch.Tensor, pts: int | None) -> None:
        self._t, self.timestamp = surface, pts

    def __dlpack__(self, *args, **kwargs):
        return self._t.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._t.__dlpack_device__()


def nvdec_surface(frame: av.VideoFrame) -> torch.Tensor:
    """The surface NVDEC hands over for this decoded frame: 4:2:0 as (H * 3 // 2, W) with U/V
    interleaved, 4:4:4 as (3 * H, W) planes; above 8 bits uint16 with the bits at the top (P016)."""
    bits, chroma = pixel_layout(frame.format.name)
    dtype = np.uint16 if bits > 8 else np.uint8
    planes = []
    for p in frame.planes:  # each plane without its row padding
        row = p.line_size // np.dtype(dtype).itemsize
        planes.append(np.frombuffer(bytes(p), dtype).reshape(p.height, row)[:, : p.width])
    if chroma == "444":
        surface = np.concatenate(planes, 0)
    elif chroma == "420":
        uv = np.stack([planes[1], planes[2]], -1).reshape(planes[1].shape[0], -1)
        surface = np.concatenate([planes[0], uv], 0)
    else:
        raise ValueError(f"NVDEC hands over no {frame.format.name} surfaces here")
    if bits > 8:
        surface = surface << (16 - bits)
    return torch.from_numpy(np.ascontiguousarray(surface))


def fake_nvc(pts: str = "real") -> types.SimpleNamespace:
    """A PyNvVideoCodec module with CreateDemuxer/CreateDecoder. pts: "real" (the stream's),
    "absent" (no timestamp attribute), "nopts" (INT64_MIN, AV_NOPTS_VALUE) or "negative" (-1)."""

    class Demuxer:
        def __init__(self, filename):
            self._c = av.open(filename)

        def GetNvCodecId(self):
            return 4

        def __iter__(self):
            return iter(self._c.demux(video=0))

    class Decoder:
        def Decode(self, packet):
            out = []
            for f in packet.decode():
                stamp = {"real": f.pts, "nopts": -(2**63), "negative": -1}.get(pts)
                fr = FakeNvFrame(nvdec_surface(f), stamp)
                if pts == "absent":
                    del fr.timestamp
                out.append(fr)
            return out

    return types.SimpleNamespace(CreateDemuxer=lambda filename: Demuxer(filename), CreateDecoder=lambda **kw: Decoder())
