"""Cluster jobs on a real local Ray cluster (2 CPUs, lite engine, started once for the module):
seams of a chunked nggyup.mp4 against the single-process job, a worker killed mid-chunk (on the
slow-lite test engine, tests/slow_engine), an interrupted job resumed, `batch` through the CLI
and `bench workers` (`swap --workers` through the CLI: test_cluster_safety)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers_media import audio_packets, video_facts
from streamswap.bench.media import make_video

ray = pytest.importorskip("ray")

from streamswap.api import SwapOptions, swap_span, swap_video
from streamswap.engines.lite import ENGINE as LITE
from streamswap.cluster.chunks import PlanSettings, index_video, plan_chunks
from streamswap.cluster.run import ClusterSettings, swap_cluster
from streamswap.cluster.workdir import work_dir_for

# Lossless x264 for the seam comparison: two encodes of the same frames then decode identically
# (measured below), so any difference left is the processing's, not the encoder's.
LOSSLESS = {"crf": 0, "preset": "ultrafast"}


# The slow-lite engine: lite, holding a chunk when asked to (the worker-kill test's window)
SLOW_LITE = Path(__file__).parent / "slow_engine"


@pytest.fixture(scope="module")
def holds(tmp_path_factory) -> Path:
    """Where a test asks a worker of the slow-lite engine to hold its chunk: a file named by the
    worker's pid, holding the seconds to wait (tests/slow_engine/streamswap_slow_lite.py)."""
    return tmp_path_factory.mktemp("holds")


@pytest.fixture(scope="module")
def cluster(holds):
    """One local Ray cluster for the module, as a job starts it (127.0.0.1 only): 2 CPUs, no
    dashboard, workers' logs not forwarded. Its workers inherit the driver's environment at the
    start: the slow-lite test engine installed (on PYTHONPATH, its metadata beside it) and the
    folder of its holds."""
    from streamswap.cluster.run import start_local_cluster

    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "STREAMSWAP_SLOW_LITE_HOLDS")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SLOW_LITE), saved["PYTHONPATH"]) if p)
    os.environ["STREAMSWAP_SLOW_LITE_HOLDS"] = str(holds)
    try:
        start_local_cluster(2)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    signal.signal(signal.SIGINT, signal.getsignal(signal.SIGINT))  # Ray takes Ctrl-C over; give it back to pytest
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def mark(shared_data) -> str:
    return str(shared_data / "images" / "mark.jpg")


def _scaled_clip(src_path: Path, path: Path, *, frames: int, size: tuple[int, int]) -> Path:
    """The first `frames` frames of `src_path` (30 fps) re-encoded at `size` with a keyframe every
    0.5 s, and the matching stretch of its audio (packet copy)."""
    w, h = size
    with av.open(str(src_path)) as src, av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "crf": "20", "g": "15", "keyint_min": "15",
                                    "sc_threshold": "0"}
        audio_in = src.streams.audio[0]
        audio_out = out.add_stream_from_template(audio_in)
        for i, frame in enumerate(src.decode(video=0)):
            if i == frames:
                break
            f = frame.reformat(width=w, height=h, format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 30)
            for pkt in vs.encode(f):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        src.seek(0)
        for pkt in src.demux(audio_in):
            if pkt.dts is None or pkt.dts * pkt.time_base >= frames / 30:
                continue
            pkt.stream = audio_out
            out.mux(pkt)
    return path


@pytest.fixture(scope="module")
def short_clip(shared_data, tmp_path_factory) -> Path:
    """nggyup's first 3 s at 480x270 with a keyframe every 0.5 s, and its audio (packet copy): a
    cheaper real input for the fault and resume tests."""
    return _scaled_clip(shared_data / "videos" / "nggyup.mp4", tmp_path_factory.mktemp("clip") / "short.mp4",
                        frames=90, size=(480, 270))


@pytest.fixture(scope="module")
def seam_clip(shared_data, tmp_path_factory) -> Path:
    """nggyup's first 5 s (150 frames) at 640x360, and its audio: three 2-s chunks (the last one
    1 s, the shortest tail the planner keeps as a chunk) whose two seams, frames 60 and 120, each
    come after a full chunk longer than the 1-s warm-up, as in the whole 720p file with 3-s chunks,
    at about a quarter of its cost."""
    return _scaled_clip(shared_data / "videos" / "nggyup.mp4", tmp_path_factory.mktemp("clip") / "seams.mp4",
                        frames=150, size=(640, 360))


