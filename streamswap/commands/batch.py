"""`streamswap batch`: many videos over one Ray cluster; also the cluster display of
`streamswap swap --workers/--ray-address`. Ray is imported only when such a job starts."""

from __future__ import annotations

from typing import Any

import typer

from streamswap.app import app
from streamswap.commands.console import note, print_json, progress_bar, say, stderr_console


def _settings(workers: int | None, ray_address: str | None, chunk_seconds: float | None) -> Any:
    from streamswap.cluster.run import DEFAULT_CHUNK_S, ClusterSettings

    return ClusterSettings(
        workers=workers, address=ray_address, chunk_s=DEFAULT_CHUNK_S if chunk_seconds is None else chunk_seconds
    )


def _run(label: str, quiet: bool, as_json: bool, job: Any) -> Any:
    """Run `job(progress, notice)` with one aggregated progress display (frames, fps, ETA,
    workers busy, chunks, retries), then print the summary (and JSON)."""
    console = stderr_console(quiet)
    progress = progress_bar(console, eta=False)  # the rate field carries the cluster's own ETA
    task: list[Any] = []

    def show(p: Any) -> None:
        if not task:
            progress.start()
            task.append(progress.add_task(label, total=p.frames_total, rate=""))
        eta = f"ETA {p.eta_s:.0f}s" if p.eta_s is not None else "ETA ?"
        progress.update(
            task[0],
            completed=p.frames_done,
            rate=f"{p.fps:.1f} fps {eta} busy {p.busy}/{p.workers} chunks {p.chunks_done}/{p.chunks_total}"
            + (f" retries {p.retries}" if p.retries else ""),
        )

    try:
        report = job(None if quiet else show, lambda m: note(console, m))
    except KeyboardInterrupt as exc:
        from streamswap.stopping import exit_code_of, reason_of

        progress.stop()
        say(
            stderr_console(),
            f"[yellow]{reason_of(exc)}[/]:",
            "the workers were stopped; finished chunks are kept, run the same command again to do only what is left",
        )
        raise typer.Exit(exit_code_of(exc)) from None
    finally:
        progress.stop()
    if as_json:
        print_json(report)
    for r in report.outputs:
        if r.status == "done":
            say(
                console,
                "[green]done[/]:",
                f"{r.output} ({r.frames} frames; {r.chunks_run} chunk(s) run, "
                f"{r.chunks_reused} kept from an earlier run)",
            )
        elif r.status == "skipped":
            say(console, "[dim]skipped[/]:", f"{r.output} is already complete")
        else:
            say(console, "[bold red]failed[/]:", f"{r.input}: {r.error or '?'}")
    now = sum(w.frames for w in report.worker_stats)
    say(
        console,
        "",
        f"{report.engine} engine, {report.workers} worker(s): {now} frames processed in "
        f"{report.elapsed_s:.1f} s ({report.fps:.1f} fps), {report.retries} retried chunk(s)",
    )
    for w in report.worker_stats:
        say(
            console,
            "",
            f"  worker {w.worker} (pid {w.pid}, {w.host}): {w.chunks} chunk(s), {w.frames} frames, "
            f"{w.fps:.1f} fps while busy",
        )
    for line in report.notes:
        if not line.startswith("GHOST models not found"):
            note(console, line)
    return report


def run_cluster_swap(
    options: Any,
    target: str,
    output: str,
    *,
    workers: int | None,
    ray_address: str | None,
    chunk_seconds: float | None,
    quiet: bool,
    as_json: bool,
) -> Any:
    """`swap --workers/--ray-address`: one video in chunks over a Ray cluster."""
    from streamswap.cluster.run import swap_cluster

    settings = _settings(workers, ray_address, chunk_seconds)
    return _run(
        "swap",
        quiet,
        as_json,
        lambda show, notice: swap_cluster(options, target, output, settings, progress=show, notice=notice),
    )


@app.command()
def batch(
    source: list[str] = typer.Option(..., "--source", "-s", help="Face image to put in (repeat for several people)."),
    inputs: str = typer.Option(..., "--inputs", "-i", help="A folder of videos, or a text file listing one per line."),
    output_dir: str = typer.Option(..., "--output-dir", "-o", help="Where the outputs go (same names as the inputs)."),
    target_face: list[str] = typer.Option([], "--target-face", help="Reference photo of the person source i replaces."),
    similarity: float = typer.Option(None, help="Identity threshold for --target-face (default: the engine's)."),
    engine: str = typer.Option(
        "auto", help="auto (ghost when its models are present, else lite), ghost, lite, or a plugin engine's name."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda (each worker uses its own GPU)."),
    detect_every: int = typer.Option(None, help="Run the face detector every N frames (default: 5 lite, 1 ghost)."),
    crf: int = typer.Option(18, help="Output quality: x264 CRF, 0 (best) .. 51."),
    preset: str = typer.Option(
        "veryfast",
        help="x264 speed preset (ultrafast .. veryslow). veryfast: on nggyup.mp4 0.3 dB PSNR below medium "
        "at the same size, for less than half its CPU time.",
    ),
    workers: int = typer.Option(
        None, "--workers", help="Workers of a local Ray cluster (default: one per GPU, else one per 2 CPUs)."
    ),
    ray_address: str = typer.Option(None, "--ray-address", help="Join a running Ray cluster (`ray start --head`)."),
    chunk_seconds: float = typer.Option(None, "--chunk-seconds", help="Chunk length of long videos (default 30)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display or summary."),
) -> None:
    """Swap a face into many videos on a Ray cluster (long ones in chunks), skipping outputs that
    are already complete; an interrupted batch resumes where it stopped."""
    from streamswap.api import SwapOptions
    from streamswap.cluster.run import batch_jobs, run_jobs

    options = SwapOptions(
        sources=tuple(source),
        target_faces=tuple(target_face),
        similarity=similarity,
        engine=engine,
        device=device,
        detect_every=detect_every,
        crf=crf,
        preset=preset,
        overwrite=overwrite,
    )
    jobs = batch_jobs(inputs, output_dir)
    settings = _settings(workers, ray_address, chunk_seconds)
    report = _run(
        "batch", quiet, as_json, lambda show, notice: run_jobs(options, jobs, settings, progress=show, notice=notice)
    )
    if any(r.status == "failed" for r in report.outputs):
        raise typer.Exit(1)
