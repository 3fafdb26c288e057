"""The `streamswap` command: every command group, listed, on the one app (`streamswap.app`)."""

from __future__ import annotations

import importlib
import sys

from streamswap.app import app, run_app

__all__ = ["COMMANDS", "app", "main", "register"]


#: The command groups, in the order `streamswap --help` lists them; each module adds its commands
#: to `app` when imported.
COMMANDS = (
    "models",
    "doctor",
    "transcode",
    "swap",
    "eval",
    "live",
    "serve",
    "demo",
    "bench",
    "bench_workers",
    "batch",
    "train",
)


def register() -> None:
    """Add every command group in `COMMANDS` to `app`."""
    for name in COMMANDS:
        importlib.import_module(f"streamswap.commands.{name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user-actionable errors into one line and an exit code."""
    from streamswap.redact import install_log_redaction

    install_log_redaction()  # belt and braces: no log line of any module shows a URL's credentials
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:  # accept --debug anywhere on the line, not only before the command
        argv = ["--debug", *(a for a in argv if a != "--debug")]
    register()
    run_app(lambda: app(args=argv), debug)  # click handles usage errors and exit codes (standalone mode)
