"""The `prepare` command (rich progress, --quiet, --json), added to a typer app by `register(app)`.

`python -m train prepare ...` and `streamswap train prepare ...` get it through train/cli.py;
`python -m train.prepare_cli prepare ...` runs it alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from streamswap.errors import StreamSwapError
from train.settings import DETECTORS, FORMATS, TEMPLATES, PrepareSettings


def prepare(
    input: Path = typer.Option(..., "--input", "-i", help="Folder of identity sub-folders of photos/videos "
                               "(VGGFace2 layout); loose files are one identity each."),
    output: Path = typer.Option(..., "--output", "-o", help="Dataset folder: one sub-folder of crops per "
                                "identity + manifest.json. Re-running resumes."),
    every: int = typer.Option(10, "--every", help="Videos: keep every N-th frame."),
    max_per_video: int = typer.Option(0, "--max-per-video", help="Videos: most crops per video (0: no limit)."),
    detector: str = typer.Option("lite", "--detector", help=f"Face detector: {' | '.join(DETECTORS)} "
                                 "(lite: dlib, offline; scrfd: the published SCRFD, as the swap engine)."),
    scrfd_model: Path | None = typer.Option(None, "--scrfd-model", help="SCRFD ONNX file (default: model cache)."),
    models_dir: Path | None = typer.Option(None, "--models-dir", help="Folder that already holds the models."),
    template: str = typer.Option("ghost", "--template", help=f"Crop alignment: {' | '.join(TEMPLATES)} "
                                 "(ghost: GHOST's five pose templates, what its weights were trained on)."),
    size: int = typer.Option(224, "--size", help="Crop side in pixels (a multiple of 112)."),
    min_face: int = typer.Option(64, "--min-face", help="Faces with a smaller box side (px) are not usable."),
    image_format: str = typer.Option("jpg", "--format", help=f"Crop files: {' | '.join(FORMATS)}."),
    device: str = typer.Option("cpu", "--device", help="Where detection and warping run (cpu, cuda)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Turn photos/videos of people into aligned face crops for training (resumable)."""
    from train.prepare import PrepareProgress, find_inputs, prepare_dataset  # torch: only once the job runs

    settings = PrepareSettings(input=input, output=output, every=every, max_per_video=max_per_video,
                               detector=detector, scrfd_model=scrfd_model, models_dir=models_dir, template=template,
                               size=size, min_face=min_face, image_format=image_format, device=device)
    find_inputs(settings.input, settings.output)  # a bad input folder fails before the bar is drawn
    console = Console(stderr=True, quiet=quiet)
    with Progress(TextColumn("prepare"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[crops]} crops"),
                  TimeRemainingColumn(), TextColumn("{task.fields[current]}"), console=console,
                  disable=quiet) as bar:
        task = bar.add_task("prepare", total=None, crops=0, current="")

        def show(p: PrepareProgress) -> None:
            bar.update(task, completed=p.done, total=p.total, crops=p.crops, current=escape(p.current))

        report = prepare_dataset(settings, progress=show)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=1))
        return
    skipped = ", ".join(f"{n} {reason}" for reason, n in report.skipped.items()) or "none"
    console.print(f"{report.crops} crops of {report.identities} identities in {escape(str(settings.output))} "
                  f"({report.prepared_now} inputs prepared now, {report.already_done} already done; "
                  f"skipped: {skipped}; {report.seconds:.1f} s)", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `prepare` command to `app`."""
    app.command("prepare")(prepare)


def main(argv: list[str] | None = None) -> None:
    """Run `prepare` alone, errors as one line and the error's exit code (as streamswap's main)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)

    @app.callback()
    def _group() -> None:
        """Training data preparation."""

    register(app)
    try:
        app(args=sys.argv[1:] if argv is None else argv)
    except StreamSwapError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
