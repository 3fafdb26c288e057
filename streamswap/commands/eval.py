"""`streamswap eval`: score swapped videos against the original they were made from.

`--json` prints one object on stdout: `original`, `recogniser` ("dlib_resnet_128", or
"ghost_arcface_iresnet100"), `frames_evaluated`, `frames_with_face`, `every`, `first_frames`,
`frame_index` / `frame_time` (one per evaluated frame), `cuts` (frame numbers that start a
shot), `notes`, `elapsed_s`, and `outputs`: one object per output with `output`, `source`,
`summary` (the fields of `streamswap.eval.report.OutputSummary`), `series` (each per-frame series
of `streamswap.eval.report.SERIES`, null where not measured) and `shots` (flicker and jitter
ratios per shot, `streamswap.eval.report.ShotSummary`). NaN is written as null.
"""

from __future__ import annotations

from typing import Any

import typer

from streamswap.app import app
from streamswap.commands.console import note, print_json, progress_bar, say, stderr_console

#: (label, summary field, format) rows of the summary table
_ROWS = (
    ("frames compared", "frames", "{:.0f}"),
    ("identity: sim. to source", "sim_source", "{:.3f}"),
    ("identity: original's sim. to source", "original_sim_source", "{:.3f}"),
    ("identity gain (higher better)", "identity_gain", "{:+.3f}"),
    ("closer to source than original", "closer_to_source", "{:.0%}"),
    ("ID retrieval, top-1 (--gallery)", "id_retrieval", "{:.0%}"),
    ("pose error (deg)", "pose_error_deg", "{:.2f}"),
    ("expression error (IOD)", "expression_error", "{:.4f}"),
    ("  mouth / eyes / brows", None, ""),
    ("mouth-opening correlation", "mouth_open_corr", "{:.3f}"),
    ("eye landmarks (px @256)", "eye_error_px", "{:.2f}"),
    ("flicker ratio (1 = original)", "flicker_ratio", "{:.3f}"),
    ("jitter ratio (1 = original)", "jitter_ratio", "{:.3f}"),
    ("background |diff| (grey)", "background", "{:.2f}"),
)


def _cell(summary: Any, name: str | None, fmt: str) -> str:
    import math

    if name is None:
        parts = (summary.mouth_error, summary.eyes_error, summary.brows_error)
        return " / ".join("-" if not math.isfinite(v) else f"{v:.4f}" for v in parts)
    value = float(getattr(summary, name))
    return "-" if not math.isfinite(value) else fmt.format(value)


@app.command("eval")
def eval_command(
    source: list[str] = typer.Option(
        ..., "--source", "-s", help="The source face photo (repeat: one per output, in order)."
    ),
    target: str = typer.Option(..., "--target", "-t", help="The original video the outputs were made from."),
    outputs: list[str] = typer.Argument(..., metavar="OUTPUT", help="Swapped videos to score against the original."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on stdout."),
    csv_path: str = typer.Option(None, "--csv", help="Write the per-frame series to this CSV file."),
    plot: str = typer.Option(None, "--plot", help="Write a PNG plot of the per-frame series."),
    frames: int = typer.Option(None, "--frames", help="Evaluate only the first N frames."),
    every: int = typer.Option(1, "--every", help="Evaluate every K-th frame."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    gallery: str = typer.Option(
        None, "--gallery", help="A folder of face photos of other people: adds ID retrieval (top-1 of the source)."
    ),
    recogniser: str = typer.Option(
        "auto",
        "--recogniser",
        help="Identity by dlib (128-D descriptor), arcface (the ghost engine's backbone, from the model cache), "
        "or auto (arcface when the backbone is cached).",
    ),
) -> None:
    """Score swapped videos: identity (dlib descriptors, or the ghost engine's ArcFace), pose,
    expression, eyes, flicker, landmark jitter and background, each output against ORIGINAL (see
    README "Evaluating a swap")."""
    from streamswap.errors import InputError
    from streamswap.video.probe import check_file

    if frames is not None and every != 1:
        raise InputError("use --frames N or --every K, not both")
    for path in [*source, target, *outputs]:
        check_file(path)
    photos = _gallery(gallery) if gallery else ()
    from streamswap.eval.frames import FrameSelection
    from streamswap.eval.report import json_data, write_csv, write_plot
    from streamswap.eval.run import EvalSettings, evaluate

    settings = EvalSettings(tuple(source), target, tuple(outputs), FrameSelection(frames, every), photos, recogniser)
    console = stderr_console(quiet or as_json)
    bar = progress_bar(console)
    task: list[Any] = []

    def show(done: int, total: int | None) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("eval", total=total, rate=""))
        bar.update(task[0], completed=done)

    try:
        report = evaluate(settings, None if quiet or as_json else show)
    finally:
        bar.stop()
    if csv_path:
        write_csv(report, csv_path)
    if plot:
        write_plot(report, plot)
    if as_json:
        print_json(json_data(report))
    else:
        _table(console, report)
    for line in report.notes:
        note(console, line)
    say(
        console,
        "[green]done[/]:",
        f"{report.frames_evaluated} frames ({report.frames_with_face} with a face) in {report.elapsed_s:.1f} s",
    )


#: What --gallery reads from its folder
GALLERY_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _gallery(folder: str) -> tuple[str, ...]:
    """The photos in `folder` (sorted); InputError when it is not a folder or holds none."""
    from pathlib import Path

    from streamswap.errors import InputError

    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"--gallery {folder} is not a folder")
    photos = tuple(str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in GALLERY_SUFFIXES)
    if not photos:
        raise InputError(f"--gallery {folder} holds no photo ({', '.join(GALLERY_SUFFIXES)})")
    return photos


def _table(console: Any, report: Any) -> None:
    from pathlib import Path

    from rich.table import Table

    table = Table(title=f"eval against {Path(report.original).name} ({report.recogniser})")
    table.add_column("metric")
    for out in report.outputs:
        table.add_column(Path(out.output).name, justify="right")
    for label, name, fmt in _ROWS:
        table.add_row(label, *(_cell(out.summary, name, fmt) for out in report.outputs))
    console.print(table)
