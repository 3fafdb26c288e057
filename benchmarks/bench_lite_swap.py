"""End-to-end speed of the lite engine: `streamswap swap` on a real 720p video, through the real
CLI in a subprocess, with its default settings. Writes JSON (frames, fps, per-stage busy fractions).

    python benchmarks/bench_lite_swap.py --video ../shared/data/videos/nggyup.mp4 \
        --source ../shared/data/images/mark.jpg --out benchmarks/results/lite_swap.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(video: Path, source: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "streamswap", "swap", "--source", str(source), "--target",
                               str(video), "--output", str(out), "--engine", "lite", "--json", "--quiet", *extra],
                              capture_output=True, text=True)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"swap failed: {proc.stderr.strip()}")
        report = json.loads(proc.stdout)
    stages = {s["name"]: round(s["busy"], 3) for s in report["graph"]["stages"]}
    return {"args": extra, "frames": report["frames"], "frames_swapped": report["frames_swapped"],
            "pipeline_fps": round(report["fps"], 2), "wall_s_including_startup": round(wall, 2),
            "busy": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=SHARED / "videos" / "nggyup.mp4")
    ap.add_argument("--source", type=Path, default=SHARED / "images" / "mark.jpg")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lite_swap.json")
    args = ap.parse_args()
    runs = [run(args.video, args.source, []), run(args.video, args.source, ["--detect-every", "1"])]
    result = {"device": f"CPU ({os.cpu_count()} cores, {platform.machine()})", "load_avg": os.getloadavg(),
              "video": args.video.name, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
