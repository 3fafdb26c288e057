"""Whole jobs, each in a fresh process so its peak memory is its own: the StreamSwap pipeline,
and the seed implementation's way of running the same models (the baseline).

The baseline does what the seed (GHOST's inference script) does: decode every frame into memory
first, detect one frame at a time, run the generator in batches (crops and generated faces kept
in memory, as uint8 images like the seed's), then for each frame compute the mask landmarks and
blend, one frame at a time,
writing with OpenCV's `mp4v` writer, and re-mux the audio afterwards. It uses the same models,
precision and device as the pipeline; it detects on every frame (the seed has no tracker).

    python -m streamswap.bench.jobs '{"kind": "pipeline"|"baseline", "video": ..., "source": ..., "out": ...}'

prints one JSON object (fps, seconds, CPU seconds, peak RSS / GPU memory, and for the pipeline
its per-stage metrics). `run_isolated` runs it in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamswap.bench.report import MemorySampler, cpu_seconds, environment, peak_gpu_mib, peak_rss_mib
from streamswap.errors import PipelineError


@dataclass(frozen=True)
class JobSpec:
    """One measured job. engine: an engine's name; stand_in: its stand-in (`Engine.stand_in`,
    e.g. ghost's random-initialised networks of the real architectures) at `width`, no weights
    needed; batch_size None: the job's default."""

    kind: str  # "pipeline" | "baseline"
    video: str
    source: str
    out: str
    engine: str = "lite"
    device: str = "cpu"
    batch_size: int | None = None
    detect_every: int | None = None
    preset: str | None = None
    stand_in: bool = False
    width: float = 1.0
    sr: bool = False
    resume: bool | None = None  # the pipeline's --resume/--no-resume (None: its default)
    host_syncs: bool = False  # pipeline: then run it again counting host syncs (`host_syncs` in the report)


def run_pipeline(spec: JobSpec) -> dict[str, Any]:
    """The StreamSwap swap job, in this process."""
    from streamswap.api import swap_video
    from streamswap.bench.engines import bench_models, bench_options
    from streamswap.devices import resolve_device

    extra = {"preset": spec.preset} if spec.preset else {}
    with tempfile.TemporaryDirectory() as tmp:
        options = bench_options(
            spec.engine,
            spec.source,
            stand_in=spec.stand_in,
            detect_every=spec.detect_every,
            batch_size=spec.batch_size,
            device=spec.device,
            overwrite=True,
            sr=spec.sr,
            resume=spec.resume,
            **extra,
        )
        # the stand-in is made here; real models are loaded by the job itself (its load time counts)
        models = (
            bench_models(options, resolve_device(spec.device), Path(tmp), stand_in=True, width=spec.width)
            if spec.stand_in
            else None
        )
        cpu0, t0 = cpu_seconds(), time.monotonic()
        report = swap_video(options, spec.video, spec.out, models=models)
        seconds = time.monotonic() - t0
        cpu_s = cpu_seconds() - cpu0
        syncs = _host_syncs(options, spec, report.frames, Path(tmp)) if spec.host_syncs else None
    stages = report.graph["stages"] if report.graph else []
    busiest = max(stages[1:], key=lambda s: s["busy"]) if len(stages) > 1 else None
    return {
        "kind": "pipeline",
        "frames": report.frames,
        "faces": report.faces_swapped,
        "seconds": seconds,
        "fps": report.frames / seconds if seconds > 0 else 0.0,
        "cpu_s": cpu_s,
        "latency_p50_s": report.latency_p50_s,
        "latency_p95_s": report.latency_p95_s,
        "bottleneck": busiest["name"] if busiest else None,
        "stages": [
            {
                **{k: s[k] for k in ("name", "items_per_s", "busy", "queue_max")},
                **(
                    {"host_syncs_per_batch": syncs["stages"][s["name"]]["syncs_per_batch"]}
                    if syncs and s["name"] in syncs["stages"]
                    else {}
                ),
            }
            for s in stages
        ],
        "host_syncs": syncs,
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": peak_gpu_mib(spec.device),
    }


