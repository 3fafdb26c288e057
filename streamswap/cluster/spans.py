"""Spans: the part of a video file one chunk of a cluster job (or one run of a resumable job)
processes and writes, how its frames are read (`frame_span`), and its sink (`open_span_sink`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.video.nv import BackendChoice
from streamswap.video.sources import Seekable, VideoSource

if TYPE_CHECKING:
    from streamswap.options import SwapOptions
    from streamswap.video.sinks import FileSink


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
        if not isinstance(src, Seekable):
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


class SpanWriter:
    """A file sink that writes only the frames with emit_from <= pts < emit_to (emit_to None: no
    end): a chunk of a distributed job processes warm-up and look-ahead frames it does not write.
    `written` counts the frames written; `close` finalises the wrapped sink."""

    def __init__(self, sink: FileSink, emit_from: int, emit_to: int | None) -> None:
        self.sink, self.emit_from, self.emit_to = sink, emit_from, emit_to
        self.report, self.choice = sink.report, sink.choice
        self.written = 0

    def write(self, frame: Frame) -> None:
        if frame.pts >= self.emit_from and (self.emit_to is None or frame.pts < self.emit_to):
            self.sink.write(frame)
            self.written += 1

    def close(self, error: BaseException | None = None) -> None:
        self.sink.close(error)


def open_span_sink(output: str, src: VideoSource, options: SwapOptions, span: FrameSpan) -> SpanWriter:
    """A chunk's sink: x264 with the job's settings (every chunk alike, so their packets can be
    joined; x264 starts each with an IDR frame), no audio (the stitch copies it once), writing
    only the span's frames."""
    from streamswap.video.sinks import EncodeSettings, FileSink

    settings = EncodeSettings(encoder="x264", crf=options.crf, preset=options.preset)
    sink = FileSink(output, src.info, settings, BackendChoice("x264", "chunk of a distributed job"), overwrite=True)
    return SpanWriter(sink, span.emit_from, span.emit_to)
