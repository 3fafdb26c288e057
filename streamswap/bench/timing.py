"""Timing loops of the micro-benchmarks (detection, generator, training step): wait for the
device, seconds per call, best of interleaved rounds."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def sync(device: str | torch.device) -> None:
    """Wait for the work queued on `device` (CUDA runs asynchronously; a no-op elsewhere)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, seconds: float) -> float:
    """Seconds per call over about `seconds` (at least 2 calls), after one warm-up call."""
    fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        sync(device)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 2:
            return elapsed / n


def best_of(
    fns: dict[str, Callable[[], object]], device: torch.device, seconds: float, rounds: int
) -> dict[str, float]:
    """Best seconds per call of each fn, over `rounds` rounds that interleave the fns, so that
    load from other processes on a shared machine hits every configuration alike."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], seconds_per_call(fn, device, seconds / rounds))
    return best
