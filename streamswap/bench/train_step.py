"""Training speed (steps/s) of the GHOST trainer: one full step (G step + D step, every loss) per
iteration, by precision, on in-memory random batches (the data loader is timed by train/data's own
benchmarks, not here).

    python benchmarks/bench_train.py                                  # GPU: batch 16, 256 px, fp32 vs bf16
    python benchmarks/bench_train.py --precisions fp32,bf16,fp16 --steps 30 --warmup 5
    python benchmarks/bench_train.py --tiny --device cpu --batch 4 --steps 5 --warmup 1   # CPU proof run

Networks: the published architectures (AEI-Net 2 blocks, D ndf 64, IResNet-100, FAN 4HG when
--eyes) with random weights — speed does not depend on the values — or --tiny widths. Writes JSON
(default benchmarks/results/train.json).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from streamswap.bench.report import RESULTS, peak_gpu_mib, save_json
from streamswap.bench.timing import sync
from train.settings import PRECISIONS, LossWeights, ModelSettings, Precision, TrainSettings
from train.trainer import DistInfo, Trainer


class RandomBatches:
    """An endless loader of one fixed random batch on `device` (what build_loader would return):
    "source" and "target" (batch, 3, size, size) in [-1, 1], "same" (batch,) 0/1 (20 % ones)."""

    def __init__(self, batch: int, size: int, device: torch.device) -> None:
        g = torch.Generator().manual_seed(0)
        self.batch = {
            "source": (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device),
            "target": (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device),
            "same": (torch.rand(batch, generator=g) < 0.2).float().to(device),
        }

    def __iter__(self) -> RandomBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        return self.batch


_PRECISION_NAMES: dict[str, Precision] = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}


def _precision(name: str) -> Precision:
    """`name` (from --precisions) as a Precision; any other name fails as TrainSettings would fail it."""
    if name not in _PRECISION_NAMES:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return _PRECISION_NAMES[name]


def measure(precision: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time `args.steps` full training steps at `precision` (after `args.warmup` untimed ones) on
    one fixed random batch: steps/s, images/s, the last losses, peak GPU memory (GiB) on CUDA."""
    model = (
        ModelSettings.tiny(blocks=args.blocks)
        if args.tiny
        else ModelSettings(blocks=args.blocks, identity="random", eye_net="random")
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainSettings(
            out_dir=Path(tmp),
            steps=args.warmup + args.steps,
            batch_size=args.batch,
            model=model,
            precision=_precision(precision),
            device=args.device,
            weights=LossWeights(eyes=1.0 if args.eyes else 0.0),
            fixed_batch_size=2,
        )
        device = torch.device(
            args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        trainer = Trainer(
            settings,
            data=_NoData(),
            info=DistInfo(),
            loader_factory=lambda data, **kw: RandomBatches(args.batch, args.size, device),
            fixed_batch_fn=lambda data, n: next(RandomBatches(n, args.size, torch.device("cpu"))),
        )
        trainer._build()
        batch = next(trainer.loader)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            trainer.train_step(batch)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            losses = trainer.train_step(batch)
        sync(device)
        seconds = time.perf_counter() - t0
    out = {
        "precision": precision,
        "device": str(device),
        "batch": args.batch,
        "size": args.size,
        "blocks": args.blocks,
        "tiny": args.tiny,
        "eye_loss": args.eyes,
        "steps": args.steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(args.steps / seconds, 3),
        "images_per_s": round(args.steps * args.batch / seconds, 2),
        "last_losses": losses,
    }
    if device.type == "cuda":
        out["peak_gib"] = round((peak_gpu_mib(str(device)) or 0.0) / 1024, 2)
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


@dataclass(frozen=True)
class _NoData:
    """Stands in for DataSettings (the benchmark feeds batches itself)."""

    batch_size: int = 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny random widths (CPU proof run)")
    p.add_argument("--eyes", action="store_true", help="include the eye loss (FAN 4HG forward/backward)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "train.json")
    return p


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/bench_train.py [flags]`: one measurement per precision; writes the JSON
    report and prints a line per precision."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [measure(prec, args) for prec in args.precisions.split(",")]
    report = {
        "machine": platform.node(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "results": results,
    }
    save_json(args.out, report, indent=2)
    for r in results:
        print(
            f"{r['device']:>8} {r['precision']:>5} batch {r['batch']} {r['size']}px: "
            f"{r['steps_per_s']:.3f} steps/s ({r['images_per_s']:.1f} img/s)"
            + (f", peak {r['peak_gib']} GiB" if "peak_gib" in r else "")
        )