def _frames_at(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    with av.open(str(path)) as c:
        return {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in wanted}


def _check_exact(out: Path, src: Path) -> dict:
    """The output has the input's frame count, frame times (strictly increasing, no gap or
    duplicate) and audio packets byte for byte."""
    facts_in, facts_out = video_facts(src), video_facts(out)
    assert facts_out["frames"] == facts_in["frames"]
    assert facts_out["times"] == pytest.approx(facts_in["times"], abs=1e-6)
    steps = np.diff(facts_out["times"])
    assert steps.min() > 0 and steps.max() < 1.5 * np.median(steps)
    assert audio_packets(out) == audio_packets(src)
    return facts_out


def _free_cpus() -> float:
    return ray.available_resources().get("CPU", 0.0)


@pytest.mark.timeout(300)  # nggyup's first 5 s at 360p three ways (single process, 3 chunks, no warm-up)
def test_nggyup_in_three_chunks_over_two_workers_matches_the_single_process_job(cluster, mark, seam_clip, tmp_path):
    src = seam_clip
    options = SwapOptions(sources=(mark,), engine="lite", **LOSSLESS)
    single = swap_video(options, str(src), str(tmp_path / "single.mp4"))
    report = swap_cluster(options, str(src), str(tmp_path / "chunked.mp4"), ClusterSettings(workers=2, chunk_s=2.0))
    assert report.chunks_total == 3 and report.workers == 2 and report.retries == 0
    assert {w.worker for w in report.worker_stats if w.chunks} == {0, 1}  # both workers ran chunks
    _check_exact(tmp_path / "chunked.mp4", src)
    assert report.frames == single.frames == 150
    with av.open(str(tmp_path / "chunked.mp4")) as c:
        assert "synthetic" in c.metadata.get("comment", "")
    assert not work_dir_for(tmp_path / "chunked.mp4").exists()  # removed once the output is complete

    seams = [60, 120]
    near = {i for s in seams for i in range(s - 4, s + 4)}
    a, b = _frames_at(tmp_path / "single.mp4", near), _frames_at(tmp_path / "chunked.mp4", near)
    diffs = [np.abs(a[i].astype(int) - b[i].astype(int)) for i in sorted(near)]
    worst_max, worst_mean = max(int(d.max()) for d in diffs), max(float(d.mean()) for d in diffs)

    # the encoder's share: the seam's input frames encoded whole and cut at the seam by the chunk
    # encoder decode identically, so the threshold below only has to absorb the processing's
    # leftovers (the tracker's filter state after its warm-up: a few levels at a few pixels)
    seam_frames = _frames_at(src, set(range(56, 64)))
    whole = _encode([seam_frames[i] for i in range(56, 64)], 56, tmp_path / "whole.mp4")
    cut = {**_encode([seam_frames[i] for i in range(56, 60)], 56, tmp_path / "cut0.mp4"),
           **_encode([seam_frames[i] for i in range(60, 64)], 60, tmp_path / "cut1.mp4")}
    noise = max(int(np.abs(whole[i].astype(int) - cut[i].astype(int)).max()) for i in whole)
    assert noise == 0
    assert worst_max <= 6 and worst_mean <= 0.01, (worst_max, worst_mean)

    # and the margin is what makes it so: the second chunk's first frames run without warm-up
    # differ from the single-process job far beyond that threshold
    ix = index_video(src)
    cold = plan_chunks(ix, PlanSettings(chunk_s=2.0, warmup_s=0.0, lookahead=0, detect_every=5))[1]
    models = LITE.load(options, torch.device("cpu"))
    span = replace(cold.span(ix), emit_to=ix.pts[65], run_to=ix.pts[65], frames=5)
    swap_span(options, str(src), str(tmp_path / "cold.mp4"), span, models=models,
              identity=LITE.source_identity(models, options))
    c = _frames_at(tmp_path / "cold.mp4", set(range(5)))
    a = _frames_at(tmp_path / "single.mp4", set(range(60, 65)))
    cold_max = max(int(np.abs(a[60 + i].astype(int) - c[i].astype(int)).max()) for i in range(5))
    assert cold_max > 5 * max(worst_max, 1), (cold_max, worst_max)


def _encode(frames: list[np.ndarray], first: int, path: Path) -> dict[int, np.ndarray]:
    """Encode RGB frames (numbered from `first`, 30 fps) with the chunk encoder's lossless
    settings; the decoded frames by number."""
    from streamswap.frames import Frame
    from streamswap.video.nv import BackendChoice
    from streamswap.video.probe import VideoInfo
    from streamswap.video.sinks import EncodeSettings, FileSink

    h, w = frames[0].shape[:2]
    tb = Fraction(1, 30)
    info = VideoInfo(width=w, height=h, fps=Fraction(30), time_base=tb, frames=None, duration_s=None, codec="h264")
    sink = FileSink(path, info, EncodeSettings(encoder="x264", **LOSSLESS), BackendChoice("x264", "test"))
    for i, f in enumerate(frames):
        sink.write(Frame(first + i, first + i, tb, torch.from_numpy(f)))
    sink.close()
    got = _frames_at(path, set(range(len(frames))))
    return {first + i: got[i] for i in range(len(frames))}


def test_a_worker_killed_during_a_chunk_is_replaced_and_the_output_is_still_exact(cluster, holds, mark, short_clip,
                                                                                   tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SLOW_LITE))  # the driver finds the engine too
    options = SwapOptions(sources=(mark,), engine="slow-lite", preset="ultrafast")
    killed: list[int] = []

    def kill_during_chunk_1(task, worker):
        if task.number == 1 and not killed:  # its worker holds it 3 s (from its next batch): kill it then
            killed.append(worker["pid"])
            (holds / str(worker["pid"])).write_text("3")
            threading.Timer(0.5, os.kill, (worker["pid"], signal.SIGKILL)).start()

    out = tmp_path / "out.mp4"
    report = swap_cluster(options, str(short_clip), str(out), ClusterSettings(workers=2, chunk_s=1.0, warmup_s=0.5),
                          on_assign=kill_during_chunk_1)
    assert killed and report.retries == 1
    (entry,) = report.retry_log
    assert entry["chunk"] == 1 and "lost" in entry["error"]
    (rerun,) = [c for c in report.chunk_log if c["chunk"] == 1]
    assert rerun["worker"] != entry["worker"]  # retried on the other worker
    assert report.outputs[0].chunks_run == report.chunks_total == 3
    _check_exact(out, short_clip)
    assert killed[0] not in {w.pid for w in report.worker_stats}  # the dead process was replaced


