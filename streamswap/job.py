"""One swap job, start to finish: `Job` says what to run, `run_job` runs it (the one way in;
`streamswap.api` is the public face of it).

The input first (`video.sources.open_source`: a bad target fails before any model loads), then
the engine's session (`streamswap.engines`: the job knows no engine's details), then the output
(`video.outputs.open_sink`, a resumable job's segments, or a cluster chunk's span), and the stage
graph source -> analyse -> track -> swap -> sink (`pipeline.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamswap.devices import resolve_device
from streamswap.engines.base import Engine, EngineModels, EngineSession, SourceIdentity, effective_detect_every
from streamswap.engines.registry import choose_engine, engine_named
from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.memory import map_large_blocks
from streamswap.options import SYNTHETIC_COMMENT, SwapOptions, SwapReport, check_job_paths
from streamswap.pipeline import PipelineSettings, analyse_stage, swap_stage, track_stage
from streamswap.redact import redact_data, redact_url
from streamswap.stream import Graph, GraphStats, Sink, Source
from streamswap.stream.host_syncs import HostSyncAudit, audited
from streamswap.stream.metrics import cuda_memory_probe
from streamswap.stream.streams import streams_for
from streamswap.tracking import TrackerSettings
from streamswap.video.nv import GpuProbe, choose_encoder, gpu_for
from streamswap.video.outputs import OutputOptions, VideoSink, open_sink, output_kind
from streamswap.video.sinks import EncodeSettings
from streamswap.video.sources import Seekable, SourceOptions, VideoSource, open_source, time_range

if TYPE_CHECKING:
    import torch

    from streamswap.cluster.spans import FrameSpan
    from streamswap.resume import ResumePlan, SegmentSink

log = logging.getLogger(__name__)

Progress = Callable[[GraphStats, SwapReport], None]


@dataclass(frozen=True)
class Job:
    """One run. live: read a file at its frame rate, as a camera delivers it, with bounded
    latency (causal tracking, batch 1, the oldest frames dropped when the pipeline lags);
    max_frames: stop after that many; span: one chunk of a cluster job (see `swap_span`);
    models / identity: already loaded networks and the job's shared source identity (None:
    the engine loads and computes them); host_syncs: count the processing stages' host syncs
    into this audit (`bench pipeline`; slower); frames_from / frames_to: an already opened
    source and sink to use instead of opening `target` and `output` (frames handed over in
    memory, e.g. a WebRTC track: `video.queues`); `target`/`output` then only name them;
    on_frame: called with each frame as the encoder takes it (a running job's preview: it must
    be quick, and it must not keep more than the latest frame)."""

    options: SwapOptions
    target: str
    output: str
    live: bool = False
    max_frames: int | None = None
    rtsp_transport: str = "tcp"
    span: FrameSpan | None = None
    models: EngineModels | None = None
    identity: SourceIdentity | None = None
    host_syncs: HostSyncAudit | None = None
    frames_from: VideoSource | None = None
    frames_to: VideoSink | None = None
    on_frame: Callable[[Frame], None] | None = None


@dataclass
class _Opened:
    """A started job's parts (closed by the graph, or by `_open` when starting fails)."""

    engine: Engine
    device: torch.device
    src: VideoSource
    session: EngineSession
    sink: VideoSink | SegmentSink  # a SegmentSink reports a SegmentReport, not a SinkReport
    resume: ResumePlan | None


def _open(job: Job, notice: Callable[[str], None] | None) -> tuple[_Opened, str | None]:
    """Open the input first (a bad target fails before any model loads), then the engine and the
    output (last: it creates the output's temporary file)."""
    options = job.options
    engine, message = (engine_named(job.models.engine), None) if job.models else choose_engine(options.engine)
    device = job.models.device if job.models else resolve_device(options.device)
    gpu = gpu_for(device)
    # a span seeks by demuxing, which the NVDEC source cannot: its frames are decoded by PyAV
    src = job.frames_from or open_source(
        job.target,
        SourceOptions(
            device=str(device),
            pace=job.live,
            max_frames=job.max_frames,
            transport=job.rtsp_transport,
            decoder="pyav" if job.span else options.decoder,
        ),
        gpu=gpu,
    )
    if notice and device.type == "cuda" and job.span is None and src.kind == "file" and src.choice.backend != "nvdec":
        notice(f"decoding on the CPU: {src.choice.reason}")
    ranged = options.start_s > 0 or options.end_s is not None
    resume: ResumePlan | None = None
    try:
        if job.span is not None and (ranged or src.kind != "file"):
            raise InputError("a frame span applies to a whole video file (no --start/--end)")
        if message and notice:
            notice(message)
        models = job.models or engine.load(options, device)
        session = engine.session(models, job.identity or engine.source_identity(models, options), options)
        if job.span is None and not (job.live or src.live):
            resume = _plan_resume(job, engine, src, device, gpu)
        if resume is not None and resume.span.seek is not None and not isinstance(src, Seekable):
            if options.decoder == "nvdec":
                raise InputError("--decoder nvdec cannot resume mid-file (it does not seek); use --decoder auto")
            src.close()  # resuming seeks by demuxing, which the NVDEC source cannot: PyAV decodes
            src = open_source(job.target, SourceOptions(device=str(device), decoder="pyav"), gpu=gpu)
        sink = _open_output(job, src, device, gpu, resume)
    except BaseException:
        src.close()
        if resume is not None:
            resume.release()
        raise
    return _Opened(engine, device, src, session, sink, resume), message


