"""What every benchmark report records, the memory figures it measures, and where its inputs
(the checkout's `../shared` media) and outputs (`benchmarks/results/`) live by default."""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("STREAMSWAP_SHARED", REPO.parent / "shared"))  # data/videos, data/images
RESULTS = REPO / "benchmarks" / "results"


def save_json(path: Path, report: Any, **dumps: Any) -> str:
    """Write `report` as JSON (json.dumps keywords in `dumps`) plus a newline to `path`, making
    its folder; returns the JSON text (without the newline), for printing."""
    text = json.dumps(report, **dumps)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return text


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (MiB): run each measured job in a fresh process."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads), seconds."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def status_mib(*keys: str, pid: int | str = "self") -> dict[str, float]:
    """Fields (e.g. "VmRSS") of /proc/PID/status in MiB: this process's by default (Linux; empty
    elsewhere, or when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in keys:
            out[name] = int(rest.split()[0]) / 1024
    return out


class MemorySampler:
    """Samples this process's resident memory every `interval_s` in a thread: total (VmRSS) and
    anonymous (RssAnon: the heap and tensors, without the mapped code of shared libraries, which
    is the same for every job). Use as a context manager; `peak_anon_mib` and `timeline` after."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.timeline: list[tuple[float, float, float]] = []  # (seconds, rss MiB, anon MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            m = status_mib("VmRSS", "RssAnon")
            if m:
                self.timeline.append((time.monotonic() - self._t0, m["VmRSS"], m.get("RssAnon", m["VmRSS"])))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_anon_mib(self) -> float | None:
        return max((a for _, _, a in self.timeline), default=None)

    def summary(self, points: int = 60) -> list[list[float]]:
        """The timeline thinned to about `points` samples: [[s, rss, anon], ...] (for plots)."""
        step = max(1, len(self.timeline) // points)
        return [[round(t, 2), round(r, 1), round(a, 1)] for t, r, a in self.timeline[::step]]


def peak_gpu_mib(device: str) -> float | None:
    """Peak CUDA memory allocated by torch on `device` (MiB); None off CUDA."""
    import torch

    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20


def load_avg() -> list[float]:
    """The 1/5/15-minute load averages, rounded: other processes on the machine skew CPU timings."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_name() -> str:
    """The CPU as reports name it: "CPU (N cores, ARCH)"."""
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def environment() -> dict[str, Any]:
    """Device, versions, load and date: recorded with every report."""
    import av
    import torch

    import streamswap

    cpu = cpu_name()
    return {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu,
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "av": av.__version__,
        "streamswap": streamswap.__version__,
        "load_avg": load_avg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