def test_an_interrupted_job_reruns_only_the_missing_chunks(cluster, mark, short_clip, tmp_path):
    options = SwapOptions(sources=(mark,), engine="lite", preset="ultrafast")
    settings = ClusterSettings(workers=2, chunk_s=1.0, warmup_s=0.5)
    out = tmp_path / "out.mp4"

    def ctrl_c_after_the_first_chunk(p):
        if p.chunks_done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        swap_cluster(options, str(short_clip), str(out), settings, progress=ctrl_c_after_the_first_chunk)
    kept = sorted(work_dir_for(out).glob("chunk-*.json"))
    assert not out.exists() and 1 <= len(kept) < 3
    assert not [p for p in tmp_path.iterdir() if p.name != work_dir_for(out).name]  # no partial output
    deadline = time.monotonic() + 10
    while _free_cpus() < 2 and time.monotonic() < deadline:  # Ctrl-C released the workers' CPUs
        time.sleep(0.2)
    assert _free_cpus() == 2

    report = swap_cluster(options, str(short_clip), str(out), settings)
    result = report.outputs[0]
    assert result.chunks == 3 and result.chunks_reused == len(kept) and result.chunks_run == 3 - len(kept)
    _check_exact(out, short_clip)


def test_batch_over_three_inputs_with_one_already_done_processes_two(cluster, cli, mark, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), outputs.mkdir()
    for name in ("a", "b", "c"):
        make_video(inputs / f"{name}.mp4", frames=40, size=(192, 108), fps=20, audio=True)

    def batch(listing):
        (tmp_path / "list.txt").write_text("".join(f"in/{n}.mp4\n" for n in listing))
        result = cli("batch", "--source", mark, "--inputs", str(tmp_path / "list.txt"), "--output-dir", str(outputs),
                     "--engine", "lite", "--preset", "ultrafast", "--ray-address", cluster, "--chunk-seconds", "1",
                     "--json", "--quiet")
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        return report, {Path(r["input"]).name: r["status"] for r in report["outputs"]}

    _, status = batch("b")  # b finished by an earlier batch: recorded complete beside it
    assert status == {"b.mp4": "done"}
    b_bytes = (outputs / "b.mp4").read_bytes()
    report, status = batch("abc")
    assert status == {"a.mp4": "done", "b.mp4": "skipped", "c.mp4": "done"}
    assert (outputs / "b.mp4").read_bytes() == b_bytes
    assert report["chunks_run"] == report["chunks_total"] >= 2
    for name in ("a", "c"):
        _check_exact(outputs / f"{name}.mp4", inputs / f"{name}.mp4")
    assert sum(w["frames"] for w in report["worker_stats"]) == 80

    # an output that no longer matches its record (cut short here) is not done: it is made again
    (outputs / "a.mp4").write_bytes((outputs / "a.mp4").read_bytes()[:5000])
    report, status = batch("abc")
    assert status == {"a.mp4": "done", "b.mp4": "skipped", "c.mp4": "skipped"}
    _check_exact(outputs / "a.mp4", inputs / "a.mp4")
    assert sum(w["frames"] for w in report["worker_stats"]) == 40


def test_bench_scale_times_one_and_two_workers(cluster, mark, tmp_path):
    from typer.testing import CliRunner

    from streamswap.cli import app, register as _register

    _register()  # in this process: the command runs on the module's cluster instead of starting one
    clip = make_video(tmp_path / "clip.mp4", frames=40, size=(192, 108), fps=20, gop=10, audio=True)
    result = CliRunner().invoke(app, ["bench", "workers", "--input", str(clip), "--source", mark, "--workers", "1,2",
                                      "--chunk-seconds", "1", "--no-single", "--preset", "ultrafast", "--json",
                                      "--out", str(tmp_path / "scale.json")])
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.stdout)
    assert json.loads((tmp_path / "scale.json").read_text()) == report
    runs = report["runs"]
    assert [(r["workers"], r["chunks"], r["frames"]) for r in runs] == [(1, 2, 40), (2, 2, 40)]
    assert all(r["fps"] > 0 and r["processed_per_written"] > 1 for r in runs)
    assert len(runs[1]["per_worker_fps"]) == 2 and report["cluster"]["CPU"] == 2
