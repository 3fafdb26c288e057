"""`streamswap live`: swap faces in a webcam, a network stream or a file played at its own pace."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from streamswap.cli import app
from streamswap.errors import InputError
from streamswap.redact import redact_data


def _input_spec(value: str) -> str:
    """"0" -> /dev/video0 (a webcam index); anything else as given."""
    return f"/dev/video{value}" if value.isdigit() else value


@app.command()
def live(
    source: str = typer.Option(..., "--source", "-s", help="Face image to put in."),
    input: str = typer.Option(..., "--input", "-i", help="Webcam index (0) or /dev/videoN, rtsp:// or http:// URL, "
                              "or a video file (read at its frame rate)."),
    output: str = typer.Option(None, "--output", "-o", help="A video file, or an rtsp:// / rtmp:// URL to stream to."),
    preview: bool = typer.Option(False, "--preview", help="Show the result in a window."),
    virtual_cam: bool = typer.Option(False, "--virtual-cam", help="Send the result to a v4l2loopback virtual "
                                     "camera (pyvirtualcam)."),
    source_face_index: int = typer.Option(None, help="Which face of a source image with several (0 = leftmost)."),
    engine: str = typer.Option("auto", help="ghost, lite or auto."),
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
    from streamswap.api import SwapOptions, live_swap

    chosen = [x for x in (output is not None, preview, virtual_cam) if x]
    if len(chosen) != 1:
        raise InputError("choose one output: --output FILE|rtsp://...|rtmp://..., --preview or --virtual-cam")
    target = "preview" if preview else ("virtual-cam" if virtual_cam else output)
    options = SwapOptions(sources=(source,), source_face_index=source_face_index, engine=engine,  # type: ignore[arg-type]
                          device=device, detect_every=detect_every, preset="veryfast", overwrite=overwrite)
    console = Console(stderr=True, quiet=quiet)
    status = console.status("starting")

    latest: list[Any] = []  # the job's report, for the summary of a job stopped by a signal

    def show(stats: Any, report: Any) -> None:
        latest[:] = [report]
        if quiet:
            return
        if not status._live.is_started:  # noqa: SLF001 - start the readout with the first frame
            status.start()
        p95 = f"{stats.latency_p95_s * 1000:.0f} ms" if stats.latency_p95_s is not None else "-"
        status.update(f"{stats.frames_out} frames  {stats.frames_per_s:5.1f} fps  latency p95 {p95}  "
                      f"dropped {stats.dropped}  faces {report.faces_swapped}")

    try:
        report = live_swap(options, _input_spec(input), target, max_frames=max_frames, rtsp_transport=rtsp_transport,
                           progress=show,
                           notice=lambda m: console.print(f"[yellow]note:[/] {escape(m)}", highlight=False,
                                                          soft_wrap=True))
    except KeyboardInterrupt:  # the usual end of a live job: summarise, then exit 128 + the signal
        status.stop()
        if latest:
            _summary(console, latest[0], as_json)
        raise
    finally:
        status.stop()
    _summary(console, report, as_json)


def _summary(console: Console, report: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(redact_data(asdict(report)), indent=2, default=str))
    p95 = f"{report.latency_p95_s * 1000:.0f} ms" if report.latency_p95_s is not None else "n/a"
    console.print(f"[green]stopped[/] ({report.engine} engine): {report.frames_in} frames in, {report.frames} out, "
                  f"{report.dropped} dropped to keep latency bounded, latency p95 {p95}, {report.fps:.1f} fps",
                  highlight=False, soft_wrap=True)
