"""`streamswap swap`: put a source face into an image or a video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from streamswap.app import app
from streamswap.commands.console import Watch, note, print_json, progress_bar, say, stderr_console
from streamswap.stopping import reason_of


def run_swap(options: Any, target: str, output: str, *, quiet: bool, as_json: bool, label: str = "swap") -> Any:
    """Run a swap job with a rich progress display (frames/s, ETA, faces) and a summary."""
    from streamswap.api import swap_video

    console = stderr_console(quiet)
    progress = progress_bar(console)
    task: list[Any] = []

    def show(stats: Any, report: Any) -> None:
        if not task:
            progress.start()
            task.append(progress.add_task(label, total=report.frames_expected, rate=""))
        progress.update(
            task[0], completed=stats.frames_out, rate=f"{stats.frames_per_s:5.1f} fps  faces {report.faces_swapped}"
        )

    watch = Watch(None if quiet else show)
    try:
        report = swap_video(options, target, output, progress=watch, notice=lambda m: note(console, m))
    except KeyboardInterrupt as exc:
        progress.stop()
        _stopped(watch.report, reason_of(exc), as_json)
        raise
    finally:
        progress.stop()
    if as_json:
        print_json(report)
    say(
        console,
        f"[green]done[/] ({report.engine} engine):",
        f"{report.frames} frames, {report.frames_swapped} with "
        f"a swapped face, {report.elapsed_s:.1f} s ({report.fps:.1f} fps) -> {report.output}",
    )
    for line in report.notes:
        if not line.startswith("GHOST models not found"):  # already shown at the start
            note(console, line)
    return report


def _stopped(report: Any, reason: str, as_json: bool) -> None:
    """What a stopped job leaves, on stderr (and the report as JSON on stdout)."""
    console = stderr_console()
    if report is None:
        say(console, f"[yellow]{reason}[/]", "before the first frame: nothing was written")
        return
    if as_json:
        print_json(report)
    if report.frames and not report.complete:
        again = (
            "run the same command again to continue from there"
            if report.resumable
            else "run the command again to redo it (--resume makes a stopped job continue instead)"
        )
        say(
            console,
            f"[yellow]{reason}[/]:",
            f"{report.output} is valid up to frame {report.frames} (playable); {again}",
        )
    else:
        say(console, f"[yellow]{reason}[/]:", "no frame was written")


@app.command()
def swap(
    source: list[str] = typer.Option(..., "--source", "-s", help="Face image to put in (repeat for several people)."),
    target: str = typer.Option(..., "--target", "-t", help="Image or video to change."),
    output: str = typer.Option(..., "--output", "-o", help="Where to write the result (image or video)."),
    target_face: list[str] = typer.Option(
        [],
        "--target-face",
        help="Reference photo of the person source i replaces (one per --source, in order); others are left alone.",
    ),
    similarity: float = typer.Option(None, help="Identity threshold for --target-face (default: the engine's)."),
    source_face_index: int = typer.Option(None, help="Which face of a source image with several (0 = leftmost)."),
    engine: str = typer.Option(
        "auto", help="auto (ghost when its models are present, else lite), ghost, lite, or a plugin engine's name."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    blocks: int = typer.Option(2, help="GHOST generator: 1, 2 (GHOST's main model) or 3 AAD blocks."),
    sr: bool = typer.Option(False, "--sr/--no-sr", help="Face super-resolution after the GHOST generator."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the GHOST generator (GPU; slow first batch)."),
    face_runtime: str = typer.Option(
        "auto", help="GHOST's ONNX face models: auto (torch on CUDA, onnxruntime on the CPU), torch or onnxruntime."
    ),
    generator: Path = typer.Option(
        None,
        "--generator",
        dir_okay=False,
        help="A GHOST generator of your own (e.g. from `train export`) instead of the published G_unet_{blocks}.",
    ),
    batch_size: int = typer.Option(None, min=1, help="Frames per model call [default: 8 on a GPU, 2 on the CPU]."),
    detect_every: int = typer.Option(
        None,
        help="Run the face detector every N frames, landmarks following the "
        "faces in between (default: 5 for lite, 1 for ghost).",
    ),
    start: float = typer.Option(0.0, "--start", help="Process the video from this time (seconds)."),
    end: float = typer.Option(None, "--end", help="Process the video up to this time (seconds)."),
    crf: int = typer.Option(18, help="Output quality: x264 CRF, 0 (best) .. 51."),
    preset: str = typer.Option(
        "veryfast",
        help="x264 speed preset (ultrafast .. veryslow). veryfast: on nggyup.mp4 0.3 dB PSNR below medium "
        "at the same size, for less than half its CPU time.",
    ),
    encoder: str = typer.Option("auto", help="auto, x264 or nvenc."),
    decoder: str = typer.Option(
        "auto", help="auto (NVDEC where the stream and GPU allow, else PyAV, with a notice), pyav or nvdec."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display or summary."),
    workers: int = typer.Option(
        None,
        "--workers",
        help="Split the video into chunks over N workers of a local Ray "
        "cluster (one per GPU where there are GPUs; needs the `cluster` extra).",
    ),
    ray_address: str = typer.Option(
        None,
        "--ray-address",
        help="Join a running Ray cluster (`ray start --head`; HOST:6379 or auto) instead of starting a local one.",
    ),
    chunk_seconds: float = typer.Option(
        None, "--chunk-seconds", help="With --workers/--ray-address: chunk length, cut at keyframes (default 30)."
    ),
    resume: bool = typer.Option(
        None,
        "--resume/--no-resume",
        help="Write a video as segments, so that running the "
        "same command again after a stop or crash continues where it stopped "
        "[default: for videos of 60 s or more].",
    ),
    segment_seconds: float = typer.Option(
        None,
        "--segment-seconds",
        help="A resumable job's segment length, s: what a resumed run redoes at most (default 10).",
    ),
) -> None:
    """Swap a face into an image or a video (audio and timing kept; output marked as synthetic)."""
    from streamswap.options import SwapOptions, check_job_paths

    options = SwapOptions(
        sources=tuple(source),
        target_faces=tuple(target_face),
        similarity=similarity,
        source_face_index=source_face_index,
        engine=engine,
        device=device,
        batch_size=batch_size,
        detect_every=detect_every,
        crf=crf,
        preset=preset,
        encoder=encoder,
        decoder=decoder,
        overwrite=overwrite,
        blocks=blocks,
        sr=sr,
        compile=compile,
        face_runtime=face_runtime,
        generator=str(generator) if generator else None,
        start_s=start,
        end_s=end,
        resume=resume,
        segment_s=segment_seconds,
    )
    if workers is not None or ray_address is not None:  # only then is Ray imported
        from streamswap.commands.batch import run_cluster_swap

        run_cluster_swap(
            options,
            target,
            output,
            workers=workers,
            ray_address=ray_address,
            chunk_seconds=chunk_seconds,
            quiet=quiet,
            as_json=as_json,
        )
        return
    if chunk_seconds is not None:
        from streamswap.errors import InputError

        raise InputError("--chunk-seconds applies with --workers or --ray-address")
    check_job_paths(options, target, output)  # what cannot start fails in a second, before torch loads
    run_swap(options, target, output, quiet=quiet, as_json=as_json)
