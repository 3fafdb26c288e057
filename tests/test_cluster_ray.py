"""Cluster jobs on a real local Ray cluster (2 CPUs, lite engine, started once for the module):
seams of a chunked nggyup.mp4 against the single-process job, a worker killed mid-chunk, an
interrupted job resumed, and `batch` / `swap --workers` through the CLI."""

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
from helpers_media import audio_packets, make_video, video_facts

ray = pytest.importorskip("ray")

from streamswap.api import (
    SwapOptions,
    load_engine_models,
    source_identity,
    swap_span,
    swap_video,
)
from streamswap.cluster.chunks import PlanSettings, index_video, plan_chunks
from streamswap.cluster.run import ClusterSettings, swap_cluster
from streamswap.cluster.workdir import work_dir_for

# Lossless x264 for the seam comparison: two encodes of the same frames then decode identically
# (measured below), so any difference left is the processing's, not the encoder's.
LOSSLESS = {"crf": 0, "preset": "ultrafast"}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module, as a job starts it (127.0.0.1 only): 2 CPUs, no
    dashboard, workers' logs not forwarded. Its workers inherit STREAMSWAP_CHUNK_DELAY: the first
    attempt of chunk 1 of any input called slow.mp4 waits 3 s (the worker-kill test's window)."""
    from streamswap.cluster.run import start_local_cluster

    os.environ["STREAMSWAP_CHUNK_DELAY"] = "slow.mp4:1:3"
    try:
        start_local_cluster(2)
    finally:
        del os.environ["STREAMSWAP_CHUNK_DELAY"]
    signal.signal(signal.SIGINT, signal.getsignal(signal.SIGINT))  # Ray takes Ctrl-C over; give it back to pytest
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def mark(shared_data) -> str:
    return str(shared_data / "images" / "mark.jpg")


@pytest.fixture(scope="module")
def short_clip(shared_data, tmp_path_factory) -> Path:
    """nggyup's first 3 s at 480x270 with a keyframe every 0.5 s, and its audio (packet copy): a
    cheaper real input for the fault and resume tests."""
    src_path = shared_data / "videos" / "nggyup.mp4"
    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    with av.open(str(src_path)) as src, av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 480, 270, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "crf": "20", "g": "15", "keyint_min": "15",
                                    "sc_threshold": "0"}
        audio_in = src.streams.audio[0]
        audio_out = out.add_stream_from_template(audio_in)
        for i, frame in enumerate(src.decode(video=0)):
            if i == 90:
                break
            f = frame.reformat(width=480, height=270, format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 30)
            for pkt in vs.encode(f):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        src.seek(0)
        for pkt in src.demux(audio_in):
            if pkt.dts is None or pkt.dts * pkt.time_base >= 3:
                continue
            pkt.stream = audio_out
            out.mux(pkt)
    return path


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


@pytest.mark.timeout(300)  # the whole of nggyup three ways (single process, 3 chunks, no warm-up): 60-90 s on 2 cores
def test_nggyup_in_three_chunks_over_two_workers_matches_the_single_process_job(cluster, mark, shared_data, tmp_path):
    src = shared_data / "videos" / "nggyup.mp4"
    options = SwapOptions(sources=(mark,), engine="lite", **LOSSLESS)
    # the reference runs to 6.7 s: past the second seam and its look-ahead, cheaper than the whole file
    single = swap_video(replace(options, end_s=6.7), str(src), str(tmp_path / "single.mp4"))
    report = swap_cluster(options, str(src), str(tmp_path / "chunked.mp4"), ClusterSettings(workers=2, chunk_s=3.0))
    assert report.chunks_total == 3 and report.workers == 2 and report.retries == 0
    assert {w.worker for w in report.worker_stats if w.chunks} == {0, 1}  # both workers ran chunks
    _check_exact(tmp_path / "chunked.mp4", src)
    assert report.frames == 289 and single.frames == 201
    with av.open(str(tmp_path / "chunked.mp4")) as c:
        assert "synthetic" in c.metadata.get("comment", "")
    assert not work_dir_for(tmp_path / "chunked.mp4").exists()  # removed once the output is complete

    seams = [90, 180]
    near = {i for s in seams for i in range(s - 4, s + 4)}
    a, b = _frames_at(tmp_path / "single.mp4", near), _frames_at(tmp_path / "chunked.mp4", near)
    diffs = [np.abs(a[i].astype(int) - b[i].astype(int)) for i in sorted(near)]
    worst_max, worst_mean = max(int(d.max()) for d in diffs), max(float(d.mean()) for d in diffs)

    # the encoder's share: the seam's input frames encoded whole and cut at the seam by the chunk
    # encoder decode identically, so the threshold below only has to absorb the processing's
    # leftovers (the tracker's filter state after its warm-up: a few levels at a few pixels)
    seam_frames = _frames_at(src, set(range(86, 94)))
    whole = _encode([seam_frames[i] for i in range(86, 94)], 86, tmp_path / "whole.mp4")
    cut = {**_encode([seam_frames[i] for i in range(86, 90)], 86, tmp_path / "cut0.mp4"),
           **_encode([seam_frames[i] for i in range(90, 94)], 90, tmp_path / "cut1.mp4")}
    noise = max(int(np.abs(whole[i].astype(int) - cut[i].astype(int)).max()) for i in whole)
    assert noise == 0
    assert worst_max <= 6 and worst_mean <= 0.01, (worst_max, worst_mean)

    # and the margin is what makes it so: the second chunk's first frames run without warm-up
    # differ from the single-process job far beyond that threshold
    ix = index_video(src)
    cold = plan_chunks(ix, PlanSettings(chunk_s=3.0, warmup_s=0.0, lookahead=0, detect_every=5))[1]
    models = load_engine_models(options, "lite", torch.device("cpu"))
    span = replace(cold.span(ix), emit_to=ix.pts[95], run_to=ix.pts[95], frames=5)
    swap_span(options, str(src), str(tmp_path / "cold.mp4"), span, models=models,
              identity=source_identity(models, options))
    c = _frames_at(tmp_path / "cold.mp4", set(range(5)))
    a = _frames_at(tmp_path / "single.mp4", set(range(90, 95)))
    cold_max = max(int(np.abs(a[90 + i].astype(int) - c[i].astype(int)).max()) for i in range(5))
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


