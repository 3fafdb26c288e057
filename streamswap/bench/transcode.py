"""Transcode throughput: the stage graph (decode thread -> encode thread, bounded queue, audio copy)
against a bare single-threaded PyAV loop doing the same work, in one run, as a ratio.

    python benchmarks/bench_transcode.py                          # the shared videos
    python benchmarks/bench_transcode.py --preset veryfast --repeat 3 --out /tmp/transcode.json

Both paths decode with FFmpeg, convert to RGB (what every pipeline stage sees), convert back to
yuv420p and encode with libx264 at the same CRF/preset/threads, and copy the audio. A third loop,
`bare_yuv`, skips the RGB round trip: the floor FFmpeg alone sets. Figures: frames/s (best of
`--repeat`), and graph/bare ratios; > 1 means the graph's overlap of decode and encode wins
over its queueing overhead. Writes JSON (stdout, and --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av

from streamswap.bench.report import SHARED, save_json
from streamswap.stream import Graph, Sink, Source
from streamswap.video.nv import BackendChoice
from streamswap.video.sinks import EncodeSettings, FileSink
from streamswap.video.sources import SourceOptions, open_source

VIDEOS = ("nggyup.mp4", "dirtydancing.mp4", "dance.mp4")


def run_graph(path: Path, out: Path, settings: EncodeSettings) -> tuple[int, float, dict]:
    """Transcode through the stage graph: (frames, wall seconds, per-stage busy and items/s)."""
    t0 = time.perf_counter()
    src = open_source(path, SourceOptions(threads=settings.threads))
    sink = FileSink(out, src.info, settings, BackendChoice("x264", "bench"), audio_from=str(path), overwrite=True)
    stats = Graph(Source("decode", src, src.close), [], Sink("encode", sink.write, sink.close)).run()
    wall = time.perf_counter() - t0
    stages = {s.name: {"busy": round(s.busy, 3), "items_per_s": round(s.items_per_s, 1)} for s in stats.stages}
    return stats.frames_out, wall, stages


def run_bare(path: Path, out: Path, settings: EncodeSettings, rgb: bool) -> tuple[int, float]:
    """One thread: demux, decode, (RGB round trip), encode, mux; audio packets copied as they
    come. Returns (frames, wall seconds)."""
    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as inp, av.open(str(out), "w") as outc:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vin.codec_context.thread_count = settings.threads
        vout = outc.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        if vin.time_base is None:  # FFmpeg sets it on every demuxed stream; None would be a broken input
            raise ValueError(f"{path}: the video stream has no time base")
        vout.time_base = vout.codec_context.time_base = vin.time_base
        vout.codec_context.options = {"crf": str(settings.crf), "preset": settings.preset}
        vout.codec_context.thread_count = settings.threads
        audio = {s.index: outc.add_stream_from_template(s) for s in inp.streams.audio}
        for pkt in inp.demux(vin, *inp.streams.audio):
            if pkt.stream.type == "audio":
                if pkt.dts is not None:
                    pkt.stream = audio[pkt.stream_index]
                    outc.mux(pkt)
                continue
            for frame in pkt.decode():
                if not isinstance(frame, av.VideoFrame):  # only vin's packets get here: always video frames
                    continue
                if rgb:
                    arr = frame.to_ndarray(format="rgb24")
                    new = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
                    new.pts, new.time_base = frame.pts, frame.time_base
                    frame = new
                else:
                    frame.pict_type = av.video.frame.PictureType.NONE
                for p in vout.encode(frame):
                    outc.mux(p)
                n += 1
        for p in vout.encode(None):
            outc.mux(p)
    return n, time.perf_counter() - t0


def io_floor(video: Path, settings: EncodeSettings) -> dict[str, float | int]:
    """The I/O floor of a job on `video`: what decoding, the RGB round trip every stage sees, x264
    at the job's CRF/preset and the audio copy cost alone, in one thread (`run_bare`).
    Returns {"frames", "fps"}."""
    with tempfile.TemporaryDirectory() as tmp:
        n, wall = run_bare(video, Path(tmp) / "floor.mp4", settings, rgb=True)
    return {"frames": n, "fps": round(n / wall, 2) if wall > 0 else 0.0}


def measure_video(video: Path, out: Path, settings: EncodeSettings, repeat: int) -> dict:
    """frames/s of the graph, `bare` and `bare_yuv` on one video (best of `repeat`, interleaved)
    and the graph's ratios to the bare loops; the graph's stages from its best run."""
    best: dict[str, float] = {}
    frames: dict[str, int] = {}
    stages: dict = {}
    for _ in range(repeat):  # interleaved, so machine noise hits every path alike
        n, wall, stages_run = run_graph(video, out, settings)
        if wall < best.get("graph", float("inf")):
            best["graph"], stages = wall, stages_run
        frames["graph"] = n
        for name, rgb in (("bare", True), ("bare_yuv", False)):
            n, wall = run_bare(video, out, settings, rgb)
            best[name] = min(best.get(name, float("inf")), wall)
            frames[name] = n
    fps = {k: frames[k] / v for k, v in best.items()}
    print(
        f"{video.name}: graph {fps['graph']:.1f} fps, bare {fps['bare']:.1f} fps "
        f"(ratio {fps['graph'] / fps['bare']:.2f}), bare without RGB {fps['bare_yuv']:.1f} fps",
        file=sys.stderr,
    )
    return {
        "video": video.name,
        "frames": frames["graph"],
        "fps": {k: round(v, 1) for k, v in fps.items()},
        "graph_over_bare": round(fps["graph"] / fps["bare"], 3),
        "graph_over_bare_yuv": round(fps["graph"] / fps["bare_yuv"], 3),
        "graph_stages": stages,
    }


def main(argv: list[str] | None = None) -> dict:
    """`python benchmarks/bench_transcode.py [flags]`: prints the JSON report (and writes it to
    --out); returns it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", nargs="*", type=Path, help="videos to transcode (default: the shared ones)")
    ap.add_argument("--preset", default="ultrafast")
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="runs per path; the best counts")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    videos = args.videos or [SHARED / "data" / "videos" / v for v in VIDEOS]
    settings = EncodeSettings(crf=args.crf, preset=args.preset, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = [measure_video(video, Path(tmp) / "out.mp4", settings, args.repeat) for video in videos]
    report = {
        "benchmark": "transcode",
        "device": "cpu",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "settings": {"preset": args.preset, "crf": args.crf, "threads": args.threads, "repeat": args.repeat},
        "results": results,
    }
    if args.out:
        save_json(args.out, report, indent=2)
    print(json.dumps(report, indent=2))
    return report
