"""`streamswap live`: swap faces in a webcam, a network stream or a file played at its own pace."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from streamswap.app import app
from streamswap.commands.console import Watch, note, print_json, say, stderr_console
from streamswap.errors import InputError


def _input_spec(value: str) -> str:
    """ "0" -> /dev/video0 (a webcam index); anything else as given."""
    return f"/dev/video{value}" if value.isdigit() else value


@app.command()
def live(
    source: str = typer.Option(..., "--source", "-s", help="Face image to put in."),
    input: str = typer.Option(
        ...,
        "--input",
        "-i",
        help="Webcam index (0) or /dev/videoN, rtsp:// or http:// URL, or a video file (read at its frame rate).",
    ),
    output: str = typer.Option(None, "--output", "-o", help="A video file, or an rtsp:// / rtmp:// URL to stream to."),
    preview: bool = typer.Option(False, "--preview", help="Show the result in a window."),
    virtual_cam: bool = typer.Option(
        False, "--virtual-cam", help="Send the result to a v4l2loopback virtual camera (pyvirtualcam)."
    ),
    source_face_index: int = typer.Option(None, help="Which face of a source image with several (0 = leftmost)."),
    engine: str = typer.Option(
        "auto", help="auto (ghost when its models are present, else lite), ghost, lite, or a plugin engine's name."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    detect_every: int = typer.Option(None, help="Run the face detector every N frames (default: 5 for lite)."),
    max_frames: int = typer.Option(None, "--max-frames", help="Stop after this many frames."),
    rtsp_transport: str = typer.Option("tcp", help="RTSP input transport: tcp or udp."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary (latency, drops) on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live readout."),
) -> None:
    """Swap faces live with bounded latency: frames are dropped when the pipeline lags, never queued
    without bound; fps, latency and drops are shown as it runs. Ctrl-C stops cleanly."""
    from streamswap.options import SwapOptions, check_job_paths

    chosen = [x for x in (output is not None, preview, virtual_cam) if x]
    if len(chosen) != 1:
        raise InputError("choose one output: --output FILE|rtsp://...|rtmp://..., --preview or --virtual-cam")
    target = "preview" if preview else ("virtual-cam" if virtual_cam else output)
    options = SwapOptions(
        sources=(source,),
        source_face_index=source_face_index,
        engine=engine,
        device=device,
        detect_every=detect_every,
        preset="veryfast",
        overwrite=overwrite,
    )
    spec = _input_spec(input)
    check_job_paths(options, spec, target)  # what cannot start fails in a second, before torch loads

    from streamswap.api import live_swap

    console = stderr_console(quiet)
    status = console.status("starting")

    def show(stats: Any, report: Any) -> None:
        if not status._live.is_started:  # noqa: SLF001 - start the readout with the first frame
            status.start()
        p95 = f"{stats.latency_p95_s * 1000:.0f} ms" if stats.latency_p95_s is not None else "-"
        status.update(
            f"{stats.frames_out} frames  {stats.frames_per_s:5.1f} fps  latency p95 {p95}  "
            f"dropped {stats.dropped}  faces {report.faces_swapped}"
        )

    watch = Watch(None if quiet else show)
    try:
        report = live_swap(
            options,
            spec,
            target,
            max_frames=max_frames,
            rtsp_transport=rtsp_transport,
            progress=watch,
            notice=lambda m: note(console, m),
        )
    except KeyboardInterrupt:  # the usual end of a live job: summarise, then exit 128 + the signal
        status.stop()
        if watch.report is not None:
            _summary(console, watch.report, as_json)
        raise
    finally:
        status.stop()
    _summary(console, report, as_json)


def _summary(console: Console, report: Any, as_json: bool) -> None:
    if as_json:
        print_json(report)
    p95 = f"{report.latency_p95_s * 1000:.0f} ms" if report.latency_p95_s is not None else "n/a"
    say(
        console,
        f"[green]stopped[/] ({report.engine} engine):",
        f"{report.frames_in} frames in, {report.frames} out, "
        f"{report.dropped} dropped to keep latency bounded, latency p95 {p95}, {report.fps:.1f} fps",
    )
