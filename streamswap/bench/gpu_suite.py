"""The GPU device suite: one script, one JSON per run, for the day a GPU machine is lent.

    python benchmarks/gpu_suite.py --part video --out $OUT      # run 1: NVDEC and formats
    python benchmarks/gpu_suite.py --part ghost --out $OUT      # run 2: the ghost path, the generator
    python benchmarks/gpu_suite.py --device cpu --quick --out /tmp/s   # the dry run (the tests run it)

Parts (each section's dict says "ok", or "skipped" with why; JSON in --out/gpu_suite_<part>.json):
- preflight: nvidia-smi's GPUs and driver, torch and its CUDA, the compute capability, the NVDEC
  and NVENC driver libraries, PyNvVideoCodec;
- video: NVDEC against PyAV on a clip (frame count, pts, mean |difference| <= 2 levels), then a
  format matrix of 1-second clips made here (odd size, 4:4:4, 10-bit HEVC, H.264 High10, rotated,
  pts-less raw .h264): the decoder `auto` chose, the one NVDEC's support matrix expects, and the
  frames against PyAV's;
- ghost: the ghost engine with stand-in networks of the real architectures (fp16 on CUDA, width 1)
  on a 720p clip of one face, about 300 frames: frames/s end to end and per stage, the GPU's busy
  fraction while it runs (NVML), peak GPU memory, and the syncs torch reports under
  `torch.cuda.set_sync_debug_mode("warn")`; then the generator alone by batch size (fp16,
  channels_last, compile off and on) and StreamSwap's speed against the seed's way (`bench.jobs`).
Exit status 1 when a section failed, or when a GPU is present and a GPU path was skipped or fell back.

The device machine (Python 3.12, torch with CUDA 13, numpy, scipy, OpenCV, onnx, nvidia-ml-py)
lacks av, PyNvVideoCodec, kornia and onnx2torch. Carry them as wheels, one run each (64 MiB a run):

    W='pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64'
    $W -d .whl/video av==18.1.0 PyNvVideoCodec==2.2.4                        # 35.8 + 26.9 MB
    $W -d .whl/ghost av==18.1.0 kornia==0.9.0 kornia_rs==0.2.0 onnx2torch==1.5.15   # 43 MB

and start each run with `pip install -q --no-index --no-deps --target /tmp/site .whl/<part>/*.whl
&& export PYTHONPATH=/tmp/site:.` (see the README's "GPU device suite").
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamswap.bench.media import face_blobs, make_video
from streamswap.bench.report import SHARED, environment, save_json

MAX_MEAN_DIFF = 2.0  # grey levels (0-255), per frame, NVDEC against PyAV


@dataclass(frozen=True)
class SuiteSettings:
    """device: where the GPU paths would run ("cuda", or "cpu" for the dry run); quick: small
    sizes (the dry run); video: the clip NVDEC is checked on (made here when absent)."""

    device: str = "cuda"
    quick: bool = False
    video: Path = SHARED / "data" / "videos" / "nggyup.mp4"

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda") and torch.cuda.is_available()


class Sections:
    """The report being built; a section that raises is recorded as failed and the others go on."""

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}

    def run(self, name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            out = fn(*args)
        except Exception as exc:  # noqa: BLE001 - record and go on with the other sections
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
        out["seconds"] = round(time.perf_counter() - t0, 2)
        self.report[name] = out
        return out

    def failures(self, gpu_present: bool) -> list[str]:
        """The sections that failed, and on a GPU machine those that skipped or fell back."""
        bad = []
        for name, sec in self.report.items():
            if not isinstance(sec, dict):
                continue
            if sec.get("ok") is False or (gpu_present and (sec.get("skipped") or sec.get("fell_back"))):
                bad.append(name)
        return bad


# --- preflight ------------------------------------------------------------------------------------


def _loadable(lib: str) -> str:
    try:
        ctypes.CDLL(lib)
        return "loads"
    except OSError as exc:
        return f"missing ({exc})"


def preflight(settings: SuiteSettings) -> dict[str, Any]:
    """What the machine offers, before anything runs on it."""
    from streamswap.doctor import nvidia_smi_gpus
    from streamswap.video.nv import probe_gpu

    gpu = probe_gpu() if torch.cuda.is_available() else None
    out: dict[str, Any] = {
        "nvidia_smi": [{"name": n, "driver": d} for n, d in nvidia_smi_gpus()],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "libraries": {lib: _loadable(lib) for lib in ("libcuda.so.1", "libnvcuvid.so.1", "libnvidia-encode.so.1")},
    }
    if gpu is not None:
        out.update(gpu=gpu.gpu_name, capability=gpu.capability, pynvvideocodec=gpu.nvcodec_why, nvenc=gpu.nvenc_why)
    if settings.device.startswith("cuda"):
        out["ok"] = gpu is not None and gpu.nvcodec
    else:
        out["skipped"] = "dry run on the CPU"
    return out


# --- video ----------------------------------------------------------------------------------------


def _compare(path: Path, device: str) -> dict[str, Any]:
    """Decode `path` with the `auto` choice on `device` and with PyAV, in lockstep."""
    from streamswap.video.sources import SourceOptions, open_source

    src = open_source(path, SourceOptions(device=device))
    ref = open_source(path, SourceOptions(decoder="pyav"))
    diffs: list[float] = []
    pts_equal, count, count_ref = True, 0, 0
    try:
        for a, b in zip_longest(src, ref):
            count += a is not None
            count_ref += b is not None
            if a is None or b is None:
                continue
            pts_equal &= a.pts == b.pts
            diffs.append(float((a.image.float() - b.image.to(a.image.device).float()).abs().mean()))
    finally:
        src.close()
        ref.close()
    return {
        "backend": src.choice.backend,
        "reason": src.choice.reason,
        "frames": count,
        "reference_frames": count_ref,
        "pts_equal": pts_equal,
        "mean_abs_diff_max": round(max(diffs), 3) if diffs else None,
        "ok": count == count_ref > 0 and pts_equal and bool(diffs) and max(diffs) <= MAX_MEAN_DIFF,
    }


def nvdec_vs_pyav(settings: SuiteSettings, tmp: Path) -> dict[str, Any]:
    """The whole clip through NVDEC (`auto`) and PyAV; decode-only frames/s of each."""
    from streamswap.video.sources import SourceOptions, open_source

    video = settings.video
    if not video.exists() or settings.quick:
        video = make_video(tmp / "clip.mp4", frames=24 if settings.quick else 240, size=(1280, 720), fps=30)
    out = _compare(video, settings.device)
    for name, options in (("auto", SourceOptions(device=settings.device)), ("pyav", SourceOptions(decoder="pyav"))):
        src = open_source(video, options)
        t0 = time.perf_counter()
        n = sum(1 for _ in src)
        if settings.on_gpu:
            torch.cuda.synchronize()
        src.close()
        out[f"fps_decode_{name}"] = round(n / (time.perf_counter() - t0), 1)
    out["video"] = str(video)
    out["fell_back"] = settings.on_gpu and out["backend"] != "nvdec"
    return out


# (name, make_video keywords, file suffix): 1-second clips of what NVDEC must decide about
FORMAT_CLIPS: list[tuple[str, dict[str, Any], str]] = [
    ("h264_odd_size", {"codec": "libx264", "pix_fmt": "yuv444p", "size": (321, 181)}, ".mp4"),
    ("h264_444", {"codec": "libx264", "pix_fmt": "yuv444p"}, ".mp4"),
    ("hevc_444", {"codec": "libx265", "pix_fmt": "yuv444p"}, ".mp4"),
    ("hevc_main10", {"codec": "libx265", "pix_fmt": "yuv420p10le"}, ".mp4"),
    ("h264_high10", {"codec": "libx264", "pix_fmt": "yuv420p10le"}, ".mp4"),
    ("h264_rotated", {"codec": "libx264", "rotation": 90}, ".mp4"),
    ("h264_raw_no_pts", {"codec": "libx264"}, ".h264"),
]


def format_matrix(settings: SuiteSettings, tmp: Path) -> dict[str, Any]:
    """Each clip: what NVDEC's support matrix expects on this GPU, what `auto` chose, and its
    frames against PyAV's. A clip the matrix gives to NVDEC must decode there and match."""
    from streamswap.video.nv import probe_gpu
    from streamswap.video.nvdec_support import nvdec_refusal
    from streamswap.video.sources import SourceOptions, open_source

    gpu = probe_gpu() if settings.on_gpu else None
    clips: dict[str, Any] = {}
    for name, clip, suffix in FORMAT_CLIPS:
        kw = dict(clip)  # FORMAT_CLIPS stays as it is
        size = kw.pop("size", (320, 180) if settings.quick else (1280, 720))
        path = make_video(tmp / f"{name}{suffix}", frames=6 if settings.quick else 30, fps=30, size=size, **kw)
        probe = open_source(path, SourceOptions(decoder="pyav"))
        facts = probe.info.facts
        probe.close()
        row: dict[str, Any] = {"facts": f"{facts.codec} {facts.profile} {facts.pix_fmt} {facts.width}x{facts.height}"}
        if gpu is not None:
            refusal = nvdec_refusal(facts, gpu.capability)
            row["expected"] = "nvdec" if refusal is None and gpu.nvcodec else "pyav"
            row["why_not_nvdec"] = refusal
        row.update(_compare(path, settings.device))
        if "expected" in row:
            row["ok"] = row["ok"] and row["backend"] == row["expected"]
        clips[name] = row
    out: dict[str, Any] = {"clips": clips, "ok": all(c["ok"] for c in clips.values())}
    if gpu is None:
        out["note"] = "no GPU: every clip decoded by PyAV against PyAV (the clips and comparisons run)"
    return out


