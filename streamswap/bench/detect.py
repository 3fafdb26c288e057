"""Face detection throughput (frames/s) by batch size and runtime, and the lite HOG detector.

    python benchmarks/bench_detect.py                          # fake SCRFDs, CPU, batches 1,2,4,8
    python benchmarks/bench_detect.py --model ~/.cache/streamswap/scrfd_10g_bnkps.onnx --device cuda
    python benchmarks/bench_detect.py --seconds 6 --rounds 3 --out /tmp/detect.json

SCRFD: by default two fake models with the published scrfd_10g_bnkps signature (input
1x3x640x640, nine reshape(-1, C) outputs), exported on the fly from streamswap/models/stand_ins.py:
"tiny" (a few small convolutions; it finds faces, so decode and NMS do real work) and "heavy"
(random weights, roughly scrfd_10g's 10 GFLOPs, finds nothing). Neither is the real scrfd_10g,
whose numbers would differ: pass --model to time it. Each runtime (torch = the onnx2torch-
converted graph, onnxruntime) is timed on 720p frames through the whole `SCRFDDetector.detect`
(letterbox, network, decode, NMS) and on the network alone, best of interleaved rounds (the
machine may be shared). Lite: dlib's HOG detector on one 720p frame, upsample 0 and 1.
Writes JSON (default benchmarks/results/detect.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from streamswap.bench.media import sample_video_frames
from streamswap.bench.report import RESULTS, SHARED, save_json
from streamswap.bench.timing import best_of
from streamswap.faces.detect import DetectSettings, SCRFDDetector, letterbox
from streamswap.faces.onnx_runtime import Runtime
from streamswap.models.stand_ins import export_fake_scrfd

FAKE_NOTE = (
    "fake SCRFD with the published scrfd_10g_bnkps signature (1x3x640x640 in, 9 reshape(-1, C) outputs) "
    "and a tiny network: it times the runtimes, letterbox, decode and NMS; a real scrfd_10g "
    "(~10 GFLOPs per 640x640 frame) would be much slower per frame and could rank the runtimes differently"
)


HEAVY_NOTE = (
    "fake SCRFD with the same signature and roughly scrfd_10g's compute (10.7 GFLOPs per 640x640 "
    "frame, plain 3x3-conv backbone, random weights, finds no faces): a stand-in for the real "
    "network's cost, to choose the runtime"
)


def _frames(count: int, device: torch.device) -> tuple[torch.Tensor, str]:
    """(count, 3, 720, 1280) uint8 RGB and where they came from: frames of the shared nggyup.mp4
    when it is present, else random pixels."""
    video = SHARED / "data/videos/nggyup.mp4"
    if video.is_file():
        return sample_video_frames(video, count).to(device), str(video.name)
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, 720, 1280), generator=g, dtype=torch.uint8).to(device), "random"


def _runtime(name: str) -> Runtime:
    """--runtimes' names, checked: "torch" or "onnxruntime"."""
    if name == "torch":
        return "torch"
    if name == "onnxruntime":
        return "onnxruntime"
    raise ValueError(f"unknown runtime {name!r} (torch or onnxruntime)")


def bench_scrfd(
    model: Path, label: str, device: torch.device, batches: list[int], seconds: float, rounds: int, runtimes: list[str]
) -> list[dict[str, object]]:
    """One row per (batch, runtime): frames/s of the whole detect and of the network alone."""
    frames, source = _frames(max(batches), device)
    detectors = {
        rt: SCRFDDetector.load(model, DetectSettings(), runtime=_runtime(rt), device=device) for rt in runtimes
    }
    rows: list[dict[str, object]] = []
    for b in batches:
        batch = frames[:b]
        blob, _ = letterbox(batch, DetectSettings().size)
        fns: dict[str, Callable[[], object]] = {}
        for rt, det in detectors.items():
            fns[f"{rt}/detect"] = partial(det.detect, batch)
            fns[f"{rt}/network"] = partial(det.runner, blob)
        best = best_of(fns, device, seconds, rounds)
        for rt, det in detectors.items():
            t_detect, t_net = best[f"{rt}/detect"], best[f"{rt}/network"]
            rows.append(
                {
                    "model": label,
                    "runtime": rt,
                    "provider": det.runner.provider,
                    "batched_graph": det.runner.batched,
                    "batch": b,
                    "frames": source,
                    "frame_size": list(frames.shape[2:]),
                    "detect_fps": round(b / t_detect, 2),
                    "network_fps": round(b / t_net, 2),
                    "detect_ms_per_batch": round(1000 * t_detect, 2),
                    "faces_in_batch": len(det.detect(batch)),
                }
            )
            print(
                f"  {label:5s} {rt:12s} {det.runner.provider:22s} batch {b}: detect {b / t_detect:7.1f} frames/s, "
                f"network alone {b / t_net:7.1f} frames/s"
            )
    return rows


def bench_lite(seconds: float, rounds: int) -> list[dict[str, object]]:
    """One row per dlib upsample (0, 1): HOG alone and with the 68 landmarks, on one 720p frame."""
    from streamswap.faces.lite import DlibDetector, LiteSettings

    frame, source = _frames(1, torch.device("cpu"))
    rows: list[dict[str, object]] = []
    for upsample in (0, 1):
        det = DlibDetector(LiteSettings(upsample=upsample))
        hog = det.hog
        image = frame[0].permute(1, 2, 0).contiguous().numpy()
        best = best_of(
            {"hog": partial(hog.run, image, upsample, 0.0), "all": partial(det.detect, frame)},
            torch.device("cpu"),
            seconds,
            rounds,
        )
        t_hog, t_all = best["hog"], best["all"]
        rows.append(
            {
                "detector": "dlib HOG",
                "upsample": upsample,
                "frames": source,
                "frame_size": [720, 1280],
                "hog_ms": round(1000 * t_hog, 1),
                "hog_fps": round(1 / t_hog, 2),
                "detect_with_68_landmarks_fps": round(1 / t_all, 2),
            }
        )
        print(
            f"  dlib HOG upsample {upsample}: {1 / t_hog:6.2f} frames/s ({1000 * t_hog:.0f} ms), "
            f"with 68 landmarks {1 / t_all:6.2f} frames/s"
        )
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an SCRFD ONNX file (default: the fake, exported on the fly)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--runtimes", default="torch,onnxruntime")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per configuration (all rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--no-lite", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "detect.json")
    return parser


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/bench_detect.py [flags]`: time the models, write the JSON report."""
    args = _parser().parse_args(argv)
    device = torch.device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    runtimes = args.runtimes.split(",")
    scrfd: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            models = {"file": (args.model, f"model file {args.model}")}
        else:
            models = {
                "tiny": (export_fake_scrfd(Path(tmp) / "tiny.onnx"), FAKE_NOTE),
                "heavy": (export_fake_scrfd(Path(tmp) / "heavy.onnx", heavy=True), HEAVY_NOTE),
            }
        for label, (path, note) in models.items():
            print(f"SCRFD {label} at 640x640 on {device}: {note}")
            scrfd += bench_scrfd(path, label, device, batches, args.seconds, args.rounds, runtimes)
    lite = [] if args.no_lite else bench_lite(args.seconds, args.rounds)
    result = {
        "benchmark": "face detection throughput",
        "scrfd_models": {k: v[1] for k, v in models.items()},
        "load_average_after": os.getloadavg(),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "host": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "scrfd": scrfd,
        "lite": lite,
    }
    save_json(args.out, result, indent=2)
    print(f"wrote {args.out}")
