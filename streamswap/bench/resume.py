"""Resumability measured.

- `bench_resume`: the cost: the same swap job written as one file and as resumable segments
  (`streamswap.resume`), alternating in fresh processes, on the input looped to `seconds`. The
  ratio is taken within one run (runs alternate, so a busy spell hits both kinds alike), and
  `overhead` is median(segmented seconds) / median(plain seconds) - 1.
- `stop_and_resume`: the promise: the real CLI stopped by SIGTERM part-way, then the same
  command again; frames, audio packets, frames decoded by the second run, and the seams
  against an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from streamswap.bench.jobs import JobSpec, run_isolated
from streamswap.bench.length import loop_video
from streamswap.bench.report import environment
from streamswap.cluster.chunks import index_video
from streamswap.errors import PipelineError


@dataclass(frozen=True)
class ResumeBenchSpec:
    """job: the swap job (its video is looped to `seconds`); repeats: runs of each kind."""

    job: JobSpec
    seconds: float = 60.0
    repeats: int = 2


def bench_resume(spec: ResumeBenchSpec) -> dict[str, Any]:
    """Run plain and segmented jobs alternately; their fps and the segmented overhead."""
    with tempfile.TemporaryDirectory() as tmp:
        video = str(Path(tmp) / f"looped{Path(spec.job.video).suffix or '.mp4'}")
        loop_video(spec.job.video, spec.seconds, video)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "segmented": []}
        for _ in range(spec.repeats):
            for kind, resume in (("plain", False), ("segmented", True)):
                job = dataclasses.replace(spec.job, kind="pipeline", video=video, out="", resume=resume)
                runs[kind].append(run_isolated(job))
    seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    return {
        "environment": environment(),
        "settings": {**dataclasses.asdict(spec.job), "seconds": spec.seconds, "repeats": spec.repeats},
        "frames": runs["plain"][0]["frames"],
        "plain_fps": [r["fps"] for r in runs["plain"]],
        "segmented_fps": [r["fps"] for r in runs["segmented"]],
        "plain_seconds": seconds["plain"],
        "segmented_seconds": seconds["segmented"],
        "overhead": seconds["segmented"] / seconds["plain"] - 1,
    }


def _swap_cmd(video: str, source: str, out: Path, extra: tuple[str, ...]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamswap",
        "swap",
        "-s",
        source,
        "-t",
        video,
        "-o",
        str(out),
        "--engine",
        "lite",
        "--json",
        "-q",
        *extra,
    ]


def _run(cmd: list[str]) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PipelineError(f"swap failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout), time.monotonic() - t0


def _psnr(x: Any, y: Any) -> float:
    import numpy as np

    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


def _frame_diffs(a: Path, b: Path) -> dict[str, Any]:
    """Per-frame max |a - b| and PSNR over two videos' decoded frames, streamed (never all in
    memory): how many frames differ, the largest difference, the lowest PSNR among them."""
    import numpy as np

    worst, differing, n, low = 0, 0, 0, float("inf")
    with av.open(str(a)) as ca, av.open(str(b)) as cb:
        for fa, fb in zip(ca.decode(video=0), cb.decode(video=0), strict=False):
            x, y = fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24")
            d = int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max())
            if d:
                differing, low = differing + 1, min(low, _psnr(x, y))
            worst, n = max(worst, d), n + 1
    return {
        "frames_compared": n,
        "frames_differing": differing,
        "max_abs_diff": worst,
        "min_psnr_db": None if differing == 0 else low,
    }


def encoder_noise_psnr(path: Path, frames: int = 250, crf: int = 18, preset: str = "veryfast") -> float:
    """The PSNR x264 at swap's default settings costs on `path`'s first frames (a reference for
    'within encoder noise'): encode them, decode, compare (lowest per-frame PSNR)."""
    import io

    with av.open(str(path)) as c:
        pics = [f.to_ndarray(format="rgb24") for f, _ in zip(c.decode(video=0), range(frames), strict=False)]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.height, vs.width = pics[0].shape[:2]
        vs.pix_fmt = "yuv420p"
        vs.codec_context.options = {"crf": str(crf), "preset": preset}
        for p in pics:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(p, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf, "r") as c:
        return min(_psnr(p, f.to_ndarray(format="rgb24")) for p, f in zip(pics, c.decode(video=0), strict=False))


def stop_and_resume(
    video: str,
    source: str,
    workdir: str | Path,
    *,
    stop_at: float = 0.6,
    compare: bool = True,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Swap `video` (lite, --resume) with the real CLI, SIGTERM it once `stop_at` of its segments
    are finished, run the same command again; with `compare`, also an uninterrupted run."""
    from streamswap.cluster.workdir import work_dir_for

    folder = Path(workdir)
    out = folder / "resumed.mp4"
    cmd = _swap_cmd(video, source, out, ("--resume", *extra))
    total = index_video(video).frames
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    work = work_dir_for(out)
    plan = None
    t0 = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.2)
        if plan is None and (work / "plan.json").exists():
            plan = json.loads((work / "plan.json").read_text())
        if plan and len(list(work.glob("chunk-*.json"))) >= stop_at * len(plan["chunks"]):
            proc.send_signal(signal.SIGTERM)
            break
    first_out, first_err = proc.communicate(timeout=120)
    first_s = time.monotonic() - t0
    first = json.loads(first_out) if first_out.strip() else {}
    second, second_s = _run(cmd)
    with av.open(str(out)) as c:
        frames_out = sum(1 for _ in c.demux(c.streams.video[0]) if _.size)
    result: dict[str, Any] = {
        "environment": environment(),
        "video": video,
        "frames_in_input": total,
        "stop_at": stop_at,
        "first": {
            "exit": proc.returncode,
            "seconds": first_s,
            "frames": first.get("frames"),
            "frames_decoded": first.get("frames_decoded"),
            "stderr": first_err.strip().splitlines()[-1:],
        },
        "second": {
            "seconds": second_s,
            "frames_decoded": second["frames_decoded"],
            "frames_in": second["frames_in"],
            "segments_reused": second["segments_reused"],
            "segments": len(plan["chunks"]) if plan else None,
        },
        "frames_out": frames_out,
        "frames_match": frames_out == total,
        "second_decoded_fraction": second["frames_decoded"] / total,
        "audio_identical": _audio(out) == _audio(Path(video)),
    }
    if compare:
        whole = folder / "whole.mp4"
        _, whole_s = _run(_swap_cmd(video, source, whole, ("--resume", *extra)))
        result["uninterrupted_seconds"] = whole_s
        result["seams"] = _frame_diffs(whole, out)
        result["encoder_noise_min_psnr_db"] = encoder_noise_psnr(whole)
    return result


def _audio(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size] if c.streams.audio else []


__all__ = ["ResumeBenchSpec", "bench_resume", "stop_and_resume"]
