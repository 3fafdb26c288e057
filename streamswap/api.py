"""The Python API the CLI is a thin layer over: `swap_video`, `swap_image`, `live_swap`,
`LiveSwap` and `swap_span` (a cluster chunk); each is one `job.Job` run by `job.run_job`.

    from streamswap.api import SwapOptions, swap_video
    report = swap_video(SwapOptions(sources=("me.jpg",)), "clip.mp4", "out.mp4")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from streamswap.engines.base import EngineModels, SourceIdentity
from streamswap.errors import InputError
from streamswap.job import Job, Progress, run_job
from streamswap.options import SwapOptions, SwapReport
from streamswap.stream import Graph

if TYPE_CHECKING:
    from streamswap.cluster.spans import FrameSpan
    from streamswap.stream.host_syncs import HostSyncAudit

__all__ = [
    "EngineModels",
    "Job",
    "LiveSwap",
    "SourceIdentity",
    "SwapOptions",
    "SwapReport",
    "live_swap",
    "run_job",
    "swap_image",
    "swap_span",
    "swap_video",
]


def swap_video(
    options: SwapOptions,
    target: str,
    output: str,
    *,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
    models: EngineModels | None = None,
    host_syncs: HostSyncAudit | None = None,
) -> SwapReport:
    """Swap the source face(s) into a video (or image) file; see `SwapOptions`. `models`: run with
    these networks (e.g. an engine's `stand_in`) instead of loading the engine's own;
    `host_syncs`: count the processing stages' host syncs into this audit."""
    return run_job(Job(options, target, output, models=models, host_syncs=host_syncs), progress=progress, notice=notice)


def live_swap(
    options: SwapOptions,
    input: str,
    output: str,
    *,
    max_frames: int | None = None,
    rtsp_transport: str = "tcp",
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
) -> SwapReport:
    """Swap faces in a live input (webcam, rtsp://, or a file read at its frame rate) with bounded
    latency (see `Job.live`; drops are counted in the report). output: a file, rtsp:// or
    rtmp:// URL, "preview" or "virtual-cam". Stops at the end of the input, after `max_frames`,
    or on Ctrl-C (the output is finalised)."""
    return run_job(
        Job(options, input, output, live=True, max_frames=max_frames, rtsp_transport=rtsp_transport),
        progress=progress,
        notice=notice,
    )


class LiveSwap:
    """A live job you can stop from another thread: `LiveSwap(options, input, output).run()` in one
    thread, `.stop()` in another (the output is finalised either way). See `live_swap`."""

    def __init__(
        self,
        options: SwapOptions,
        input: str,
        output: str,
        *,
        max_frames: int | None = None,
        rtsp_transport: str = "tcp",
    ) -> None:
        self.job = Job(options, input, output, live=True, max_frames=max_frames, rtsp_transport=rtsp_transport)
        self._graph: Graph | None = None
        self._stop_early = False

    def _attach(self, graph: Graph) -> None:
        self._graph = graph
        if self._stop_early:
            graph.stop()

    def run(self, progress: Progress | None = None) -> SwapReport:
        """Run until the input ends, `max_frames`, `stop()` or Ctrl-C; returns the report."""
        return run_job(self.job, progress=progress, on_graph=self._attach)

    def stop(self) -> None:
        """Stop the running job cleanly (safe to call before `run` starts the graph)."""
        self._stop_early = True
        if self._graph is not None:
            self._graph.stop()


def swap_span(
    options: SwapOptions,
    target: str,
    output: str,
    span: FrameSpan,
    *,
    models: EngineModels,
    identity: SourceIdentity | None = None,
    progress: Progress | None = None,
) -> SwapReport:
    """One chunk of a distributed job: run the whole pipeline on `span` of the video file `target`
    (warm-up frames processed, not written) with already loaded `models` and the job's shared
    `identity`, writing the span's frames (x264, no audio, the input's pts) to `output`.
    `report.frames` counts the frames written."""
    return run_job(Job(options, target, output, span=span, models=models, identity=identity), progress=progress)


def swap_image(
    options: SwapOptions, target: str, output: str, *, notice: Callable[[str], None] | None = None
) -> SwapReport:
    """Swap the source face(s) into an image; writes an image (or a one-frame video)."""
    from streamswap.video.probe import classify

    if classify(target) != "image":
        raise InputError(f"{target} is not an image; use swap_video for videos")
    return run_job(Job(options, target, output), notice=notice)
