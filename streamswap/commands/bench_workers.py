"""`streamswap bench workers`: frames/s of a cluster job with 1, 2, ... workers (and chunk
lengths), beside the single-process job (`streamswap.bench.workers`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from streamswap.commands.bench import bench_app


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


@bench_app.command("workers")
def workers_(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False, help="Video to swap into."),
    source: Path = typer.Option(..., "--source", "-s", exists=True, dir_okay=False, help="Face image."),
    workers: str = typer.Option("1,2", help="Worker counts to try, comma-separated."),
    chunk_seconds: str = typer.Option("3", help="Chunk lengths (s) to try, comma-separated."),
    engine: str = typer.Option("lite", help="lite, ghost (needs its models), or a plugin engine's name."),
    device: str = typer.Option("cpu", help="cpu or cuda (each worker on a GPU, or a share of one)."),
    preset: str = typer.Option("veryfast", help="x264 preset of the outputs."),
    single: bool = typer.Option(True, "--single/--no-single", help="Also time the single-process job."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON report here."),
) -> None:
    """Throughput of the cluster job with several worker counts and chunk lengths."""
    from streamswap.bench.workers import measure_workers

    report = measure_workers(
        str(input),
        str(source),
        workers=_ints(workers),
        chunk_seconds=_floats(chunk_seconds),
        engine=engine,
        device=device,
        preset=preset,
        single=single,
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    c = report["cluster"]
    table = Table(
        title=f"workers: {Path(report['input']).name}, {engine} on {device}, cluster {c['CPU']:g} CPU {c['GPU']:g} GPU"
    )
    for col in ("run", "workers", "chunk s", "chunks", "frames", "seconds", "fps", "processed/written"):
        table.add_column(col)
    for r in report["runs"]:
        table.add_row(
            r["mode"],
            str(r["workers"]),
            "-" if r["chunk_s"] is None else f"{r['chunk_s']:g}",
            str(r["chunks"]),
            str(r["frames"]),
            f"{r['seconds']:.1f}",
            f"{r['fps']:.2f}",
            f"{r['processed_per_written']:.2f}" if r["processed_per_written"] else "-",
        )
    Console().print(table)