def _host_syncs(options: Any, spec: JobSpec, frames: int, tmp: Path) -> dict[str, Any]:
    """The same job again under a `HostSyncAudit`, with the face models on the torch runtime (as
    CUDA runs them, so the CPU walks the GPU's code): per processing stage the host syncs per
    batch (per call of the stage: each call is one batch of at most the job's batch size), by
    kind and by call site."""
    from streamswap.api import swap_video
    from streamswap.bench.engines import bench_models
    from streamswap.devices import resolve_device
    from streamswap.job import batch_size_of
    from streamswap.stream.host_syncs import HostSyncAudit

    device = resolve_device(spec.device)
    options = dataclasses.replace(options, face_runtime="torch")
    models = bench_models(options, device, tmp / "audit", stand_in=True, width=spec.width) if spec.stand_in else None
    with HostSyncAudit() as audit:
        swap_video(options, spec.video, str(tmp / "audited.mp4"), models=models, host_syncs=audit)
    stages = audit.report()
    return {
        "batch": batch_size_of(options, device),
        "frames": frames,
        "face_runtime": "torch",
        "total_per_batch": sum(s["syncs_per_batch"] for s in stages.values()),
        "stages": stages,
    }


def _of_frame(crops: Any, i: int) -> Any:
    """The faces of frame i of an engine's crop record, re-indexed to a one-frame batch."""
    sel = crops.frame_index == i
    fields = {f.name: getattr(crops, f.name)[sel] for f in dataclasses.fields(crops)}
    fields["frame_index"] = fields["frame_index"] * 0
    return type(crops)(**fields)