# --- ghost ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def cuda_syncs(enabled: bool) -> Iterator[collections.Counter[str]]:
    """Count the syncs torch warns about under set_sync_debug_mode("warn"), by call site, from
    every thread (the warnings hook is process-wide)."""
    counts: collections.Counter[str] = collections.Counter()
    if not enabled:
        yield counts
        return
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if "synchroniz" in str(message):
                counts[f"{Path(filename).name}:{lineno}"] += 1
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counts
        finally:
            torch.cuda.set_sync_debug_mode(0)


@contextlib.contextmanager
def gpu_busy(enabled: bool) -> Iterator[list[float]]:
    """Sample the GPU's utilisation (NVML, %) every 0.1 s while the block runs."""
    samples: list[float] = []
    if not enabled:
        yield samples
        return
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            with contextlib.suppress(Exception):  # no NVML: no samples
                samples.append(float(torch.cuda.utilization()))

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield samples
    finally:
        stop.set()
        t.join()


def ghost_path(settings: SuiteSettings, tmp: Path) -> dict[str, Any]:
    """One ghost job with stand-in networks on a clip of one face."""
    from PIL import Image

    from streamswap.api import SwapOptions, swap_video
    from streamswap.engines.ghost import ghost_models, stand_in_ghost_parts
    from streamswap.faces.detect import DetectSettings

    size, frames = ((320, 180), 8) if settings.quick else ((1280, 720), 300)
    width = 0.0625 if settings.quick else 1.0
    device = torch.device(settings.device)
    Image.fromarray(face_blobs(1, (640, 360), 60)).save(tmp / "source.png")
    clip = make_video(tmp / "face.mp4", frames=frames, size=size, fps=30, images=[face_blobs(1, size)])
    detect = DetectSettings(score_threshold=0.5, nms_threshold=0.01, max_faces=8)
    parts = stand_in_ghost_parts(tmp / "nets", device, width=width, detect=detect)
    options = SwapOptions(
        sources=(str(tmp / "source.png"),), engine="ghost", device=settings.device, batch_size=8, resume=False
    )
    if settings.on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with gpu_busy(settings.on_gpu) as busy, cuda_syncs(settings.on_gpu) as syncs:
        t0 = time.perf_counter()
        report = swap_video(options, str(clip), str(tmp / "out.mp4"), models=ghost_models(parts))
        seconds = time.perf_counter() - t0
    stages = report.graph["stages"] if report.graph else []
    return {
        "ok": report.frames == frames and report.faces_swapped >= frames,
        "frames": report.frames,
        "faces": report.faces_swapped,
        "size": f"{size[0]}x{size[1]}",
        "width": width,
        "fps": round(report.frames / seconds, 1),
        "stages": [{k: s[k] for k in ("name", "items_per_s", "busy", "queue_max")} for s in stages],
        "backends": report.backends,
        "gpu_busy_mean": round(float(np.mean(busy)), 1) if busy else None,
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if settings.on_gpu else None,
        "cuda_syncs": sum(syncs.values()) if settings.on_gpu else None,
        "cuda_syncs_per_batch": round(sum(syncs.values()) / max(1, -(-frames // 8)), 2) if settings.on_gpu else None,
        "cuda_sync_sites": dict(syncs.most_common(12)),
    }


def generator_alone(settings: SuiteSettings) -> dict[str, Any]:
    """AEI-Net forward only by batch size: fp16 channels_last, compile off and on (fp32 on the CPU)."""
    from streamswap.bench.generator import CONFIGS, bench_one
    from streamswap.models.aei_net import AEINet, AEINetConfig
    from streamswap.models.inference import prepare_generator

    if settings.on_gpu:
        names, batches, seconds = ["cuda-fp16-cl", "cuda-fp16-cl-compile"], [1, 8, 32], 3.0
        config = AEINetConfig(num_blocks=2)
    else:
        names, batches, seconds = ["cpu-fp32"], [1], 0.1
        config = AEINetConfig(num_blocks=1, width=0.0625)
    rows: list[dict[str, Any]] = []
    for name in names:
        torch.manual_seed(0)
        model = prepare_generator(AEINet(config), CONFIGS[name])
        for b in batches:
            rows.append(
                {"config": name, **bench_one(model, CONFIGS[name], b, seconds, warmup=1 if settings.quick else 3)}
            )
    return {"ok": all(float(r["faces_per_s"]) > 0 for r in rows), "results": rows}


def baseline_ratio(settings: SuiteSettings, tmp: Path) -> dict[str, Any]:
    """StreamSwap against the seed's way on the same clip, stand-in networks and device."""
    from streamswap.bench.jobs import JobSpec, compare

    size, frames = ((320, 180), 4) if settings.quick else ((1280, 720), 120)
    clip = make_video(tmp / "baseline.mp4", frames=frames, size=size, fps=30, images=[face_blobs(1, size)])
    from PIL import Image

    Image.fromarray(face_blobs(1, (640, 360), 60)).save(tmp / "baseline_source.png")
    spec = JobSpec(
        kind="pipeline",
        video=str(clip),
        source=str(tmp / "baseline_source.png"),
        out="",
        engine="ghost",
        device=settings.device,
        batch_size=8,
        stand_in=True,
        width=0.0625 if settings.quick else 1.0,
    )
    out = compare(spec, isolated=not settings.quick)
    keep = ("speed_ratio", "memory_ratio", "gpu_memory_ratio", "cpu_ratio")
    return {
        "ok": out["speed_ratio"] > 0,
        "isolated": not settings.quick,
        **{k: round(out[k], 3) for k in keep if out.get(k) is not None},
        "fps": {"pipeline": round(out["pipeline"]["fps"], 2), "baseline": round(out["baseline"]["fps"], 2)},
    }


# --- the run --------------------------------------------------------------------------------------


def run_suite(part: str, settings: SuiteSettings) -> tuple[dict[str, Any], int]:
    """Run `part` ("video", "ghost" or "all"): (the report, the exit status)."""
    sections = Sections()
    sections.report["environment"] = {**environment(), "device_asked": settings.device, "quick": settings.quick}
    sections.run("preflight", preflight, settings)
    with tempfile.TemporaryDirectory(prefix="streamswap-gpu-suite-") as tmp_s:
        tmp = Path(tmp_s)
        if part in ("video", "all"):
            sections.run("nvdec_vs_pyav", nvdec_vs_pyav, settings, tmp)
            sections.run("format_matrix", format_matrix, settings, tmp)
        if part in ("ghost", "all"):
            sections.run("ghost", ghost_path, settings, tmp)
            sections.run("generator", generator_alone, settings)
            sections.run("baseline", baseline_ratio, settings, tmp)
    gpu_present = torch.cuda.is_available()
    failed = sections.failures(gpu_present and settings.device.startswith("cuda"))
    sections.report["failed"] = failed
    sections.report["ok"] = not failed
    return sections.report, (1 if failed else 0)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring); prints the JSON and returns the exit status."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--part", choices=("video", "ghost", "all"), default="all")
    ap.add_argument("--device", default="cuda", help="cuda (the suite) or cpu (the dry run)")
    ap.add_argument("--quick", action="store_true", help="small sizes: the dry run")
    ap.add_argument("--video", type=Path, default=SuiteSettings.video, help="clip for NVDEC vs PyAV")
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_suite_<part>.json")
    args = ap.parse_args(argv)
    settings = SuiteSettings(device=args.device, quick=args.quick, video=args.video)
    report, status = run_suite(args.part, settings)
    text = save_json(args.out / f"gpu_suite_{args.part}.json", report, indent=2, default=_plain)
    print(text)
    return status


def _plain(obj: Any) -> Any:
    if isinstance(obj, (Path, Fraction)):
        return str(obj)
    return repr(obj)
