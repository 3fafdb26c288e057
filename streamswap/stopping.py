"""Stop signals: SIGINT, SIGTERM and SIGHUP stop a job the way Ctrl-C does.

Why the CLI installs its own handlers: a process that a non-interactive shell starts in the
background inherits SIGINT *ignored* (Python then installs no KeyboardInterrupt handler), and
SIGTERM (docker stop, systemd, Kubernetes, Ray) and SIGHUP kill at once by default, leaving an
unfinished file. With `StopSignals` installed, each of the three raises `Stopped` (a
KeyboardInterrupt, so every job's Ctrl-C path runs: the graph aborts, the sink finalises a
playable file) and the process exits 128 + the signal number (130, 143, 129).

- A second signal while the job is stopping is acknowledged and ignored (the output is being
  finalised); a third ends the process at once.
- One deliberate exception: a SIGHUP that the process inherited *ignored* stays ignored. That
  is what `nohup` asks for (keep running after the terminal closes); SIGINT and SIGTERM are
  handled whatever was inherited.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived: `signum` says which; exit with `exit_code` (128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(stop_reason(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def stop_reason(signum: int = signal.SIGINT) -> str:
    """'interrupted by Ctrl-C (SIGINT)', 'stopped by SIGTERM', ... for messages and reports."""
    if signum == signal.SIGINT:
        return "interrupted by Ctrl-C (SIGINT)"
    return f"stopped by {signal.Signals(signum).name}"


def reason_of(exc: BaseException) -> str:
    """The stop reason of a KeyboardInterrupt (a `Stopped` or a plain Ctrl-C)."""
    return stop_reason(exc.signum if isinstance(exc, Stopped) else signal.SIGINT)


def exit_code_of(exc: BaseException) -> int:
    """128 + the signal number for a `Stopped`, 130 for a plain KeyboardInterrupt."""
    return exc.exit_code if isinstance(exc, Stopped) else 128 + signal.SIGINT


@dataclass
class StopSignals:
    """The handler for the three stop signals (see the module docstring). `signum`: the first
    signal received (None: none yet); `count`: how many arrived."""

    signum: int | None = None
    count: int = 0

    def install(self) -> StopSignals:
        """Handle SIGINT/SIGTERM/SIGHUP in this (main) thread and unblock them. Returns self."""
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # nohup: the user asked to outlive the terminal
            signal.signal(sig, self._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.signum = signum
            raise Stopped(signum)
        if self.count >= 3:
            os._exit(128 + signum)
        sys.stderr.write(
            f"{signal.Signals(signum).name}: already stopping, finishing the output file "
            "(signal once more to quit at once, leaving it unfinished)\n"
        )
        sys.stderr.flush()


def reinstall_stop_handlers() -> None:
    """Put this process's Python-level handlers for the stop signals back in force: Ray's core
    worker installs its own at `ray.init`, bypassing them."""
    for sig in STOP_SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler):
            signal.signal(sig, handler)


__all__ = [
    "STOP_SIGNALS",
    "StopSignals",
    "Stopped",
    "exit_code_of",
    "reason_of",
    "reinstall_stop_handlers",
    "stop_reason",
]
