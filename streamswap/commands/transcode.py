"""`streamswap transcode IN OUT`: decode -> encode through the stage graph, no face processing.

It exercises the whole streaming runtime (backends, back-pressure, ordering, audio copy, errors,
Ctrl-C) on real media, and measures the I/O cost that every swap job pays.

Debugging aid: STREAMSWAP_FAULT="STAGE:N" (or the hidden --fault) makes stage STAGE ("decode" or
"encode") fail at frame N, to check error handling through the real CLI.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from streamswap.app import app
from streamswap.commands.console import note, progress_bar
from streamswap.devices import resolve_device
from streamswap.errors import InputError, PipelineError
from streamswap.redact import redact_data
from streamswap.stopping import reason_of
from streamswap.video.probe import check_input, check_output_path

if TYPE_CHECKING:  # the runtime imports (torch, av) wait until the command runs: other commands start fast
    import torch

    from streamswap.stream import GraphStats
    from streamswap.video.outputs import VideoSink
    from streamswap.video.sources import VideoSource


def _output_kind(output: str) -> str:
    from streamswap.video.probe import classify

    if output == "preview":
        return "preview"
    return "network" if classify(output) == "network" else "file"


def _rate_text(stats: GraphStats, live: bool) -> str:
    text = f"{stats.frames_per_s:5.1f} fps"
    if live:
        p95 = stats.latency_p95_s
        text += f"  latency p95 {p95 * 1000:.0f} ms" if p95 is not None else ""
        text += f"  dropped {stats.dropped}"
    if stats.gpu_memory_mb is not None:
        text += f"  GPU {stats.gpu_memory_mb:.0f} MiB"
    return text


def _report(
    src: VideoSource, sink: VideoSink, device: torch.device, stats: GraphStats | None, status: str, error: str | None
) -> dict[str, Any]:
    info = src.info
    enc = sink.choice  # read at the end: a file sink falls back to x264 if NVENC fails to start
    out_path = Path(sink.report.path)
    return redact_data(
        {  # what is shown: URLs without their credentials
            "status": status,
            "error": error,
            "input": src.spec,
            "output": sink.report.path,
            "output_bytes": out_path.stat().st_size if out_path.is_file() else None,
            "device": str(device),
            "decoder": {"backend": src.choice.backend, "reason": src.choice.reason},
            "encoder": {"backend": enc.backend, "reason": enc.reason},
            "input_info": {
                k: (str(v) if k in ("fps", "time_base") and v is not None else v) for k, v in asdict(info).items()
            },
            "frames_in": src.frames_read,
            "frames_out": sink.report.frames,
            "dropped": stats.dropped if stats else 0,
            "elapsed_s": stats.elapsed_s if stats else None,
            "fps": stats.frames_per_s if stats else None,
            "audio_packets": sink.report.audio_packets,
            "padded": sink.report.padded,
            "warnings": list(src.warnings),
            "notes": list(sink.report.notes),
            "graph": stats.to_dict() if stats else None,
        }
    )


@app.command()
def transcode(
    input: str = typer.Argument(..., help="Video file, image, webcam (/dev/video0) or stream URL (rtsp://...)."),
    output: str = typer.Argument(
        ..., help="Output video file (.mp4, .mkv, .mov), rtsp:// or rtmp:// URL, or 'preview'."
    ),
    crf: int = typer.Option(18, help="Quality: x264 CRF / NVENC QP, 0 (best) .. 51."),
    preset: str = typer.Option("medium", help="x264 speed preset (ultrafast .. veryslow); mapped to NVENC P1..P7."),
    encoder: str = typer.Option("auto", help="auto, x264 or nvenc."),
    decoder: str = typer.Option("auto", help="auto, pyav or nvdec."),
    device: str = typer.Option("auto", help="Where frames live: auto, cpu, cuda or cuda:N."),
    threads: int = typer.Option(0, help="Decoder/encoder threads (0: automatic)."),
    max_frames: int = typer.Option(None, "--max-frames", help="Stop after this many frames (e.g. for live inputs)."),
    realtime: bool = typer.Option(False, "--realtime", help="Read a file at its frame rate, like a live feed."),
    queue: int = typer.Option(8, help="Frames buffered between stages."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report (with per-stage metrics) on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display or summary."),
    fault: str = typer.Option(None, "--fault", hidden=True, help="Debug: make STAGE fail at frame N (STAGE:N)."),
) -> None:
    """Decode IN and encode it to OUT through the streaming runtime (no face processing)."""
    # unusable inputs and outputs fail fast, before torch is even imported
    out_kind = _output_kind(output)
    if out_kind == "file":
        check_output_path(input, output, overwrite)
    check_input(input)

    from streamswap.stream import Fault, Graph, Sink, Source
    from streamswap.stream.metrics import cuda_memory_probe
    from streamswap.stream.streams import streams_for
    from streamswap.video.nv import gpu_for
    from streamswap.video.outputs import OutputOptions, open_sink
    from streamswap.video.sinks import EncodeSettings
    from streamswap.video.sources import SourceOptions, open_source

    console = Console(stderr=True)
    dev = resolve_device(device)
    settings = EncodeSettings(encoder=encoder, crf=crf, preset=preset, threads=threads)
    try:
        injected = Fault.parse(fault) if fault else Fault.from_env()
    except ValueError as exc:
        raise InputError(str(exc)) from None

    gpu = gpu_for(dev)
    src = open_source(
        input,
        SourceOptions(decoder=decoder, device=str(dev), threads=threads, pace=realtime, max_frames=max_frames),
        gpu=gpu,
    )
    try:
        sink = open_sink(
            output,
            src.info,
            OutputOptions(
                settings, overwrite=overwrite, audio_from=src.spec if src.kind == "file" else None, recording=src.live
            ),
            device=dev,
            gpu=gpu,
        )
    except BaseException:
        src.close()
        raise
    enc = sink.choice

    if not quiet:
        console.print(
            f"decode: [bold]{escape(src.choice.backend)}[/] ({escape(src.choice.reason)})",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"encode: [bold]{escape(enc.backend)}[/] ({escape(enc.reason)})", highlight=False, soft_wrap=True)
    graph = Graph(
        Source("decode", src, src.close),
        [],
        Sink("encode", sink.write, sink.close, queue_size=queue),
        mode="live" if src.live else "file",
        fault=injected,
        gpu_memory=cuda_memory_probe(dev),
        streams=streams_for(dev),
    )

    total = src.info.frames if not src.live else None
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    progress = None if quiet else progress_bar(console, eta=bool(total) and not src.live)
    task = progress.add_task("transcode", total=total, rate="") if progress else None

    def show(stats: GraphStats) -> None:
        if progress is not None and task is not None:
            progress.update(task, completed=stats.frames_out, rate=_rate_text(stats, src.live))

    stats: GraphStats | None = None
    status, error = "done", None
    t0 = time.monotonic()
    try:
        if progress:
            progress.start()
        stats = graph.run(progress=show, interval_s=0.2)
        status = stats.state
    except PipelineError as exc:
        status, error = "failed", str(exc)
        raise
    except KeyboardInterrupt as exc:
        status, error = "interrupted", reason_of(exc)
        raise
    finally:
        if progress:
            progress.stop()
        stats = stats or graph.stats()
        report = _report(src, sink, dev, stats, status, error)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        if not quiet:
            _summary(console, report, time.monotonic() - t0)


def _summary(console: Console, r: dict[str, Any], wall_s: float) -> None:
    frames, fps = r["frames_out"], r["fps"] or 0.0
    size = f", {r['output_bytes'] / 2**20:.1f} MiB" if r["output_bytes"] else ""
    colour = {"done": "green", "stopped": "green", "failed": "red", "interrupted": "yellow"}.get(r["status"], "white")
    console.print(
        f"[{colour}]{r['status']}[/]: {frames} frames in {wall_s:.1f} s ({fps:.1f} fps) -> {escape(r['output'])}{size}",
        highlight=False,
        soft_wrap=True,
    )
    if r["audio_packets"]:
        console.print(
            f"copied {r['audio_packets']} audio/subtitle packets without re-encoding", highlight=False, soft_wrap=True
        )
    if r["dropped"]:
        console.print(
            f"live input: dropped {r['dropped']} frames to keep latency bounded", highlight=False, soft_wrap=True
        )
    for line in r["warnings"] + r["notes"]:
        note(console, line)
    if r["status"] in ("failed", "interrupted") and frames:
        console.print(
            f"the output is valid up to frame {frames}: {escape(r['output'])}", highlight=False, soft_wrap=True
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
