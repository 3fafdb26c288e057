"""Keypoint jitter on a real video: raw lite detections vs GHOST's moving average vs our Kalman tracks.

    python benchmarks/bench_jitter.py                                # nggyup.mp4 from ../shared/data
    python benchmarks/bench_jitter.py --video clip.mp4 --out /tmp/jitter.json

Keypoints: dlib's HOG detector on frames downscaled to 640 wide (upsample 0; the full frame when
nothing is found there), dlib's 68 landmarks fitted on the full-resolution frame, and the five
ArcFace keypoints derived from them (`streamswap.faces.lite`). The same detections go through
GHOST's moving average (+-2 frames, segments split at 5 px jumps) and through our tracker in
file mode (Kalman + RTS over a 10-frame window) and live mode (causal Kalman).

Figures (px, CPU): mean keypoint acceleration |k[t+1] - 2k[t] + k[t-1]| over the frames where
the three frames hold the same face's detections and no cut lies between them (one set of frames
for all series); lag in frames from the cross-correlation of smoothed vs raw velocities (positive
= late), and on a synthetic noisy ramp; deviation from the raw keypoints in face widths.
tests/test_tracking_video.py asserts on the same figures (`lite_detections`, `measure`).
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamswap.bench.report import RESULTS, SHARED, save_json
from streamswap.bench.tracking_metrics import (
    ghost_smooth,
    mean_acceleration,
    ramp_lag,
    track_segments,
    velocity_lag,
)
from streamswap.tracking import Detections, Tracker, TrackerSettings, face_width, scene_cuts

DEFAULT_VIDEO = SHARED / "data" / "videos" / "nggyup.mp4"


@dataclass(frozen=True)
class VideoDetections:
    """Per-frame lite detections of a video plus its frame-difference cut signal."""

    detections: list[Detections]
    cuts: np.ndarray  # (T,) bool
    frame_size: tuple[int, int]  # (W, H)
    seconds: float


def lite_detections(path: Path, detect_width: int = 640) -> VideoDetections:
    """Decode `path` with PyAV and run the lite dlib backend on every frame (see module doc)."""
    import av
    import cv2
    import dlib
    import torch

    from streamswap.faces.lite import DlibDetector, LiteSettings, kps_from_68

    detector = DlibDetector(LiteSettings(upsample=0))
    start = time.perf_counter()
    detections, cuts = [], []
    previous = None
    size = (0, 0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            h, w = image.shape[:2]
            size = (w, h)
            tensor = torch.from_numpy(image).permute(2, 0, 1)
            cuts.append(bool(scene_cuts(tensor[None], previous)[0]))
            previous = tensor
            scale = detect_width / w if w > detect_width else 1.0
            small = (
                cv2.resize(image, (detect_width, round(h * scale)), interpolation=cv2.INTER_AREA)
                if scale < 1.0
                else image
            )
            rects, scores, _ = detector.hog.run(small, 0, 0.0)
            if not rects and scale < 1.0:  # small faces: one more try at full resolution
                scale = 1.0
                rects, scores, _ = detector.hog.run(image, 0, 0.0)
            boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
            boxes /= scale
            shapes = np.zeros((len(boxes), 68, 2), np.float32)
            for i, b in enumerate(boxes):  # landmarks fitted at full resolution: finer than at 640
                parts = detector.shape_predictor(image, dlib.rectangle(*(int(round(float(v))) for v in b))).parts()
                shapes[i] = [(p.x, p.y) for p in parts]
            kps = kps_from_68(torch.from_numpy(shapes)).numpy()
            detections.append(Detections(boxes, kps, np.asarray(scores, np.float32)))
    return VideoDetections(detections, np.array(cuts), size, time.perf_counter() - start)


def _main_track(faces: list[tuple]) -> int:
    """The id of the track output in the most frames."""
    counts: dict[int, int] = {}
    for frame in faces:
        for face in frame:
            counts[face.track_id] = counts.get(face.track_id, 0) + 1
    return max(counts, key=lambda k: counts[k])


def _series(faces: list[tuple], dets: list[Detections]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(smoothed, raw) (T, 5, 2) keypoints and (T,) segments of a single-face video: for each
    frame where a track is output from a detection, its smoothed keypoints and that detection's."""
    seg = track_segments(faces)
    smoothed = np.full((len(faces), 5, 2), np.nan)
    raw = np.full((len(faces), 5, 2), np.nan)
    for t, frame in enumerate(faces):
        if frame and seg[t] >= 0:
            face = frame[0]
            smoothed[t], raw[t] = face.kps, dets[t].kps[face.detection]
    return smoothed, raw, seg