def test_a_worker_killed_during_a_chunk_is_replaced_and_the_output_is_still_exact(cluster, mark, short_clip, tmp_path):
    options = SwapOptions(sources=(mark,), engine="lite", preset="ultrafast")
    killed: list[int] = []

    def kill_during_chunk_1(task, worker):
        if task.number == 1 and not killed:  # chunk 1 of slow.mp4 waits 3 s on its worker first: kill it then
            killed.append(worker["pid"])
            threading.Timer(0.5, os.kill, (worker["pid"], signal.SIGKILL)).start()

    slow = tmp_path / "slow.mp4"  # the name the cluster's STREAMSWAP_CHUNK_DELAY waits for
    slow.write_bytes(short_clip.read_bytes())
    out = tmp_path / "out.mp4"
    report = swap_cluster(options, str(slow), str(out), ClusterSettings(workers=2, chunk_s=1.0, warmup_s=0.5),
                          on_assign=kill_during_chunk_1)
    assert killed and report.retries == 1
    (entry,) = report.retry_log
    assert entry["chunk"] == 1 and "lost" in entry["error"]
    (rerun,) = [c for c in report.chunk_log if c["chunk"] == 1]
    assert rerun["worker"] != entry["worker"]  # retried on the other worker
    assert report.outputs[0].chunks_run == report.chunks_total == 3
    _check_exact(out, slow)
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


def test_swap_with_workers_starts_a_local_cluster_and_keeps_a_time_range_in_sync(cli, mark, tmp_path):
    clip = _clip_with_keyframes(tmp_path / "clip.mp4", frames=80, fps=20, gop=10)
    out = tmp_path / "out.mp4"
    result = cli("swap", "--source", mark, "--target", str(clip), "--output", str(out), "--engine", "lite",
                 "--preset", "ultrafast", "--workers", "2", "--chunk-seconds", "1", "--start", "0.5", "--end", "3.5",
                 "--json", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["workers"] == 2 and report["chunks_total"] == 3 and report["frames"] == 60
    assert all({"worker", "pid", "chunks", "frames", "fps"} <= set(w) for w in report["worker_stats"])
    # the same range in one process: same frames, times shifted to 0 alike, the same stretch of audio
    options = SwapOptions(sources=(mark,), engine="lite", preset="ultrafast", start_s=0.5, end_s=3.5)
    swap_video(options, str(clip), str(tmp_path / "single.mp4"))
    single, chunked = video_facts(tmp_path / "single.mp4"), video_facts(out)
    assert chunked["frames"] == single["frames"] == 60
    assert chunked["times"] == pytest.approx(single["times"], abs=1e-6) and chunked["times"][0] == 0
    assert audio_packets(out) == audio_packets(tmp_path / "single.mp4")


def _clip_with_keyframes(path: Path, *, frames: int, fps: int, gop: int) -> Path:
    """A small synthetic clip (192x108, AAC audio) with a keyframe every `gop` frames."""
    from helpers_media import pattern

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 192, 108, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        aud = out.add_stream("aac", rate=16000)
        aud.layout = "mono"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(pattern(192, 108, i), format="rgb24").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(f):
                out.mux(pkt)
        for pkt in vs.encode(None):
            out.mux(pkt)
        tone = (0.1 * np.sin(np.arange(16000 * frames // fps) / 4)).astype(np.float32)
        for k in range(0, len(tone) - 1023, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, k, Fraction(1, 16000)
            for pkt in aud.encode(af):
                out.mux(pkt)
        for pkt in aud.encode(None):
            out.mux(pkt)
    return path


def test_bench_scale_times_one_and_two_workers(cluster, mark, tmp_path):
    from typer.testing import CliRunner

    from streamswap.cli import _register, app

    _register()  # in this process: the command runs on the module's cluster instead of starting one
    clip = _clip_with_keyframes(tmp_path / "clip.mp4", frames=40, fps=20, gop=10)
    result = CliRunner().invoke(app, ["bench", "scale", "--input", str(clip), "--source", mark, "--workers", "1,2",
                                      "--chunk-seconds", "1", "--no-single", "--preset", "ultrafast", "--json",
                                      "--out", str(tmp_path / "scale.json")])
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.stdout)
    assert json.loads((tmp_path / "scale.json").read_text()) == report
    runs = report["runs"]
    assert [(r["workers"], r["chunks"], r["frames"]) for r in runs] == [(1, 2, 40), (2, 2, 40)]
    assert all(r["fps"] > 0 and r["processed_per_written"] > 1 for r in runs)
    assert len(runs[1]["per_worker_fps"]) == 2 and report["cluster"]["CPU"] == 2
