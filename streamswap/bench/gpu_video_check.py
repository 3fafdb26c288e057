"""GPU video check: NVDEC decode vs PyAV, the NVENC probe and the CUDA transcode path, as JSON.

    python benchmarks/gpu_check_video.py                       # nggyup.mp4 from ../shared/data
    python benchmarks/gpu_check_video.py --video clip.mp4 --out $OUT/gpu_check_video.json

On a GPU machine with PyNvVideoCodec:
- decodes the video with NVDEC into CUDA tensors (DLPack, NV12 -> RGB on the GPU) and compares
  every frame with PyAV's decode: same count, same pts, mean |difference| <= 2 grey levels;
- probes NVENC (H100/H200/A100 have none: the file sink must fall back to x264 and say why);
  where NVENC exists, encodes the clip with it and checks the frame count and pixels;
- transcodes through the stage graph with frames on CUDA and records GPU memory.
Without a GPU (or without PyNvVideoCodec) the GPU parts are reported as skipped with the reason
and the CPU parts still run. Exit status 1 if any check that ran failed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamswap.bench.report import SHARED, save_json
from streamswap.stream import Graph, Sink, Source
from streamswap.stream.metrics import cuda_memory_probe
from streamswap.video.nv import choose_decoder, choose_encoder, probe_gpu
from streamswap.video.sinks import EncodeSettings, FileSink
from streamswap.video.sources import SourceOptions, open_source

MAX_MEAN_DIFF = 2.0  # grey levels (0-255), per frame, NVDEC against PyAV


def decode_fps(video: Path, options: SourceOptions) -> tuple[int, float]:
    """Decode the whole video with `options`: (frames, frames/s)."""
    src = open_source(video, options)
    t0 = time.perf_counter()
    n = sum(1 for _ in src)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    src.close()
    return n, n / (time.perf_counter() - t0)


def check_nvdec(video: Path) -> dict[str, Any]:
    """NVDEC frames against PyAV's, decoded in lockstep (memory stays flat)."""
    frames, fps = decode_fps(video, SourceOptions(decoder="nvdec", device="cuda"))
    nv = open_source(video, SourceOptions(decoder="nvdec", device="cuda"))
    ref = open_source(video, SourceOptions(decoder="pyav"))
    diffs: list[float] = []
    pts_equal, on_cuda, count_nv, count_ref = True, True, 0, 0
    for a, b in zip_longest(nv, ref):
        count_nv += a is not None
        count_ref += b is not None
        if a is None or b is None:
            continue
        on_cuda &= a.image.is_cuda
        pts_equal &= a.pts == b.pts
        diffs.append(float((a.image.float() - b.image.to(a.image.device).float()).abs().mean()))
    nv.close()
    ref.close()
    ok = count_nv == count_ref and pts_equal and on_cuda and bool(diffs) and max(diffs) <= MAX_MEAN_DIFF
    return {
        "ok": ok,
        "backend": nv.choice.backend,
        "reason": nv.choice.reason,
        "frames": count_nv,
        "reference_frames": count_ref,
        "pts_equal": pts_equal,
        "frames_on_cuda": on_cuda,
        "mean_abs_diff_max": max(diffs) if diffs else None,
        "mean_abs_diff_mean": float(np.mean(diffs)) if diffs else None,
        "fps_decode_only": round(fps, 1),
        "frames_timed": frames,
    }


def transcode(video: Path, out: Path, device: str, encoder: str) -> dict[str, Any]:
    """Transcode through the stage graph with frames on `device` and the `encoder` choice; ok when
    the output holds every frame. Records the backends chosen, frames/s and GPU memory (MB)."""
    dev = torch.device(device)
    gpu = probe_gpu(dev if dev.type == "cuda" else None)
    src = open_source(video, SourceOptions(device=device), gpu=gpu)
    enc = choose_encoder(encoder, device=dev, gpu=gpu)
    sink = FileSink(out, src.info, EncodeSettings(preset="veryfast"), enc, audio_from=str(video), overwrite=True)
    stats = Graph(
        Source("decode", src, src.close), [], Sink("encode", sink.write, sink.close), gpu_memory=cuda_memory_probe(dev)
    ).run()
    import av

    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    return {
        "ok": frames == stats.frames_out == (src.info.frames or frames),
        "decoder": str(src.choice),
        "encoder": str(enc),
        "frames_out": frames,
        "fps": round(stats.frames_per_s, 1),
        "gpu_memory_mb": stats.gpu_memory_mb,
        "gpu_peak_mb": stats.gpu_peak_mb,
    }


