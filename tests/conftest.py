"""Shared test fixtures: where the real media and golden fixtures live, the CLI runner, and the
guards that make the suite independent of how it is launched and of test order.

A shell that starts a job in the background (`nohup make test &`, many CI runners) hands it
SIGINT ignored; Python then installs no KeyboardInterrupt handler and every child inherits the
ignore. So tests never rely on the dispositions they were given: children start with the three
stop signals at their defaults (`start_cli`, `run_cli`), an in-process test that needs Ctrl-C
asks for `sigint_raises`, and `_process_state` restores what a test (or Ray) changed process-wide.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# OpenMP threads that find no work spin before they sleep (libgomp's default, ACTIVE-ish). The suite
# runs two xdist workers, CLI subprocesses and Ray workers, each with a thread per core, on 2 cores:
# spinning threads then take the cores the others need (measured: two concurrent 2-thread conv
# loops took 4.1-4.4 s each by default, 2.4 s with PASSIVE, 1.6 s alone). Set before torch starts
# its OpenMP runtime; children (CLI, Ray workers) inherit it. Only speed depends on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAMSWAP_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the project's shared/ folder is not next to the checkout)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`: real images and videos with faces (skips when absent)."""
    return _need(SHARED / "data")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """`../shared/golden`: fixtures pinning the published GHOST networks (skips when absent)."""
    return _need(SHARED / "golden")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_signals() -> None:
    """preexec_fn: the child starts with SIGINT/SIGTERM/SIGHUP at SIG_DFL and none blocked, as
    from a terminal, whatever this test process inherited (only signal calls: fork-safe)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def start_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              **popen: object) -> subprocess.Popen[str]:
    """Start the real `streamswap` CLI (stdout/stderr piped, text) with default stop signals
    (`preexec_fn=` in `popen` sets other dispositions)."""
    popen.setdefault("preexec_fn", default_signals)
    return subprocess.Popen([sys.executable, "-m", "streamswap", *args], cwd=cwd or REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `streamswap` CLI in a subprocess and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "streamswap", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd or REPO,
        preexec_fn=default_signals,
    )


@pytest.fixture
def cli():
    """The `run_cli` helper as a fixture."""
    return run_cli


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in this process for the test's duration (Python's default
    from a terminal; absent when the suite was started in the background), then is restored."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(autouse=True)
def _process_state():
    """Restore the process-wide state a test may change (signal handlers and mask, environment,
    working directory, torch threads, root logging), so no test depends on the ones before it."""
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    env, cwd, threads = dict(os.environ), os.getcwd(), torch.get_num_threads()
    root = logging.getLogger()
    log_level, log_handlers = root.level, list(root.handlers)
    yield
    for sig, handler in handlers.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    root.setLevel(log_level)
    root.handlers[:] = log_handlers
