"""Shared test fixtures: where the real media and golden fixtures live, and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `streamswap` CLI in a subprocess and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "streamswap", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd or REPO,
    )


@pytest.fixture
def cli():
    """The `run_cli` helper as a fixture."""
    return run_cli