def ramp_figures(settings: TrackerSettings, frames: int = 120, noise_px: float = 1.5, seed: int = 0) -> dict:
    """Lag on a synthetic constant-velocity ramp (a 200 px face moving 6 px/frame, noisy)."""
    rng = np.random.default_rng(seed)
    velocity = np.array([6.0, 2.0])
    base = np.array([[-40, -30], [40, -30], [0, 10], [-30, 45], [30, 45]], np.float64) + 300
    truth = base[None] + velocity[None, None] * np.arange(frames)[:, None, None]
    noisy = truth + rng.normal(0, noise_px, truth.shape)
    boxes = np.concatenate([truth.min(1) - 60, truth.max(1) + 60], axis=1)
    dets = [Detections(boxes[t : t + 1], noisy[t : t + 1]) for t in range(frames)]
    out = Tracker(settings).run(dets)
    smoothed = np.stack([f[0].kps if f else np.full((5, 2), np.nan) for f in out])  # live: none before min_hits
    ghost = ghost_smooth(noisy, np.ones(frames, bool))
    return {"ours": ramp_lag(smoothed, truth, velocity), "ghost": ramp_lag(ghost, truth, velocity)}


def measure(video: VideoDetections) -> dict:
    """All figures for one video's detections (see module doc)."""
    dets = video.detections
    results: dict = {
        "frames": len(dets),
        "frames_with_faces": int(sum(len(d) > 0 for d in dets)),
        "detect_seconds": round(video.seconds, 2),
        "cut_frames": np.flatnonzero(video.cuts).tolist(),
    }
    series = {}
    for mode in ("file", "live"):
        settings = TrackerSettings(mode=mode)
        start = time.perf_counter()
        faces = Tracker(settings).run(dets, cuts=list(video.cuts), frame_size=video.frame_size)
        elapsed = time.perf_counter() - start
        main = _main_track(faces)
        seg_main = track_segments(faces, {main})
        smoothed, raw, seg = _series(faces, dets)
        series[mode] = (smoothed, raw, seg)
        results[mode] = {
            "tracker_ms_per_frame": round(1000 * elapsed / len(dets), 3),
            "tracks": sorted({f.track_id for frame in faces for f in frame}),
            "restart_frames": [t for t, frame in enumerate(faces) if any(f.restarted for f in frame)],
            "main_track_frames": int((seg_main >= 0).sum()),
        }
    # one frame set for every series: file-mode segments (the reference), where live agrees too
    smoothed_file, raw, seg = series["file"]
    smoothed_live, raw_live, seg_live = series["live"]
    seg_common = np.where((seg_live >= 0) & np.all(raw_live == raw, axis=(1, 2)), seg, -1)
    valid = seg_common >= 0
    ghost = ghost_smooth(np.nan_to_num(raw), valid)
    # for reference: the same +-2 average without GHOST's 5 px split (which fast faces trip every frame)
    plain_ma = ghost_smooth(np.nan_to_num(raw), valid, jump=float("inf"))
    width = face_width(np.nan_to_num(raw, nan=1.0))
    for name, k in (
        ("raw", raw),
        ("ghost_ma", ghost),
        ("ma_without_split", plain_ma),
        ("ours_file", smoothed_file),
        ("ours_live", smoothed_live),
    ):
        dev = np.linalg.norm(k - raw, axis=-1).mean(-1)[valid] / width[valid]
        results[name] = {
            "mean_accel_px": round(mean_acceleration(np.nan_to_num(k), seg_common), 3),
            "lag_frames": round(velocity_lag(np.nan_to_num(k), np.nan_to_num(raw), valid), 3),
            "deviation_median_face_widths": round(float(np.median(dev)), 4),
            "deviation_p95_face_widths": round(float(np.percentile(dev, 95)), 4),
        }
    r = results["raw"]["mean_accel_px"]
    for name in ("ghost_ma", "ma_without_split", "ours_file", "ours_live"):
        results[name]["reduction_vs_raw"] = round(1 - results[name]["mean_accel_px"] / r, 4)
    results["ramp_lag_frames"] = {
        mode: {k: round(v, 3) for k, v in ramp_figures(TrackerSettings(mode=mode)).items()} for mode in ("file", "live")
    }
    return results


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/bench_jitter.py [--video V] [--out J]`: print and write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--out", type=Path, default=RESULTS / "jitter.json")
    args = ap.parse_args(argv)
    results = measure(lite_detections(args.video))
    results = {
        "video": args.video.name,
        "device": f"CPU ({platform.processor() or platform.machine()})",
        "settings": TrackerSettings().__dict__,
        **results,
    }
    print(save_json(args.out, results, indent=2, default=str))
