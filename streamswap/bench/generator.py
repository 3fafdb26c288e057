"""Generator throughput (faces/s) by batch size: AEI-Net forward only, inputs already on the device.

    python benchmarks/bench_generator.py                      # all configs this machine can run
    python benchmarks/bench_generator.py --batches 1,2,4 --max-seconds 10 --out /tmp/g.json

Configs: `cpu-fp32` always; with CUDA also `cuda-fp32`, `cuda-fp16-cl` (fp16, channels_last) and
`cuda-fp16-cl-compile` (the same under torch.compile). Weights are random (speed does not depend
on their values); pass --weights to time a real file. Writes JSON (default
benchmarks/results/generator.json).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import torch

from streamswap.bench.report import RESULTS, load_avg, peak_gpu_mib, save_json
from streamswap.bench.timing import sync
from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.inference import InferenceSettings, prepare_generator, run_generator
from streamswap.models.weights import load_weights

CONFIGS: dict[str, InferenceSettings] = {
    "cpu-fp32": InferenceSettings(device="cpu", precision="float32", channels_last=False),
    "cuda-fp32": InferenceSettings(device="cuda", precision="float32", channels_last=False),
    "cuda-fp16-cl": InferenceSettings(device="cuda", precision="float16", channels_last=True),
    "cuda-fp16-cl-compile": InferenceSettings(device="cuda", precision="float16", channels_last=True, compile=True),
}


def bench_one(
    model: torch.nn.Module, settings: InferenceSettings, batch: int, max_seconds: float, warmup: int
) -> dict[str, float | int]:
    """Time forward passes of one batch size (random (batch, 3, 256, 256) targets in [-1, 1] and
    unit (batch, 512) identities) until `max_seconds` pass (at least one)."""
    device = settings.device
    x = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
    z = torch.nn.functional.normalize(torch.randn(batch, 512, device=device), dim=1)
    for _ in range(warmup):
        run_generator(model, x, z, settings)
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    iters, start = 0, time.perf_counter()
    while True:
        run_generator(model, x, z, settings)
        sync(device)
        iters += 1
        elapsed = time.perf_counter() - start
        if elapsed >= max_seconds:
            break
    row: dict[str, float | int] = {
        "batch": batch,
        "iters": iters,
        "seconds": round(elapsed, 3),
        "ms_per_batch": round(1000 * elapsed / iters, 2),
        "faces_per_s": round(batch * iters / elapsed, 2),
    }
    peak = peak_gpu_mib(device)
    if peak is not None:
        row["peak_mem_mib"] = round(peak)
    return row


def bench_config(name: str, args: argparse.Namespace, batches: list[int]) -> list[dict[str, Any]]:
    """Rows of one config, batch by batch; the first batch that runs out of memory ends it."""
    settings = CONFIGS[name]
    net = AEINet(AEINetConfig(num_blocks=args.blocks))
    if args.weights:
        load_weights(net, args.weights)
    model = prepare_generator(net, settings)
    warmup = 1 if settings.device == "cpu" else (3 if not settings.compile else 5)
    rows: list[dict[str, Any]] = []
    for b in batches:
        try:
            row = bench_one(model, settings, b, args.max_seconds, warmup)
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": b, "error": "out of memory"})
            torch.cuda.empty_cache()
            break
        rows.append(row)
        print(
            f"{name:22s} batch {b:3d}: {row['faces_per_s']:9.2f} faces/s "
            f"({row['ms_per_batch']} ms/batch, {row['iters']} iters)",
            flush=True,
        )
    return rows


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,2,4,8,16,32,64", help="comma-separated batch sizes")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="timed seconds per batch size")
    ap.add_argument("--blocks", type=int, default=2, choices=(1, 2, 3), help="AAD blocks (2 = GHOST's main)")
    ap.add_argument("--configs", default=None, help=f"comma-separated subset of {','.join(CONFIGS)}")
    ap.add_argument("--weights", type=Path, default=None, help="a G_unet_*.pth to load (optional)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=RESULTS / "generator.json")
    return ap


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/bench_generator.py [flags]`: time the configs, write the JSON report."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    names = (
        args.configs.split(",")
        if args.configs
        else [n for n in CONFIGS if torch.cuda.is_available() or not n.startswith("cuda")]
    )
    report: dict = {
        "model": f"AEI-Net unet {args.blocks} blocks",
        "weights": str(args.weights) if args.weights else "random",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "max_seconds": args.max_seconds,
        "load_average_at_start": load_avg(),
        "results": {name: bench_config(name, args, batches) for name in names},
    }
    # other processes on the machine skew CPU numbers: keep the evidence with them
    report["load_average_at_end"] = load_avg()
    save_json(args.out, report, indent=2)
    print(f"wrote {args.out}")
    return 0
