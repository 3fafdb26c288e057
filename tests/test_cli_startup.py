"""The command line starts fast: `--help` and a job that cannot start (a missing file, an output
that exists) answer before torch is imported, so a typo costs a second, not torch's import."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO, default_signals


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI under `python -X importtime`; its result and the top-level packages it imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "streamswap", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, preexec_fn=default_signals)
    modules = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s*(\S+)$", proc.stderr, re.M)}
    return proc, modules


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]


def test_help_and_jobs_that_cannot_start_never_import_torch(shared_data, tmp_path):
    mark = str(shared_data / "images" / "mark.jpg")
    video = str(shared_data / "videos" / "dance.mp4")
    exists = tmp_path / "exists.mp4"
    exists.write_bytes(b"keep me")
    proc, modules = _imported("--help")
    assert proc.returncode == 0 and "swap" in proc.stdout and "torch" not in modules
    assert "typer" in modules  # the importtime listing was read
    cases = [
        (("swap", "-s", mark, "-t", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")), "does not exist"),
        (("swap", "-s", mark, "-t", video, "-o", str(exists)), "--overwrite"),
        (("live", "-s", mark, "-i", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")), "does not exist"),
        (("transcode", video, str(exists)), "--overwrite"),
    ]
    for args, words in cases:
        proc, modules = _imported(*args)
        lines = _error_lines(proc)
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], (args, lines)
        assert "torch" not in modules, args
    assert exists.read_bytes() == b"keep me"
