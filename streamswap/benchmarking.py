"""Benchmarks of whole jobs: the StreamSwap pipeline, and the seed implementation's way of running
the same models (the baseline), each in a fresh process so peak memory is its own.

The baseline does what the seed does: decode every frame into memory first, detect one frame at a
time, run the swap model in batches, write the result with OpenCV's `mp4v` writer, then re-mux the
audio. It uses the same models and settings as the pipeline (lite engine: the same detector at
the same size, the same swapper, batched like the seed batches its generator), so the ratio shows
what the streaming pipeline itself buys.

    python -m streamswap.benchmarking pipeline|baseline VIDEO SOURCE OUT [--detect-every N]

prints one JSON object (fps, seconds, peak RSS, and for the pipeline its per-stage metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def peak_rss_mib() -> float:
    """This process's peak resident memory (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, Any]:
    """Device, versions and load: recorded with every report."""
    import av
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    return {"device": dev, "python": platform.python_version(), "torch": torch.__version__, "av": av.__version__,
            "load_avg": [round(x, 2) for x in os.getloadavg()], "date": time.strftime("%Y-%m-%d %H:%M")}


def run_pipeline(video: str, source: str, out: str, *, engine: str = "lite", detect_every: int | None = None,
                 batch_size: int = 8, device: str = "cpu", preset: str = "medium") -> dict[str, Any]:
    """The StreamSwap swap job, in this process."""
    from streamswap.api import SwapOptions, swap_video

    t0 = time.monotonic()
    report = swap_video(SwapOptions(sources=(source,), engine=engine, detect_every=detect_every,  # type: ignore[arg-type]
                                    batch_size=batch_size, device=device, preset=preset, overwrite=True), video, out)
    stages = report.graph["stages"] if report.graph else []
    busiest = max(stages[1:], key=lambda s: s["busy"]) if len(stages) > 1 else None
    return {"kind": "pipeline", "frames": report.frames, "seconds": time.monotonic() - t0, "fps": report.fps,
            "latency_p50_s": report.latency_p50_s, "latency_p95_s": report.latency_p95_s,
            "bottleneck": busiest["name"] if busiest else None,
            "stages": [{k: s[k] for k in ("name", "items_per_s", "busy", "queue_max")} for s in stages],
            "peak_rss_mib": peak_rss_mib()}


def run_baseline(video: str, source: str, out: str, *, batch_size: int = 8) -> dict[str, Any]:
    """The seed implementation's way, with the lite engine's models, in this process."""
    import av
    import cv2
    import numpy as np
    import torch

    from streamswap.engines.lite import LiteSwapper, prepare_source
    from streamswap.faces.image import read_image
    from streamswap.faces.lite import DlibDetector, LiteSettings
    from streamswap.faces.records import FaceBatch

    t0 = time.monotonic()
    with av.open(video) as c:  # 1. every frame into memory
        stream = c.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    detector = DlibDetector(LiteSettings(max_side=640))
    image = read_image(source)
    swapper = LiteSwapper(prepare_source(image, detector(image)))
    faces = [detector(torch.from_numpy(f).permute(2, 0, 1)[None]) for f in frames]  # 2. one frame at a time
    for start in range(0, len(frames), batch_size):  # 3. the swap model in batches, results kept in memory
        chunk = frames[start:start + batch_size]
        batch = FaceBatch.concat([faces[start + i] for i in range(len(chunk))])
        if len(batch):
            swapped = swapper(torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2), batch, list(range(len(batch))))
            for i, img in enumerate(swapped.permute(0, 2, 3, 1).numpy()):
                frames[start + i] = img
    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:  # 4. mp4v, then the audio re-muxed afterwards
        silent = str(Path(tmp) / "video.mp4")
        writer = cv2.VideoWriter(silent, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        for f in frames:
            writer.write(np.ascontiguousarray(f[:, :, ::-1]))
        writer.release()
        _remux_audio(silent, video, out)
    return {"kind": "baseline", "frames": len(frames), "seconds": time.monotonic() - t0,
            "fps": len(frames) / (time.monotonic() - t0), "peak_rss_mib": peak_rss_mib()}


def _remux_audio(video_only: str, audio_from: str, out: str) -> None:
    """Copy the video stream of one file and the audio of another into `out` (no re-encoding)."""
    import av

    with av.open(video_only) as v, av.open(audio_from) as a, av.open(out, "w") as o:
        vs = o.add_stream_from_template(v.streams.video[0])
        streams = {v.streams.video[0]: vs}
        if a.streams.audio:
            streams[a.streams.audio[0]] = o.add_stream_from_template(a.streams.audio[0])
        for container, stream in ((v, v.streams.video[0]), *(((a, a.streams.audio[0]),) if a.streams.audio else ())):
            for pkt in container.demux(stream):
                if pkt.dts is None:
                    continue
                pkt.stream = streams[stream]
                o.mux(pkt)


def run_isolated(kind: str, video: str, source: str, *, detect_every: int | None = None, engine: str = "lite",
                 device: str = "cpu") -> dict[str, Any]:
    """Run `kind` ("pipeline" or "baseline") in a fresh Python process; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "streamswap.benchmarking", kind, video, source, str(Path(tmp) / "out.mp4"),
               "--engine", engine, "--device", device]
        if detect_every is not None:
            cmd += ["--detect-every", str(detect_every)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            raise RuntimeError(f"{kind} benchmark failed: {lines[-1] if lines else proc.returncode}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(video: str, source: str, *, detect_every: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """StreamSwap vs the baseline on the same input and models: speed and peak-memory ratios."""
    base = run_isolated("baseline", video, source, device=device)
    ours = run_isolated("pipeline", video, source, detect_every=detect_every, device=device)
    return {"environment": environment(), "input": video, "engine": "lite", "detect_every": detect_every,
            "baseline": base, "pipeline": ours,
            "speed_ratio": ours["fps"] / base["fps"], "memory_ratio": ours["peak_rss_mib"] / base["peak_rss_mib"]}


def main() -> None:
    ap = argparse.ArgumentParser(description="one benchmark run, as JSON on stdout")
    ap.add_argument("kind", choices=("pipeline", "baseline"))
    ap.add_argument("video")
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--detect-every", type=int, default=None)
    ap.add_argument("--engine", default="lite")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.kind == "pipeline":
        result = run_pipeline(args.video, args.source, args.out, engine=args.engine, detect_every=args.detect_every,
                              device=args.device)
    else:
        if args.engine != "lite":
            raise SystemExit("the baseline runs the lite engine's models")
        result = run_baseline(args.video, args.source, args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