def _keep(swapper: Any, crops: Any, generated: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """What the seed keeps of a frame until blending: uint8 crops and generated faces (the
    engine says how its generated tensors become images: `Swapper.keep`)."""
    import torch

    target = crops.target.round().clamp(0, 255).to("cpu", torch.uint8)
    return dataclasses.replace(crops, target=target), swapper.keep(generated)


def _restore(swapper: Any, kept: tuple[Any, tuple[Any, ...]], device: Any) -> tuple[Any, tuple[Any, ...]]:
    """Inverse of `_keep`: float tensors on `device`, as the engine's blend takes them."""
    crops, generated = kept
    return dataclasses.replace(crops, target=crops.target.to(device).float()), swapper.restore(generated, device)


def run_baseline(spec: JobSpec) -> dict[str, Any]:
    """The seed implementation's way with the same models, in this process."""
    import av
    import cv2
    import numpy as np
    import torch

    from streamswap.bench.engines import bench_options, bench_session, phased_swapper
    from streamswap.devices import resolve_device
    from streamswap.faces.records import FaceBatch

    device = resolve_device(spec.device)
    batch = spec.batch_size or (8 if device.type == "cuda" else 2)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    with av.open(spec.video) as c:  # 1. every frame into memory
        stream = c.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    with tempfile.TemporaryDirectory() as tmp:
        # the seed detects on every frame (it has no tracker)
        options = bench_options(
            spec.engine, spec.source, stand_in=spec.stand_in, device=spec.device, sr=spec.sr, detect_every=1
        )
        session = bench_session(options, device, Path(tmp), stand_in=spec.stand_in, width=spec.width)
        detect, swapper = session.analyser, phased_swapper(session, spec.engine)

        def as_batch(chunk: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(chunk)).to(device).permute(0, 3, 1, 2)

        faces = [detect(as_batch([f]), False) for f in frames]  # 2. detection one frame at a time
        # 3. crops and generated faces of every frame, the generator in batches
        generated: list[tuple[Any, tuple[Any, ...]] | None] = []
        with torch.inference_mode():
            for start in range(0, len(frames), batch):
                chunk = frames[start : start + batch]
                found = FaceBatch.concat(faces[start : start + len(chunk)])
                if len(found) == 0:
                    generated.extend([None] * len(chunk))
                    continue
                x = as_batch(chunk)
                crops = swapper.align(x, found)
                out = swapper.refine(swapper.generate(crops))
                for i in range(len(chunk)):
                    sel = crops.frame_index == i
                    generated.append(
                        _keep(swapper, _of_frame(crops, i), tuple(o[sel] for o in out)) if bool(sel.any()) else None
                    )
            h, w = frames[0].shape[:2]
            silent = str(Path(tmp) / "video.mp4")
            writer = cv2.VideoWriter(silent, cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
            for frame, done in zip(frames, generated, strict=True):  # 4. mask landmarks and blend, one frame at a time
                if done is not None:
                    crops, out = _restore(swapper, done, device)
                    keys = list(range(len(crops.frame_index)))
                    frame = swapper.blend(as_batch([frame]), crops, out, keys)[0].permute(1, 2, 0).cpu().numpy()
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
            writer.release()
            remux_audio(silent, spec.video, spec.out)  # 5. the audio, afterwards
    seconds = time.monotonic() - t0
    return {
        "kind": "baseline",
        "frames": len(frames),
        "faces": sum(len(f) for f in faces),
        "seconds": seconds,
        "fps": len(frames) / seconds,
        "cpu_s": cpu_seconds() - cpu0,
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": peak_gpu_mib(spec.device),
    }


def remux_audio(video_only: str, audio_from: str, out: str) -> None:
    """Copy the video stream of one file and the audio of another into `out` (no re-encoding)."""
    import av

    with av.open(video_only) as v, av.open(audio_from) as a, av.open(out, "w") as o:
        pairs = [(v, v.streams.video[0])] + ([(a, a.streams.audio[0])] if a.streams.audio else [])
        streams = {s: o.add_stream_from_template(s) for _, s in pairs}
        for container, stream in pairs:
            for pkt in container.demux(stream):
                if pkt.dts is None:
                    continue
                pkt.stream = streams[stream]
                o.mux(pkt)


def run_isolated(spec: JobSpec) -> dict[str, Any]:
    """Run `spec` in a fresh Python process (its own peak memory); its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        if not spec.out:
            spec = dataclasses.replace(spec, out=str(Path(tmp) / "out.mp4"))
        proc = subprocess.run(
            [sys.executable, "-m", "streamswap.bench.jobs", json.dumps(asdict(spec))], capture_output=True, text=True
        )
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            raise PipelineError(f"{spec.kind} benchmark failed: {lines[-1] if lines else proc.returncode}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def run_here(spec: JobSpec) -> dict[str, Any]:
    """Run `spec` in this process (peak memories are then the process's, not the job's)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = dataclasses.replace(spec, out=spec.out or str(Path(tmp) / "out.mp4"))
        with MemorySampler() as memory:
            result = run_pipeline(spec) if spec.kind == "pipeline" else run_baseline(spec)
    result.update(peak_anon_mib=memory.peak_anon_mib, memory_timeline=memory.summary())
    return result


def compare(spec: JobSpec, *, isolated: bool = True) -> dict[str, Any]:
    """StreamSwap vs the baseline on the same input, models and device: speed and peak-memory
    ratios (> 1 speed: StreamSwap faster; < 1 memory: StreamSwap smaller). isolated: each job in
    a fresh process (else in this one: a dry run, whose memory ratios mean nothing)."""
    run = run_isolated if isolated else run_here
    base = run(dataclasses.replace(spec, kind="baseline", out=""))
    ours = run(dataclasses.replace(spec, kind="pipeline", out=""))
    ratios = {
        "speed_ratio": ours["fps"] / base["fps"],
        "memory_ratio": ours["peak_rss_mib"] / base["peak_rss_mib"],
        "anon_memory_ratio": ours["peak_anon_mib"] / base["peak_anon_mib"],
        "cpu_ratio": ours["cpu_s"] / base["cpu_s"] if base["cpu_s"] else None,
    }
    if ours.get("peak_gpu_mib") and base.get("peak_gpu_mib"):
        ratios["gpu_memory_ratio"] = ours["peak_gpu_mib"] / base["peak_gpu_mib"]
    return {"environment": environment(), "settings": asdict(spec), "baseline": base, "pipeline": ours, **ratios}


def main() -> None:
    print(json.dumps(run_here(JobSpec(**json.loads(sys.argv[1])))))


if __name__ == "__main__":
    main()
