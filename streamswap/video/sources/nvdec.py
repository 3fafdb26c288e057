"""Video files decoded by NVDEC on an NVIDIA GPU (PyNvVideoCodec), frames staying on the GPU."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType

import av
import torch

from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.video.color import surface_to_rgb
from streamswap.video.nv import BackendChoice, NvDecoder
from streamswap.video.nvdec_support import surface_for
from streamswap.video.probe import (
    InputKind,
    VideoInfo,
)
from streamswap.video.sources.base import (
    SourceOptions,
    VideoSource,
    _Pacer,
    _rotate,
    _Timestamps,
)

log = logging.getLogger(__name__)


class NvDecFileSource(VideoSource):
    """A video file decoded by NVDEC straight into CUDA memory (NV12, P016 or 4:4:4 -> RGB on the GPU).

    PyAV still probes the file (size, rate, rotation, colour matrix, timestamps if the decoder
    gives none), but no pixel goes through the CPU.
    """

    kind: InputKind = "file"

    def __init__(
        self, path: str, options: SourceOptions, choice: BackendChoice, info: VideoInfo, nvc: ModuleType | None = None
    ) -> None:
        super().__init__()
        self.spec, self.choice, self.info, self._opt = path, choice, info, options
        self._device = torch.device(options.device)
        self._facts = info.facts
        layout = surface_for(self._facts)
        if layout is None:  # choose_decoder refuses these: reaching here is a caller's mistake
            raise InputError(f"{path}: NVDEC surfaces of {self._facts.pix_fmt} are not converted; use --decoder pyav")
        self._layout = layout
        self._decoder = NvDecoder(path, self._device, nvc=nvc)
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
        h, w = self._facts.height, self._facts.width  # the coded picture, before rotation
        for surface, pts in self._decoder:
            if self._opt.max_frames is not None and self.frames_read >= self._opt.max_frames:
                break
            if pts is None:
                pts = self._fallback_pts(self.frames_read)
            pts = fix(pts)
            if pacer:
                pacer.wait(float(pts * tb))
            rgb = surface_to_rgb(
                surface,
                self._layout,
                h,
                w,
                bit_depth=self._facts.bit_depth,
                matrix=self.info.colorspace,
                full_range=self.info.full_range,
            )
            yield Frame(self.frames_read, pts, tb, _rotate(rgb, rot))
            self.frames_read += 1
