"""`streamswap models ...`: list, fetch, verify, locate and describe the published models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from streamswap.app import app
from streamswap.errors import ModelError
from streamswap.models.catalog import MODELS
from streamswap.models.registry import Registry, RegistryConfig, Status

models_app = typer.Typer(help="List, fetch, verify and locate the published models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelsDir = typer.Option(
    None,
    "--models-dir",
    help="A folder that already holds model files (offline machines).",
    envvar="STREAMSWAP_MODELS_DIR",
    file_okay=False,
)


def _registry(models_dir: Path | None) -> Registry:
    if models_dir is not None and not models_dir.is_dir():
        raise ModelError(f"--models-dir {models_dir} is not a folder; give the folder that holds the model files")
    return Registry(RegistryConfig.from_env(models_dir=models_dir))


def _mb(size: int | None, approx: int) -> str:
    return f"{size / 1e6:.1f} MB" if size is not None else f"~{approx} MB"


@models_app.command("list")
def list_models(
    models_dir: Path | None = ModelsDir, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """Every known model: purpose, file, size, licence, whether present and verified."""
    reg = _registry(models_dir)
    states = reg.states()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": s.spec.name,
                        "purpose": s.spec.purpose,
                        "file": s.spec.filename,
                        "size": s.size,
                        "approx_mb": s.spec.approx_mb,
                        "licence": s.spec.licence,
                        "path": str(s.path) if s.path else None,
                        "status": s.status.value,
                        "hash": s.hash_source,
                        "url": reg.url(s.spec),
                    }
                    for s in states
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"models (cache: {reg.cache_dir})")
    for col in ("name", "purpose", "file", "size", "licence", "status", "hash"):
        table.add_column(col, overflow="fold")
    colour = {Status.VERIFIED: "green", Status.PINNED_NOW: "yellow", Status.MISSING: "dim", Status.MISMATCH: "red"}
    for s in states:
        table.add_row(
            s.spec.name,
            s.spec.purpose,
            s.spec.filename,
            _mb(s.size, s.spec.approx_mb),
            s.spec.licence,
            f"[{colour[s.status]}]{s.status.value}[/]",
            s.hash_source,
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@models_app.command("fetch")
def fetch(
    names: list[str] = typer.Argument(None, help="Model names (see `models list`)."),
    all_: bool = typer.Option(False, "--all", help="Fetch every model."),
    models_dir: Path | None = ModelsDir,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Download models from their original release URLs, resumably, and verify them."""
    reg = _registry(models_dir)
    wanted = [m.name for m in MODELS] if all_ else list(names or [])
    if not wanted:
        raise ModelError("name at least one model (see `streamswap models list`) or pass --all")
    specs = [reg.spec(n) for n in wanted]  # unknown names fail before any download
    console = Console(stderr=True, quiet=quiet)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        for spec in specs:
            if reg.find(spec) is not None:
                console.print(f"{spec.name}: already present at {reg.find(spec)}")
                continue
            tasks: dict[str, TaskID] = {}  # the bar appears when bytes flow, not before an early error

            def report(
                done: int, total: int | None, name: str = spec.name, tasks: dict[str, TaskID] = tasks
            ) -> None:  # bound now: called in this iteration only
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done, total=total)

            path = reg.fetch(spec.name, progress=report)
            state = reg.state(spec)
            console.print(f"{spec.name}: {path} ({state.hash_source})")


@models_app.command("verify")
def verify(
    models_dir: Path | None = ModelsDir, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")
) -> None:
    """Re-hash every model present and report mismatches (exit 1 if any)."""
    reg = _registry(models_dir)
    present = [s for s in reg.states() if s.status is not Status.MISSING]
    bad = [s for s in present if s.status is Status.MISMATCH]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "checked": len(present),
                    "mismatches": [str(s.path) for s in bad],
                    "files": {s.spec.name: s.status.value for s in present},
                },
                indent=2,
            )
        )
    else:
        for s in present:
            typer.echo(f"{s.status.value:10s} {s.spec.name:16s} {s.path} ({s.hash_source})")
        typer.echo(f"{len(present)} model file(s) checked, {len(bad)} mismatch(es)")
    if bad:
        raise typer.Exit(1)


@models_app.command("path")
def path(name: str, models_dir: Path | None = ModelsDir) -> None:
    """Print the local path of a model (exit non-zero if it is not there)."""
    typer.echo(str(_registry(models_dir).path(name)))


@models_app.command("info")
def info(name: str, as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The network behind a model: class, parameter count, size, input and output shapes."""
    from streamswap.models.weights import MODEL_BUILDS, describe_model

    if name.removesuffix(".pth") not in MODEL_BUILDS:
        raise ModelError(
            f"no network description for {name!r}; networks: {', '.join(MODEL_BUILDS)} "
            "(the ONNX face models are described by their files)"
        )
    described = describe_model(name)
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    for key, value in described.items():
        typer.echo(f"{key:20s} {value}")
