"""streamswap.memory: with the swap job's malloc settings a freed frame-sized block goes back to
the system at once; with glibc's defaults it stays in the heap (what made peak memory creep)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
from streamswap.bench.report import status_mib
from streamswap.memory import map_large_blocks
if sys.argv[1] == "set":
    assert map_large_blocks()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 3 * 1024 * 1024  # a 720p RGB frame is 2.6 MiB
first = libc.malloc(size); ctypes.memset(first, 1, size); libc.free(first)  # glibc raises its threshold here
frame = libc.malloc(size); ctypes.memset(frame, 1, size)
keep = [libc.malloc(4096) for _ in range(64)]  # later heap blocks pin the heap's top
before = status_mib("RssAnon")["RssAnon"]
libc.free(frame)
print(before - status_mib("RssAnon")["RssAnon"])
"""


def _released_mib(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_a_freed_frame_goes_back_to_the_system_only_with_the_settings():
    assert _released_mib("set") > 2.5
    assert _released_mib("default") < 0.5