def _plan_resume(job: Job, engine: Engine, src: VideoSource, device: torch.device, gpu: GpuProbe) -> ResumePlan | None:
    from streamswap.resume import plan_job_resume

    return plan_job_resume(
        job.options,
        engine.name,
        src,
        job.target,
        job.output,
        encoder=choose_encoder(job.options.encoder, device=device, gpu=gpu),
        detect_every=effective_detect_every(engine, job.options),
    )


def _open_output(
    job: Job, src: VideoSource, device: torch.device, gpu: GpuProbe, resume: ResumePlan | None
) -> VideoSink | SegmentSink:
    options = job.options
    if job.frames_to is not None:
        return job.frames_to
    if job.span is not None:
        from streamswap.cluster.spans import open_span_sink

        return open_span_sink(job.output, src, options, job.span)
    if resume is not None:
        from streamswap.resume import open_segment_sink

        return open_segment_sink(job.output, src, options, resume)
    out = OutputOptions(
        EncodeSettings(encoder=options.encoder, crf=options.crf, preset=options.preset),
        overwrite=options.overwrite,
        audio_from=src.spec if src.kind == "file" else None,
        audio_range=(options.start_s, options.end_s),
        metadata={"comment": SYNTHETIC_COMMENT},
        recording=job.live or src.live,
    )  # a live job's file is complete whenever it stops
    return open_sink(job.output, src.info, out, device=device, gpu=gpu, still=src.kind == "image")


def _frames(job: Job, opened: _Opened, report: SwapReport, notice: Callable[[str], None] | None) -> Iterator[Frame]:
    """The frames the job processes (a time range, a span, or what a resumed run has left), and
    how many the report expects."""
    from streamswap.cluster.spans import frame_span

    options, src, resume = job.options, opened.src, opened.resume
    report.frames_expected = (
        src.info.frames if job.max_frames is None else min(src.info.frames or job.max_frames, job.max_frames)
    )
    if job.span is not None:
        report.frames_expected = job.span.frames
        return frame_span(src, job.span)
    if resume is not None:
        report.segments_reused, report.resumable = resume.reused, True
        report.frames_expected = resume.end - resume.chunks[resume.start].run_from  # this run's frames
        if resume.reused and notice:
            notice(f"resuming: {resume.reused} of {len(resume.chunks)} segments kept from an earlier run")
        return frame_span(src, resume.span)
    if options.start_s > 0 or options.end_s is not None:
        if report.frames_expected and src.info.fps:
            end = options.end_s if options.end_s is not None else (src.info.duration_s or 0)
            report.frames_expected = max(0, round((end - options.start_s) * float(src.info.fps)))
        return time_range(src, options.start_s, options.end_s)
    return iter(src)


