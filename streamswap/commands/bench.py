"""`streamswap bench ...`: throughput, bottleneck and memory of whole jobs, and the comparison
with the seed implementation's way of running the same models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from streamswap.cli import app

bench_app = typer.Typer(help="Benchmarks: frames/s, bottleneck stage, latency, peak memory, baseline ratio.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _emit(report: dict[str, Any], as_json: bool, out: Path | None, table: Table) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        Console().print(table)


@bench_app.command("pipeline")
def pipeline(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False, help="Video to swap into."),
    source: Path = typer.Option(..., "--source", "-s", exists=True, dir_okay=False, help="Face image."),
    engine: str = typer.Option("lite", help="lite (ghost needs its models)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N."),
    detect_every: int = typer.Option(None, help="Detector every N frames (engine default if unset)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON report here."),
) -> None:
    """End-to-end frames/s, per-stage throughput and busy fraction, latency, peak memory."""
    from streamswap.benchmarking import environment, run_isolated

    run = run_isolated("pipeline", str(input), str(source), detect_every=detect_every, engine=engine, device=device)
    report = {"environment": environment(), "input": str(input), "engine": engine, **run}
    table = Table(title=f"pipeline: {run['fps']:.1f} fps, bottleneck {run['bottleneck']}, "
                        f"peak RSS {run['peak_rss_mib']:.0f} MiB")
    for col in ("stage", "items/s", "busy", "max queue"):
        table.add_column(col)
    for s in run["stages"]:
        table.add_row(s["name"], f"{s['items_per_s']:.1f}", f"{s['busy']:.2f}", str(s["queue_max"] or "-"))
    _emit(report, as_json, out, table)


@bench_app.command("baseline")
def baseline(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False, help="Video to swap into."),
    source: Path = typer.Option(..., "--source", "-s", exists=True, dir_okay=False, help="Face image."),
    detect_every: int = typer.Option(None, help="The pipeline's detector interval (engine default if unset)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON report here."),
) -> None:
    """The same lite models run the seed's way (all frames in memory, frame-by-frame detection,
    mp4v, audio re-muxed) vs the StreamSwap pipeline: speed and peak-memory ratios."""
    from streamswap.benchmarking import compare

    report = compare(str(input), str(source), detect_every=detect_every)
    table = Table(title=f"StreamSwap vs baseline: {report['speed_ratio']:.2f}x the speed, "
                        f"{report['memory_ratio']:.2f}x the peak memory")
    for col in ("run", "frames", "fps", "seconds", "peak RSS MiB"):
        table.add_column(col)
    for kind in ("baseline", "pipeline"):
        r = report[kind]
        table.add_row(kind, str(r["frames"]), f"{r['fps']:.1f}", f"{r['seconds']:.1f}", f"{r['peak_rss_mib']:.0f}")
    _emit(report, as_json, out, table)
