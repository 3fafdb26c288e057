"""Resumable file jobs: one continuous pipeline whose output is written as segments in the job's
work directory, stitched into the output at the end (no Ray involved).

Why segments and not chunks: the cluster's chunk jobs each restart the pipeline and process a
warm-up before every chunk; a single process need not. Here the pipeline runs once from the
first unfinished segment to the end and only the sink cuts: at each planned boundary it closes
the segment (x264 starts every segment with an IDR frame, same settings throughout) and records
it finished (frames and SHA-256, `cluster.workdir`). So an uninterrupted run costs only the
segment switches and the final packet-copy stitch; a stopped or crashed run, started again with
the same command, keeps every finished segment and decodes from the keyframe before the first
unfinished one, minus the warm-up margin (tracking, landmarks and mask hysteresis settle there,
as at the cluster's seams). A stop also stitches what was written into `NAME.partial.EXT`.

The plan, the work directory, the warm-up rule and the stitch are the cluster's
(`cluster.chunks`, `cluster.workdir`, `cluster.stitch`); segments are cut every `segment_s`
seconds at any frame, since the resumed run seeks to a keyframe before the warm-up anyway.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamswap import __version__
from streamswap.cluster.chunks import Chunk, PlanSettings, VideoIndex, frame_range, index_video, plan_chunks
from streamswap.cluster.outputs import OutputLock
from streamswap.cluster.spans import FrameSpan
from streamswap.cluster.stitch import stitch
from streamswap.cluster.workdir import ChunkRecord, WorkDir, fingerprint, input_identity
from streamswap.errors import InputError, StreamSwapError
from streamswap.files import partial_name
from streamswap.frames import Frame
from streamswap.video.nv import BackendChoice

if TYPE_CHECKING:
    from streamswap.options import SwapOptions
    from streamswap.video.sources import VideoSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumeSettings:
    """min_s: inputs (or --start/--end ranges) at least this long are resumable by default;
    segment_s: segment length, s; warmup_s: frames processed before a resumed segment, s."""

    min_s: float = 60.0
    segment_s: float = 10.0
    warmup_s: float = 1.0

    def __post_init__(self) -> None:
        if self.segment_s < 1.0:
            raise InputError(f"--segment-seconds {self.segment_s:g}: give at least 1 second")


@dataclass
class ResumePlan:
    """A resumable job: its segments (`chunks`), the work directory, and what this run does:
    segments from `start` on, decoding `span`. `reused`: segments kept from an earlier run."""

    index: VideoIndex
    first: int
    end: int
    chunks: list[Chunk]
    work: WorkDir
    start: int
    span: FrameSpan
    lock: OutputLock
    reused: int = 0

    @property
    def frames(self) -> int:
        """Frames of the whole output."""
        return self.end - self.first

    def release(self) -> None:
        """Let another job work on this output (idempotent)."""
        self.lock.release()


def wants_resume(requested: bool | None, duration_s: float | None, settings: ResumeSettings) -> bool:
    """Whether a video file job is resumable: as requested, or by default when it is at least
    `min_s` long (shorter jobs are cheaper to redo than to plan)."""
    if requested is not None:
        return requested
    return duration_s is not None and duration_s >= settings.min_s


def plan_resume(
    target: str,
    output: str,
    job_key: dict[str, Any],
    *,
    start_s: float,
    end_s: float | None,
    detect_every: int,
    settings: ResumeSettings,
) -> ResumePlan:
    """Plan the segments of `target` (frames of [start_s, end_s)), open the work directory of
    `output` (keeping finished segments when `job_key`, the job's settings, and the plan match)
    and find where this run starts. The frame indices count from the file's first frame. Holds
    the output's lock (`cluster.outputs.OutputLock`) until `release()`: a second job on the same
    output is refused with one line."""
    lock = OutputLock.acquire(output)
    try:
        return _plan(
            target,
            output,
            job_key,
            start_s=start_s,
            end_s=end_s,
            detect_every=detect_every,
            settings=settings,
            lock=lock,
        )
    except BaseException:
        lock.release()
        raise


def _plan(
    target: str,
    output: str,
    job_key: dict[str, Any],
    *,
    start_s: float,
    end_s: float | None,
    detect_every: int,
    settings: ResumeSettings,
    lock: OutputLock,
) -> ResumePlan:
    index = index_video(target)
    ranged = start_s > 0 or end_s is not None
    first, end = frame_range(index, start_s, end_s) if ranged else (0, index.frames)
    plan = PlanSettings(chunk_s=settings.segment_s, warmup_s=settings.warmup_s, lookahead=0, detect_every=detect_every)
    chunks = plan_chunks(index, plan, first, end, at_keyframes=False)
    key = fingerprint(
        {
            "input": input_identity(target),
            "job": job_key,
            "plan": asdict(plan),
            "version": __version__,
            "kind": "resume",
        }
    )
    work = WorkDir.open(output, key, chunks)
    done = work.finished()
    log.debug("resume plan %s: %d segments, finished %s", key, len(chunks), sorted(done))
    start = next((c.number for c in chunks if c.number not in done), len(chunks))
    if start == len(chunks):  # everything was written: only the stitch is left; redo the last segment
        start = len(chunks) - 1  # (cheap, and the job then ends the ordinary way)
    c = chunks[start]
    n = index.frames
    span = FrameSpan(
        seek=None if c.seek == 0 else index.pts[c.seek],
        run_from=index.pts[c.run_from],
        emit_from=index.pts[c.first],
        emit_to=index.pts[end] if end < n else None,
        run_to=index.pts[end] if end < n else None,
        frames=end - c.first,
    )
    return ResumePlan(index, first, end, chunks, work, start, span, lock, reused=start)


@dataclass
class SegmentReport:
    """What the segmented sink did: frames written this run, the file it left (final or
    partial), whether it is complete, notes. `path`/`frames`/`complete` mirror SinkReport."""

    path: str
    encoder: str = "x264"
    frames: int = 0
    audio_packets: int = 0
    complete: bool = False
    output_frames: int = 0
    notes: list[str] = field(default_factory=list)


class SegmentSink:
    """The sink of a resumable job: frames before the plan's first written frame are warm-up
    (dropped); the others go into the segment their pts falls in, one FileSink per segment
    (`open_segment(path)` makes it); a finished segment is recorded in the work directory.
    close(None) after the last segment stitches the output (audio copied from `audio_from`) and
    removes the work directory; close(error) stitches what exists into NAME.partial.EXT."""

    def __init__(
        self,
        plan: ResumePlan,
        output: str,
        open_segment: Callable[[Path], Any],
        *,
        audio_from: str | None,
        start_s: float,
        end_s: float | None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.plan, self.output, self._open_segment = plan, Path(output), open_segment
        self._audio_from, self._start_s, self._end_s, self._metadata = audio_from, start_s, end_s, metadata
        idx = plan.index
        self._starts = [idx.pts[c.first] for c in plan.chunks]
        self._emit_from = plan.span.emit_from
        self._current: int | None = None
        self._sink: Any = None
        self._t0 = time.monotonic()
        self._last_end_s: float | None = None
        self.report = SegmentReport(str(self.output))
        self.choice = BackendChoice("x264", "segments of a resumable job")

    def write(self, frame: Frame) -> None:
        """Write one frame (H, W, 3) uint8 RGB with the input's pts."""
        if frame.pts < self._emit_from:
            return
        n = bisect.bisect_right(self._starts, frame.pts) - 1
        if n != self._current:
            self._finish_segment()
            self._current = n
            self._sink = self._open_segment(self.plan.work.chunk_path(n))
        self._sink.write(frame)
        self.report.frames += 1
        step = 1 / float(self.plan.index.fps) if self.plan.index.fps else 0.0
        self._last_end_s = float(frame.pts * frame.time_base) + step

    def _finish_segment(self) -> None:
        if self._sink is None or self._current is None:
            return
        sink, n = self._sink, self._current
        self._sink = None
        sink.close(None)
        chunk = self.plan.chunks[n]
        if sink.report.frames != chunk.frames:  # the input ended early: a short segment is still kept
            self.report.notes.append(f"segment {n} has {sink.report.frames} of {chunk.frames} planned frames")
        self.plan.work.mark_done(
            n, ChunkRecord(n, sink.report.frames, sink.report.frames, time.monotonic() - self._t0, 0, 0, "local")
        )
        self._t0 = time.monotonic()

    def close(self, error: BaseException | None = None) -> None:
        """Finalise (see the class docstring). Always call it."""
        if error is None:
            self._finish_segment()
            self._stitch_final()
            return
        current, sink = self._current, self._sink
        self._sink = None
        if sink is not None:
            sink.close(error)  # leaves chunk-NNNN.partial.mp4, playable up to its last frame
        self._stitch_partial(current, sink)

    def _stitch_final(self) -> None:
        work, plan = self.plan.work, self.plan
        done = work.finished()
        kept = []
        for c in plan.chunks:
            if c.number not in done:  # the input ended before the plan did (a damaged tail)
                self.report.notes.append(f"the input ended in segment {c.number} of {len(plan.chunks)}")
                break
            kept.append(c.number)
        if not kept:
            return
        expected = sum(done[n].frames for n in kept)
        rep = stitch(
            [work.chunk_path(n) for n in kept],
            self.output,
            expected_frames=expected,
            audio_from=self._audio_from,
            start_s=self._start_s,
            end_s=self._end_s,
            metadata=self._metadata,
        )
        self.report.audio_packets, self.report.output_frames, self.report.complete = rep.audio_packets, rep.frames, True
        partial_name(self.output).unlink(missing_ok=True)  # an earlier stop's partial is superseded
        work.remove()

    def _stitch_partial(self, current: int | None, sink: Any) -> None:
        work, plan = self.plan.work, self.plan
        done = work.finished()
        files, frames = [], 0
        for c in plan.chunks:
            if c.number in done and (current is None or c.number < current):
                files.append(work.chunk_path(c.number))
                frames += done[c.number].frames
            else:
                break
        if sink is not None and sink.report.frames and not sink.report.complete:
            files.append(Path(sink.report.path))
            frames += sink.report.frames
        if not files:
            return
        end_s = self._last_end_s if self._last_end_s is not None else self._end_s
        target = partial_name(self.output)
        try:
            rep = stitch(
                files,
                target,
                expected_frames=frames,
                audio_from=self._audio_from,
                start_s=self._start_s,
                end_s=end_s,
                metadata=self._metadata,
            )
        except (StreamSwapError, OSError) as exc:  # the segments stay: the next run resumes anyway
            self.report.notes.append(f"could not write {target.name} ({exc}); the finished segments are kept")
            return
        self.report.path, self.report.output_frames = str(target), rep.frames
        self.report.audio_packets = rep.audio_packets


__all__ = ["ResumePlan", "ResumeSettings", "SegmentReport", "SegmentSink", "plan_resume", "wants_resume"]


H264_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv")  # where x264 segments can be stitched by packet copy


def plan_job_resume(
    options: SwapOptions,
    engine: str,
    src: VideoSource,
    target: str,
    output: str,
    *,
    encoder: BackendChoice,
    detect_every: int,
) -> ResumePlan | None:
    """The resume plan of a video file job to a video file, or None when it is not resumable:
    too short by default, --no-resume, not an H.264 container, or not encoded by x264
    (`encoder`: the job's encoder choice; segments are joined by packet copy, shown for x264's)."""
    from streamswap.video.probe import classify

    if src.kind != "file" or classify(output) != "file" or Path(output).suffix.lower() not in H264_CONTAINERS:
        return None
    duration = src.info.duration_s
    if duration is not None and (options.start_s > 0 or options.end_s is not None):
        duration = min(duration, options.end_s or duration) - options.start_s
    settings = ResumeSettings() if options.segment_s is None else ResumeSettings(segment_s=options.segment_s)
    if not wants_resume(options.resume, duration, settings) or encoder.backend != "x264":
        return None
    opts = {k: v for k, v in asdict(options).items() if k not in ("overwrite", "resume")}
    for k in ("sources", "target_faces"):  # the same files however they were named
        opts[k] = [str(Path(p).resolve()) for p in opts[k]]
    opts["generator"] = opts["generator"] and str(Path(opts["generator"]).resolve())
    return plan_resume(
        target,
        output,
        {"options": opts, "engine": engine},
        start_s=options.start_s,
        end_s=options.end_s,
        detect_every=detect_every,
        settings=settings,
    )


def open_segment_sink(output: str, src: VideoSource, options: SwapOptions, plan: ResumePlan) -> SegmentSink:
    """A resumable job's sink: x264 segments in the work directory, stitched with the audio."""
    from streamswap.options import SYNTHETIC_COMMENT
    from streamswap.video.sinks import EncodeSettings, FileSink

    settings = EncodeSettings(encoder="x264", crf=options.crf, preset=options.preset)
    choice = BackendChoice("x264", "segment of a resumable job")
    return SegmentSink(
        plan,
        output,
        lambda path: FileSink(path, src.info, settings, choice, overwrite=True),
        audio_from=src.spec,
        start_s=options.start_s,
        end_s=options.end_s,
        metadata={"comment": SYNTHETIC_COMMENT},
    )
