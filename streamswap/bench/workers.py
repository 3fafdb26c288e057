"""`bench workers`: frames/s of a cluster job with 1, 2, ... workers (and chunk lengths), beside
the single-process job, on this machine's local Ray cluster."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def measure_workers(
    input: str,
    source: str,
    *,
    workers: list[int],
    chunk_seconds: list[float],
    engine: str,
    device: str,
    preset: str,
    single: bool,
) -> dict[str, Any]:
    """Run the swap job once per (workers, chunk length) on one local Ray cluster (started once,
    its start not counted; each run's time counts its actors' start and model loading, the
    source identity, the chunks and the stitch), and once in a single process."""
    import ray

    from streamswap.api import SwapOptions, swap_video
    from streamswap.bench.report import environment
    from streamswap.cluster.run import ClusterSettings, FileJob, run_jobs, start_local_cluster

    options = SwapOptions(sources=(source,), engine=engine, device=device, preset=preset)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamswap-bench-workers-") as tmp:
        if single:
            t0 = time.monotonic()
            rep = swap_video(options, input, str(Path(tmp) / "single.mp4"))
            runs.append(
                {
                    "mode": "single process",
                    "workers": 1,
                    "chunk_s": None,
                    "chunks": 1,
                    "frames": rep.frames,
                    "seconds": time.monotonic() - t0,
                    "fps": rep.frames / (time.monotonic() - t0),
                    "processed_per_written": 1.0,
                }
            )
        started = not ray.is_initialized()
        if started:  # on 127.0.0.1 only, RAY_ADDRESS ignored, as a cluster job's own
            start_local_cluster()
        try:
            resources = ray.cluster_resources()
            for chunk_s in chunk_seconds:
                for n in workers:
                    out = Path(tmp) / f"w{n}-c{chunk_s:g}.mp4"
                    report = run_jobs(options, [FileJob(input, str(out))], ClusterSettings(workers=n, chunk_s=chunk_s))
                    written = sum(w.frames for w in report.worker_stats)
                    processed = sum(w.processed for w in report.worker_stats)
                    runs.append(
                        {
                            "mode": "cluster",
                            "workers": n,
                            "chunk_s": chunk_s,
                            "chunks": report.chunks_total,
                            "frames": report.frames,
                            "seconds": report.elapsed_s,
                            "fps": report.fps,
                            "processed_per_written": processed / written if written else None,
                            "stitch_s": report.outputs[0].stitch_s,
                            "per_worker_fps": [round(w.fps, 2) for w in report.worker_stats],
                        }
                    )
                    out.unlink(missing_ok=True)
        finally:
            if started:
                ray.shutdown()
    return {
        "environment": environment(),
        "input": input,
        "engine": engine,
        "device": device,
        "preset": preset,
        "cluster": {"CPU": resources.get("CPU"), "GPU": resources.get("GPU", 0)},
        "runs": runs,
    }
