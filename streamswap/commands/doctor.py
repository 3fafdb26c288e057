"""`streamswap doctor`: one screen of what this install can do and what is broken, with fixes."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streamswap.app import app
from streamswap.doctor import DoctorConfig, is_device, run_checks
from streamswap.models.registry import Registry, RegistryConfig


@app.command()
def doctor(
    device: str = typer.Option("auto", help="Configuration to check for: auto, cpu or cuda."),
    engine: str = typer.Option("auto", help="Engine to check for: auto, or an engine's name (ghost, lite, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Say what this install can do and what is broken; exit 1 if the chosen configuration is broken."""
    from streamswap.engines.registry import engine_named

    if not is_device(device):
        raise typer.BadParameter("--device is auto|cpu|cuda")
    if engine != "auto":
        engine_named(engine)  # an unknown name: one line listing the engines there are
    checks = run_checks(DoctorConfig(device=device, engine=engine), Registry(RegistryConfig.from_env()))
    fatal = [c for c in checks if c.fatal]
    if as_json:
        typer.echo(json.dumps({"ok": not fatal, "checks": [asdict(c) | {"fatal": c.fatal} for c in checks]}, indent=2))
    else:
        table = Table(title="streamswap doctor", show_lines=False)
        for col in ("", "what", "found", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            mark = "[green]ok[/]" if c.ok else ("[red]BROKEN[/]" if c.fatal or c.ok is False else "[dim]–[/]")
            table.add_row(mark, escape(c.area) + (" *" if c.needed else ""), escape(c.detail), escape(c.fix))
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(table)
        console.print(
            "* needed by this configuration"
            + (f"; [red]{len(fatal)} problem(s) to fix[/]" if fatal else "; [green]ready[/]")
        )
    if fatal:
        raise typer.Exit(1)
