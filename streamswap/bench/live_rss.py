"""Memory of a long live job with faces entering and leaving: `streamswap live` (lite engine) on
a synthetic clip in which real portraits slide in, stay and slide out, one after another, with
empty stretches between; the clip is a loop of such segments as long as asked. Samples the
child's RSS (/proc/PID/status) every few seconds and reports the curve and the growth after
warm-up (what would leak per-track state shows there: every segment is a new track).

    python benchmarks/live_rss.py --minutes 4 --out /tmp/live_rss.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from streamswap.bench.media import make_video
from streamswap.bench.report import REPO, SHARED, status_mib

PORTRAITS = ("mark.jpg", "beckham.jpg", "elon_musk.jpg", "murakami.jpg", "tgt1.png", "tgt2.png")  # shared/data/images
W, H, FPS, SEGMENT = 640, 360, 10, 40  # a segment: 4 s, a face crossing in the first 3


def segment_frames(faces: list[np.ndarray]) -> list[np.ndarray]:
    """One (H, W, 3) uint8 RGB picture per frame of every segment (one segment per face, (h, w, 3)
    RGB, at most H high): the face slides in from a side, stops, slides out."""
    out = []
    bg = np.full((H, W, 3), 96, np.uint8)
    for k, face in enumerate(faces):
        fh, fw = face.shape[:2]
        y = (H - fh) // 2
        left = k % 2 == 0
        for i in range(SEGMENT):
            img = bg.copy()
            if i < 30:  # 0-9 in, 10-19 still, 20-29 out, 30-39 nobody
                p = min(i, 10) / 10 if i < 20 else 1 - (i - 20) / 10
                x = int(-fw + p * (W // 2 - fw // 2 + fw)) if left else int(W - p * (W // 2 + fw // 2))
                x0, x1 = max(0, x), min(W, x + fw)
                if x1 > x0:
                    img[y : y + fh, x0:x1] = face[:, x0 - x : x1 - x]
            out.append(img)
    return out


def portraits(height: int = 260) -> list[np.ndarray]:
    """The shared portraits (PORTRAITS) as (height, w, 3) uint8 RGB, aspect kept."""
    faces = []
    for n in PORTRAITS:
        path = SHARED / "data" / "images" / n
        bgr = cv2.imread(str(path))
        if bgr is None:  # cv2 reports an unreadable file by returning None
            raise FileNotFoundError(f"cannot read the portrait {path}")
        img = bgr[:, :, ::-1]
        s = height / img.shape[0]
        faces.append(np.ascontiguousarray(cv2.resize(img, (int(img.shape[1] * s), height))))
    return faces


def live_rss_curve(clip: Path, out: Path, every: float) -> tuple[dict, list[tuple[float, float]]]:
    """Run `streamswap live` (lite) on `clip` in a child process, sampling its RSS every `every`
    seconds: (its --json report, [(seconds since start, RSS MiB), ...]). Exits if it fails."""
    cmd = [
        sys.executable,
        "-m",
        "streamswap",
        "live",
        "-s",
        str(SHARED / "data" / "images" / "mark.jpg"),
        "-i",
        str(clip),
        "-o",
        str(out),
        "--engine",
        "lite",
        "--json",
        "-q",
    ]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    curve = []
    while proc.poll() is None:
        r = status_mib("VmRSS", pid=proc.pid).get("VmRSS")
        if r is not None:
            curve.append((round(time.monotonic() - t0, 1), round(r, 1)))
        time.sleep(every)
    stdout, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"live failed ({proc.returncode}): {err.strip()}")
    return json.loads(stdout), curve


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/live_rss.py [--minutes M] [--every S] [--out J]`: prints the JSON
    figures (MiB; the curve as [seconds, MiB] pairs) and writes them to --out."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    frames = int(args.minutes * 60 * FPS)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_video(
            Path(tmp) / "faces.mp4", frames=frames, size=(W, H), fps=FPS, images=segment_frames(portraits())
        )
        report, curve = live_rss_curve(clip, Path(tmp) / "out.mp4", args.every)
    warm = [r for t, r in curve if t >= 60] or [r for _, r in curve]
    result = {
        "minutes": args.minutes,
        "frames_in": report["frames_in"],
        "frames_out": report["frames"],
        "dropped": report["dropped"],
        "faces_swapped": report["faces_swapped"],
        "segments_with_a_face": frames // SEGMENT,
        "rss_curve_s_mib": curve,
        "rss_after_60s_first_mib": warm[0],
        "rss_after_60s_last_mib": warm[-1],
        "rss_after_60s_max_mib": max(warm),
        "growth_after_60s_mib": round(warm[-1] - warm[0], 1),
        "max_minus_first_after_60s_mib": round(max(warm) - warm[0], 1),
    }
    text = json.dumps(result)
    print(text)
    if args.out:
        args.out.write_text(text)
