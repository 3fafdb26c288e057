"""`streamswap bench scale`: frames/s of a cluster job with 1, 2, ... workers (and chunk sizes),
beside the single-process job, on this machine's local Ray cluster."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from streamswap.commands.bench import bench_app


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def measure_scale(input: str, source: str, *, workers: list[int], chunk_seconds: list[float], engine: str,
                  device: str, preset: str, single: bool) -> dict[str, Any]:
    """Run the swap job once per (workers, chunk length) on one local Ray cluster (started once,
    its start not counted; each run's time counts its actors' start and model loading, the
    source identity, the chunks and the stitch), and once in a single process."""
    import ray

    from streamswap.api import SwapOptions, swap_video
    from streamswap.bench.report import environment
    from streamswap.cluster.run import ClusterSettings, FileJob, run_jobs, start_local_cluster

    options = SwapOptions(sources=(source,), engine=engine, device=device, preset=preset)  # type: ignore[arg-type]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamswap-bench-scale-") as tmp:
        if single:
            t0 = time.monotonic()
            rep = swap_video(options, input, str(Path(tmp) / "single.mp4"))
            runs.append({"mode": "single process", "workers": 1, "chunk_s": None, "chunks": 1,
                         "frames": rep.frames, "seconds": time.monotonic() - t0,
                         "fps": rep.frames / (time.monotonic() - t0), "processed_per_written": 1.0})
        started = not ray.is_initialized()
        if started:  # on 127.0.0.1 only, RAY_ADDRESS ignored, as a cluster job's own
            start_local_cluster()
        try:
            resources = ray.cluster_resources()
            for chunk_s in chunk_seconds:
                for n in workers:
                    out = Path(tmp) / f"w{n}-c{chunk_s:g}.mp4"
                    report = run_jobs(options, [FileJob(input, str(out))], ClusterSettings(workers=n, chunk_s=chunk_s))
                    written = sum(w.frames for w in report.worker_stats)
                    processed = sum(w.processed for w in report.worker_stats)
                    runs.append({"mode": "cluster", "workers": n, "chunk_s": chunk_s, "chunks": report.chunks_total,
                                 "frames": report.frames, "seconds": report.elapsed_s, "fps": report.fps,
                                 "processed_per_written": processed / written if written else None,
                                 "stitch_s": report.outputs[0].stitch_s,
                                 "per_worker_fps": [round(w.fps, 2) for w in report.worker_stats]})
                    out.unlink(missing_ok=True)
        finally:
            if started:
                ray.shutdown()
    return {"environment": environment(), "input": input, "engine": engine, "device": device, "preset": preset,
            "cluster": {"CPU": resources.get("CPU"), "GPU": resources.get("GPU", 0)}, "runs": runs}


@bench_app.command("scale")
def scale(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False, help="Video to swap into."),
    source: Path = typer.Option(..., "--source", "-s", exists=True, dir_okay=False, help="Face image."),
    workers: str = typer.Option("1,2", help="Worker counts to try, comma-separated."),
    chunk_seconds: str = typer.Option("3", help="Chunk lengths (s) to try, comma-separated."),
    engine: str = typer.Option("lite", help="lite (ghost needs its models)."),
    device: str = typer.Option("cpu", help="cpu or cuda (each worker on a GPU, or a share of one)."),
    preset: str = typer.Option("veryfast", help="x264 preset of the outputs."),
    single: bool = typer.Option(True, "--single/--no-single", help="Also time the single-process job."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON report here."),
) -> None:
    """Throughput of the cluster job with several worker counts and chunk lengths."""
    report = measure_scale(str(input), str(source), workers=_ints(workers), chunk_seconds=_floats(chunk_seconds),
                           engine=engine, device=device, preset=preset, single=single)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    c = report["cluster"]
    table = Table(title=f"scale: {Path(report['input']).name}, {engine} on {device}, cluster {c['CPU']:g} CPU "
                        f"{c['GPU']:g} GPU")
    for col in ("run", "workers", "chunk s", "chunks", "frames", "seconds", "fps", "processed/written"):
        table.add_column(col)
    for r in report["runs"]:
        table.add_row(r["mode"], str(r["workers"]), "-" if r["chunk_s"] is None else f"{r['chunk_s']:g}",
                      str(r["chunks"]), str(r["frames"]), f"{r['seconds']:.1f}", f"{r['fps']:.2f}",
                      f"{r['processed_per_written']:.2f}" if r["processed_per_written"] else "-")
    Console().print(table)