class _Checks:
    """The report being built, and whether any check that ran failed."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        self.failed = False

    def section(self, name: str, fn: Callable[..., dict[str, Any]], *a: Any) -> dict[str, Any]:
        """report[name] = fn(*a); an exception is recorded as a failed section and the others go on."""
        try:
            self.report[name] = fn(*a)
            self.failed |= self.report[name].get("ok") is False
        except Exception as exc:  # noqa: BLE001 - record and go on with the other checks
            self.report[name] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            }
            self.failed = True
        return self.report[name]


def run_checks(video: Path, checks: _Checks) -> None:
    """PyAV decode, the GPU probe and backend choices, then NVDEC, the CUDA transcode (with the
    x264 fallback where there is no NVENC) and the CPU transcode, each where it can run."""
    report = checks.report
    n, fps = decode_fps(video, SourceOptions(decoder="pyav"))
    report["pyav"] = {"frames": n, "fps_decode_only": round(fps, 1)}
    gpu = probe_gpu()
    report["gpu"] = {
        "cuda": gpu.cuda,
        "name": gpu.gpu_name,
        "pynvvideocodec": gpu.nvcodec,
        "pynvvideocodec_why": gpu.nvcodec_why,
        "nvenc": gpu.nvenc,
        "nvenc_why": gpu.nvenc_why,
        "capability": gpu.capability,
    }
    dev = torch.device("cuda" if gpu.cuda else "cpu")
    probed = open_source(video, SourceOptions(decoder="pyav"))
    facts = probed.info.facts
    probed.close()
    report["decoder_choice"] = str(choose_decoder("auto", kind="file", facts=facts, device=dev, gpu=gpu))
    report["encoder_choice"] = str(choose_encoder("auto", device=dev, gpu=gpu))
    with tempfile.TemporaryDirectory() as tmp:
        if gpu.cuda and gpu.nvcodec:
            checks.section("nvdec", check_nvdec, video)
        else:
            report["nvdec"] = {"skipped": gpu.nvcodec_why}
        if gpu.cuda:
            checks.section("transcode_cuda_auto", transcode, video, Path(tmp) / "auto.mp4", "cuda", "auto")
            if not gpu.nvenc:  # the documented fallback: x264, with the reason
                fallback = report["transcode_cuda_auto"]
                fallback["fallback_ok"] = str(fallback.get("encoder", "")).startswith("x264")
                checks.failed |= not fallback["fallback_ok"]
        else:
            report["transcode_cuda_auto"] = {"skipped": "no CUDA device"}
        checks.section("transcode_cpu", transcode, video, Path(tmp) / "cpu.mp4", "cpu", "x264")


def main(argv: list[str] | None = None) -> int:
    """`python benchmarks/gpu_check_video.py [--video V] [--out J]`: prints the JSON report (and
    writes it to --out, by default $OUT/gpu_check_video.json where $OUT is set); returns the exit
    status: 1 if any check that ran failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=SHARED / "data" / "videos" / "nggyup.mp4")
    default_out = Path(os.environ["OUT"]) / "gpu_check_video.json" if os.environ.get("OUT") else None
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args(argv)
    checks = _Checks({"video": str(args.video), "torch": torch.__version__, "cuda": torch.cuda.is_available()})
    if not args.video.exists():
        checks.report["error"] = f"{args.video} not found (pass --video)"
        checks.failed = True
    else:
        run_checks(args.video, checks)
    checks.report["ok"] = not checks.failed
    if args.out:
        save_json(args.out, checks.report, indent=2, default=str)
    print(json.dumps(checks.report, indent=2, default=str))
    return 1 if checks.failed else 0
