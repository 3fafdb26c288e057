"""Video files and still images decoded by PyAV (FFmpeg), on any machine."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import torch

from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.video.nv import BackendChoice
from streamswap.video.probe import (
    InputKind,
    VideoInfo,
    open_container,
    video_info,
    video_stream,
)
from streamswap.video.sources.base import (
    SourceOptions,
    VideoSource,
    _chain_first,
    _decode_packets,
    _Pacer,
    _rgb_tensor,
    _Timestamps,
)

log = logging.getLogger(__name__)


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
        tb = self._stream.time_base
        assert tb is not None  # PyAV types it optional; a stream we decode has one
        self._container.seek(int(seconds / tb), stream=self._stream, backward=True)
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
        self.info = VideoInfo(
            width=w, height=h, fps=None, time_base=Fraction(1, 1), frames=1, duration_s=None, codec="image"
        )

    def __iter__(self) -> Iterator[Frame]:
        self.frames_read = 1
        yield Frame(0, 0, Fraction(1, 1), self._image)
