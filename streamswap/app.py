"""The `streamswap` typer app and the edge every command runs behind (`run_app`).

Library code raises `StreamSwapError` subclasses; `run_app` turns them into one line on stderr
and a non-zero exit (a traceback only with `--debug`). It also installs the stop-signal handlers
(`streamswap.stopping`): SIGINT, SIGTERM and SIGHUP stop any job cleanly, exit 128 + signal.
The commands (`streamswap.commands`) add themselves to `app`; `streamswap.cli` lists them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from streamswap import __version__
from streamswap.errors import StreamSwapError
from streamswap.stopping import StopSignals, exit_code_of

app = typer.Typer(
    name="streamswap",
    help="GPU-first face swapping (GHOST) for images, long videos and live streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamswap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def run_app(run: Callable[[], object], debug: bool) -> None:
    """Run a typer app's call with the stop signals handled: a StreamSwapError becomes one `error:`
    line and its exit code, any other exception one line and exit 1 (the traceback only with
    --debug), a stop signal exit 128 + its number. Shared with `python -m train`."""
    stops = StopSignals().install()
    try:
        run()
    except SystemExit as exc:  # typer turns any KeyboardInterrupt into exit 130: say which signal it was
        if exc.code == 130 and stops.signum is not None:
            sys.exit(128 + stops.signum)
        raise
    except KeyboardInterrupt as exc:  # raised outside typer's reach
        sys.exit(exit_code_of(exc))
    except StreamSwapError as exc:
        if debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: one line unless --debug
        if debug:
            raise
        from streamswap.redact import redact_url

        Console(stderr=True).print(
            f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(redact_url(str(exc)))} "
            "(rerun with --debug for the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
