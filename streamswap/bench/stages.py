"""Each stage of the swap alone, by batch size, on real frames: decode, detect (with landmarks),
align, generate, super-resolution (ghost with --sr), blend (mask + colour + paste-back), encode.

The frames are decoded once; each stage then runs over the same frames in batches of each size,
after one warm-up batch, with CUDA synchronised before the clock is read. Items are frames, so
the stages' rates compare directly (the slowest one bounds a pipeline on one device)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from streamswap.bench.report import environment, peak_gpu_mib, peak_rss_mib
from streamswap.bench.timing import sync

STAGES = ("decode", "detect", "align", "generate", "super-resolution", "blend", "encode")


@dataclass(frozen=True)
class StagesSpec:
    """What `bench stages` measures: `frames` frames of `video` (from its start), batch sizes,
    the engine (with stand_in: its `Engine.stand_in`, e.g. ghost's random-initialised networks
    of the real architectures)."""

    video: str
    source: str
    engine: str = "lite"
    device: str = "cpu"
    batches: tuple[int, ...] = (1, 2, 4, 8)
    frames: int = 16
    stand_in: bool = False
    width: float = 1.0
    sr: bool = False
    preset: str = "veryfast"  # x264, as `swap` encodes by default


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def _decode(spec: StagesSpec, device: torch.device) -> tuple[list[Any], float, Any]:
    """The first `frames` Frame records (images on `device`), decode seconds, stream info."""
    from streamswap.video.sources import SourceOptions, open_source

    src = open_source(spec.video, SourceOptions(device=str(device), max_frames=spec.frames))
    try:
        t0 = time.perf_counter()
        records = list(src)
        sync(device)
        seconds = time.perf_counter() - t0
        info = src.info
    finally:
        src.close()
    return records, seconds, info


def _engine(spec: StagesSpec, device: torch.device, workdir: Path) -> tuple[Any, Any]:
    """(analyse(frames) -> FaceBatch on every frame, the swapper with its phases)."""
    from streamswap.bench.engines import bench_options, bench_session, phased_swapper

    options = bench_options(
        spec.engine, spec.source, stand_in=spec.stand_in, device=str(device), sr=spec.sr, detect_every=1
    )
    session = bench_session(options, device, workdir, stand_in=spec.stand_in, width=spec.width)
    analyser = session.analyser
    return (lambda x: analyser(x, False)), phased_swapper(session, spec.engine)


def _by_batch(frames: torch.Tensor, faces: Sequence[Any], b: int) -> list[tuple[torch.Tensor, Any]]:
    from streamswap.faces.records import FaceBatch

    return [(frames[i : i + b], FaceBatch.concat(list(faces[i : i + b]))) for i in range(0, len(frames), b)]


def bench_stages(spec: StagesSpec) -> dict[str, Any]:
    """Per stage and batch size: frames/s and ms per frame; the slowest stage at the largest batch."""
    from streamswap.devices import resolve_device
    from streamswap.video.nv import BackendChoice, choose_encoder, probe_gpu
    from streamswap.video.sinks import EncodeSettings, FileSink

    device = resolve_device(spec.device)
    rows: list[dict[str, Any]] = []

    def row(stage: str, batch: int | None, items: int, seconds: float, faces: int | None = None) -> None:
        rows.append(
            {
                "stage": stage,
                "batch": batch,
                "frames": items,
                "faces": faces,
                "seconds": seconds,
                "items_per_s": items / seconds if seconds > 0 else float("inf"),
                "ms_per_item": 1000 * seconds / items if items else None,
            }
        )

    records, decode_s, info = _decode(spec, device)
    row("decode", None, len(records), decode_s)
    frames = torch.stack([f.image for f in records]).permute(0, 3, 1, 2).contiguous()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        analyse, swapper = _engine(spec, device, Path(tmp))
        analyse(frames[:1])  # warm-up (first calls allocate, convert or autotune)
        faces = [analyse(frames[i : i + 1]) for i in range(len(frames))]
        n_faces = sum(len(f) for f in faces)
        for b in spec.batches:
            chunks = _by_batch(frames, faces, b)
            row("detect", b, len(frames), _timed(lambda: [analyse(x) for x, _ in chunks], device), n_faces)  # noqa: B023 - _timed calls it at once, in this iteration
            chunks = [(x, f) for x, f in chunks if len(f)]
            if not chunks:
                continue
            aligned = [swapper.align(x, f) for x, f in chunks[:1]]  # warm-up of the phases
            swapper.blend(chunks[0][0], aligned[0], swapper.refine(swapper.generate(aligned[0])), _keys(aligned[0]))
            n = sum(len(x) for x, _ in chunks)
            aligned = []
            row(
                "align",
                b,
                n,
                _timed(lambda: aligned.extend(swapper.align(x, f) for x, f in chunks), device),
                n_faces,
            )
            outs: list[Any] = []
            gen = swapper.generate
            row("generate", b, n, _timed(lambda: outs.extend(gen(c) for c in aligned), device), n_faces)
            if swapper.refine_stage is not None:  # e.g. ghost's super-resolution
                refined: list[Any] = []
                row(
                    swapper.refine_stage,
                    b,
                    n,
                    _timed(lambda: refined.extend(swapper.refine(o) for o in outs), device),
                    n_faces,
                )
                outs = refined
            row(
                "blend",
                b,
                n,
                _timed(
                    lambda: [
                        swapper.blend(x, c, o, _keys(c)) for (x, _), c, o in zip(chunks, aligned, outs, strict=True)
                    ],
                    device,
                ),
                n_faces,
            )
        with tempfile.TemporaryDirectory() as out_dir:
            gpu = probe_gpu(device) if device.type == "cuda" else None
            sink = FileSink(
                str(Path(out_dir) / "encode.mp4"),
                info,
                EncodeSettings(preset=spec.preset),
                choose_encoder("auto", device=device, gpu=gpu) if gpu else BackendChoice("x264", "CPU"),
                overwrite=True,
            )
            t0 = time.perf_counter()
            for record in records:
                sink.write(record)
            sink.close()
            row("encode", None, len(records), time.perf_counter() - t0)
    widest = max(spec.batches)
    at_widest = [r for r in rows if r["batch"] in (None, widest)]
    slowest = min(at_widest, key=lambda r: r["items_per_s"])
    return {
        "environment": environment(),
        "settings": asdict(spec),
        "faces": n_faces,
        "stages": rows,
        "slowest_stage": slowest["stage"],
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": peak_gpu_mib(str(device)),
    }


def _keys(crops: Any) -> list[int]:
    return list(range(len(crops.frame_index)))
