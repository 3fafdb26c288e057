"""Throughput and peak memory against input length: the input is looped by packet copy (no
re-encode) to each length, and the pipeline (optionally the baseline, on the shorter lengths)
runs on each in a fresh process. Flat memory and constant frames/s are what streaming promises."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamswap.bench.jobs import JobSpec, run_isolated
from streamswap.bench.report import environment
from streamswap.errors import InputError


@dataclass(frozen=True)
class ScalingSpec:
    """lengths_s: input lengths to measure; baseline_up_to_s: also run the baseline on lengths up
    to this (it holds every frame: keep it short); job: the pipeline settings (video, source, engine...)."""

    job: JobSpec
    lengths_s: tuple[float, ...] = (10.0, 60.0, 600.0)
    baseline_up_to_s: float = 0.0


def loop_video(video: str, seconds: float, out: str) -> int:
    """Write `out`: `video` repeated (packets copied, timestamps shifted) up to `seconds`. The
    last loop is cut in decode order (packets whose dts reaches `seconds` are dropped), so every
    kept frame keeps its references. First video and audio streams; returns video packets written."""
    import av

    with av.open(video) as probe:
        if not probe.streams.video:
            raise InputError(f"{video} has no video stream")
        duration = float(probe.duration or 0) / av.time_base
        if duration <= 0:
            raise InputError(f"{video}: unknown duration, cannot loop it")
        templates = probe.streams.video[:1] + probe.streams.audio[:1]
        written = 0
        dst = av.open(out, "w")
        mapped = {s.index: dst.add_stream_from_template(s) for s in templates}
    with dst:
        offset = 0.0
        while offset < seconds:
            with av.open(video) as src:
                for pkt in src.demux(src.streams.video[:1] + src.streams.audio[:1]):
                    if pkt.dts is None or pkt.pts is None:
                        continue
                    if offset + float(pkt.dts * pkt.time_base) >= seconds:
                        continue
                    shift = round(offset / pkt.time_base)
                    pkt.pts += shift
                    pkt.dts += shift
                    is_video = pkt.stream.type == "video"
                    pkt.stream = mapped[pkt.stream.index]
                    dst.mux(pkt)
                    written += is_video
            offset += duration
    return written


def bench_scaling(spec: ScalingSpec) -> dict[str, Any]:
    """Per length: the pipeline's frames/s, peak RSS and anonymous memory (and the baseline's)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in spec.lengths_s:
            looped = str(Path(tmp) / f"input_{seconds:g}s.mp4")
            loop_video(spec.job.video, seconds, looped)
            kinds = ["pipeline"] + (["baseline"] if seconds <= spec.baseline_up_to_s else [])
            for kind in kinds:
                run = run_isolated(dataclasses.replace(spec.job, kind=kind, video=looped, out=""))
                rows.append(
                    {
                        "length_s": seconds,
                        "kind": kind,
                        "frames": run["frames"],
                        "fps": run["fps"],
                        "peak_rss_mib": run["peak_rss_mib"],
                        "peak_anon_mib": run["peak_anon_mib"],
                        "peak_gpu_mib": run.get("peak_gpu_mib"),
                        "seconds": run["seconds"],
                    }
                )
            Path(looped).unlink()
    ours = [r for r in rows if r["kind"] == "pipeline"]
    fps = [r["fps"] for r in ours]
    mem = [r["peak_rss_mib"] for r in ours]
    return {
        "environment": environment(),
        "settings": {**asdict(spec), "job": asdict(spec.job)},
        "runs": rows,
        # flatness: the spread of the pipeline's figures across lengths, relative to their mean
        "fps_spread": (max(fps) - min(fps)) / (sum(fps) / len(fps)),
        "memory_spread": (max(mem) - min(mem)) / (sum(mem) / len(mem)),
    }