def _graph(job: Job, opened: _Opened, report: SwapReport, frames: Iterator[Frame]) -> Graph:
    session, src, device = opened.session, opened.src, opened.device
    live = job.live or src.live
    batch = batch_size_of(job.options, device)
    tracker = TrackerSettings(
        mode="live" if live else "file",
        window=job.options.smoothing_window,
        target_threshold=session.threshold,
        **session.tracker,
        **({"min_hits": 1} if src.kind == "image" else {}),
    )  # a still: no run of hits to wait for
    settings = PipelineSettings(
        batch=1 if live else batch, tracker=tracker, map_to_targets=session.targets is not None, queue=1 if live else 0
    )

    def count(frames_with_faces: int, faces: int, skipped_nonfinite: int = 0) -> None:
        report.frames_swapped += frames_with_faces
        report.faces_swapped += faces
        report.faces_skipped_nonfinite += skipped_nonfinite

    sink = opened.sink
    write = sink.write if job.on_frame is None else _tapped(sink.write, job.on_frame)
    stages = [
        analyse_stage(session.analyser, settings, session.targets is not None),
        track_stage(settings, session.targets),
        swap_stage(session.swappers, settings, device, count),
    ]
    if job.host_syncs is not None:
        stages = [audited(job.host_syncs, s) for s in stages]
    return Graph(
        Source("decode", frames, src.close),
        stages,
        Sink("encode", write, sink.close, queue_size=2 if live else settings.queue_size),
        mode="live" if live else "file",
        gpu_memory=cuda_memory_probe(device),
        streams=streams_for(device),  # on a GPU each stage on its own stream, events between them
    )


def _tapped(write: Callable[[Frame], None], tap: Callable[[Frame], None]) -> Callable[[Frame], None]:
    def tapped(frame: Frame) -> None:
        tap(frame)
        write(frame)

    return tapped


def batch_size_of(options: SwapOptions, device: torch.device) -> int:
    """Frames per model call: the options' batch size, else 8 on a GPU and 2 on the CPU."""
    return options.batch_size or (8 if device.type == "cuda" else 2)


def _finish(report: SwapReport, job: Job, opened: _Opened, graph: Graph, elapsed_s: float) -> None:
    """The report from the graph's final statistics and the sink's own report."""
    from streamswap.cluster.spans import SpanWriter

    final, sink, out = graph.stats(), opened.sink, opened.sink.report
    report.elapsed_s = elapsed_s
    report.frames_in = final.stage("decode").items  # what entered the graph (a live source may have read one more)
    report.frames = sink.written if isinstance(sink, SpanWriter) else final.frames_out
    report.frames_decoded = opened.src.frames_read
    report.status = final.state
    if opened.resume is not None:
        report.frames, report.frames_expected = getattr(out, "output_frames", 0) or report.frames, opened.resume.frames
    if output_kind(job.output) in ("file", "image"):
        report.output, report.complete = out.path, out.complete  # NAME.partial.EXT after a stop
    report.dropped, report.fps = final.dropped, final.frames_per_s
    report.latency_p50_s, report.latency_p95_s = final.latency_p50_s, final.latency_p95_s
    report.graph = redact_data(final.to_dict())  # a stage's error may quote a URL
    if report.frames_swapped == 0:
        report.notes.append("no face found in the target: the output is a copy of the input")
    if report.faces_skipped_nonfinite:
        report.notes.append(
            f"{report.faces_skipped_nonfinite} face(s) left unswapped: the generator gave non-finite "
            "values (NaN/Inf) for them (an overflow in fp16, or a damaged generator: try "
            "--device cpu, or another --generator)"
        )


def run_job(
    job: Job,
    *,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
    on_graph: Callable[[Graph], None] | None = None,
) -> SwapReport:
    """Run `job` to the end of its input, its `max_frames`, a stop (`Graph.stop`, via `on_graph`)
    or Ctrl-C (the output is finalised either way); its report."""
    if job.frames_from is None and job.frames_to is None:  # frames in memory: no paths to check
        check_job_paths(job.options, job.target, job.output)
    map_large_blocks()  # freed frames go back to the system at once (see streamswap.memory)
    opened, message = _open(job, notice)
    # what the report shows: a URL without its credentials (the job keeps the real one)
    report = SwapReport(engine=opened.engine.name, input=redact_url(job.target), output=redact_url(job.output))
    if message:
        report.notes.append(message)
    report.backends = _backends(opened)
    graph = _graph(job, opened, report, _frames(job, opened, report, notice))
    if on_graph is not None:
        on_graph(graph)
    t0 = time.monotonic()
    try:
        graph.run(progress=(lambda s: progress(s, report)) if progress else None, interval_s=0.2)
    finally:
        if opened.resume is not None:
            opened.resume.release()
        _finish(report, job, opened, graph, time.monotonic() - t0)
        report.backends = _backends(opened)  # the encoder's, as it ended (NVENC may have refused to start)
    return report


def _backends(opened: _Opened) -> dict[str, str]:
    """Which backend runs each stage, and why ("pyav (forced by --decoder pyav)")."""
    return {"decode": str(opened.src.choice), **opened.session.backends, "encode": str(opened.sink.choice)}
