"""End-to-end speed of the lite engine: `streamswap swap` on a real 720p video, through the real
CLI in a subprocess, with its default settings. Writes JSON (frames, fps, per-stage busy fractions).

    python benchmarks/bench_lite_swap.py --video ../shared/data/videos/nggyup.mp4 \
        --source ../shared/data/images/mark.jpg --out benchmarks/results/lite_swap.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamswap.bench.report import RESULTS, SHARED, cpu_name, save_json


def run(video: Path, source: Path, extra: list[str]) -> dict:
    """One `streamswap swap --engine lite` run with `extra` flags: frames, the job's frames/s,
    the wall seconds including the CLI's start-up, and each stage's busy fraction (0-1)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        t0 = time.monotonic()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamswap",
                "swap",
                "--source",
                str(source),
                "--target",
                str(video),
                "--output",
                str(out),
                "--engine",
                "lite",
                "--json",
                "--quiet",
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"swap failed: {proc.stderr.strip()}")
        report = json.loads(proc.stdout)
    stages = {s["name"]: round(s["busy"], 3) for s in report["graph"]["stages"]}
    return {
        "args": extra,
        "frames": report["frames"],
        "frames_swapped": report["frames_swapped"],
        "pipeline_fps": round(report["fps"], 2),
        "wall_s_including_startup": round(wall, 2),
        "busy": stages,
    }


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/bench_lite_swap.py [flags]`: the default run and one detecting every
    frame; prints and writes the JSON report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=SHARED / "data" / "videos" / "nggyup.mp4")
    ap.add_argument("--source", type=Path, default=SHARED / "data" / "images" / "mark.jpg")
    ap.add_argument("--out", type=Path, default=RESULTS / "lite_swap.json")
    args = ap.parse_args(argv)
    runs = [run(args.video, args.source, []), run(args.video, args.source, ["--detect-every", "1"])]
    result = {"device": cpu_name(), "load_avg": os.getloadavg(), "video": args.video.name, "runs": runs}
    print(save_json(args.out, result, indent=2))
