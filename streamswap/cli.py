"""The `streamswap` command: wires the command groups in `streamswap.commands` into one app.

Library code raises `StreamSwapError` subclasses; this edge turns them into one line on stderr
and a non-zero exit (a traceback only with `--debug`). It also installs the stop-signal handlers
(`streamswap.stopping`): SIGINT, SIGTERM and SIGHUP stop any job cleanly, exit 128 + signal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
import sys

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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    # Each command group lives in its own module; importing it adds its commands to `app`.
    from streamswap.commands import models, doctor  # noqa: F401

    for extra in ("transcode", "swap", "live", "demo", "bench", "bench_scale", "batch", "train"):
        try:
            __import__(f"streamswap.commands.{extra}")
        except ModuleNotFoundError as exc:  # a group still being built must not break the others
            if exc.name != f"streamswap.commands.{extra}":
                raise


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user-actionable errors into one line and an exit code."""
    from streamswap.redact import install_log_redaction

    install_log_redaction()  # belt and braces: no log line of any module shows a URL's credentials
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:  # accept --debug anywhere on the line, not only before the command
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    _register()
    run_app(lambda: app(args=argv), debug)  # click handles usage errors and exit codes (standalone mode)


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

        Console(stderr=True).print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(redact_url(str(exc)))} "
                                   "(rerun with --debug for the traceback, and please report it)",
                                   highlight=False, soft_wrap=True)
        sys.exit(1)
