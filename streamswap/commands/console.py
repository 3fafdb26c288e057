"""What the commands print the same way: one-line notes, JSON reports (credentials redacted),
the progress bar, and a job's latest report (the summary of a job stopped by a signal)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def stderr_console(quiet: bool = False) -> Console:
    """Where progress, notes and summaries go: stderr (stdout is for --json)."""
    return Console(stderr=True, quiet=quiet)


def say(console: Console, tag: str, text: str) -> None:
    """`tag` (rich markup, e.g. "[green]done[/]:") then `text` as it is (escaped), one line however
    long (paths are not wrapped)."""
    console.print(f"{tag} {escape(text)}" if tag else escape(text), highlight=False, soft_wrap=True)


def note(console: Console, text: str) -> None:
    say(console, "[yellow]note:[/]", text)


def print_json(report: Any) -> None:
    """A report (a dataclass or a dict) as indented JSON on stdout, URLs without credentials."""
    from streamswap.redact import redact_data

    data = asdict(report) if is_dataclass(report) and not isinstance(report, type) else report
    typer.echo(json.dumps(redact_data(data), indent=2, default=str))


def progress_bar(console: Console, *, eta: bool = True) -> Progress:
    """The bar every long job shows: description, bar, done/total, a `rate` field, (ETA,) elapsed."""
    columns: list[Any] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
    ]
    return Progress(
        *columns, *([TimeRemainingColumn()] if eta else []), TimeElapsedColumn(), console=console, transient=False
    )


class Watch:
    """A job's progress callback: keeps the latest report (`report`, None before the first frame)
    and passes (stats, report) on to `show` (None: nothing shown, e.g. --quiet)."""

    def __init__(self, show: Callable[[Any, Any], None] | None) -> None:
        self.show, self.report = show, None

    def __call__(self, stats: Any, report: Any) -> None:
        self.report = report
        if self.show is not None:
            self.show(stats, report)
