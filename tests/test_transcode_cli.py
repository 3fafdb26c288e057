"""`streamswap transcode` end to end: the real CLI in a subprocess, real decoder and encoder, on
the shared videos and on generated ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

import av

from conftest import start_cli
from helpers_media import audio_packets, video_facts
from streamswap.bench.media import make_video

REPO = Path(__file__).resolve().parents[1]

FAST = ("--preset", "ultrafast")


def _report(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", ["nggyup.mp4", "dirtydancing.mp4"])
def test_transcode_keeps_frames_rate_duration_and_audio_packets(cli, shared_data, tmp_path, name):
    src = shared_data / "videos" / name
    out = tmp_path / "out.mp4"
    report = _report(cli("transcode", str(src), str(out), *FAST, "--json", "-q"))
    a, b = video_facts(src), video_facts(out)
    assert b["frames"] == a["frames"] == report["frames_out"]
    assert b["fps"] == a["fps"] and (b["width"], b["height"]) == (a["width"], a["height"])
    assert abs(b["duration"] - a["duration"]) <= 1 / float(a["fps"]) + 1e-6
    audio_in, audio_out = audio_packets(src), audio_packets(out)
    assert len(audio_in) > 300 and audio_out == audio_in  # byte for byte, not re-encoded
    assert report["audio_packets"] == len(audio_in)
    stages = {s["name"]: s for s in report["graph"]["stages"]}
    assert set(stages) == {"decode", "encode"} and stages["encode"]["items"] == a["frames"]
    # auto choice: PyAV + x264 here; NVDEC and NVENC (or x264 "... has no NVENC") on a GPU box
    assert report["decoder"]["backend"] in ("pyav", "nvdec") and report["decoder"]["reason"]
    assert report["encoder"]["backend"] in ("x264", "nvenc") and report["encoder"]["reason"]
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed


def test_dance_without_audio_transcodes_at_its_own_size(cli, shared_data, tmp_path):
    src = shared_data / "videos" / "dance.mp4"
    out = tmp_path / "dance.mkv"
    proc = cli("transcode", str(src), str(out), *FAST)
    assert proc.returncode == 0, proc.stderr
    a, b = video_facts(src), video_facts(out)
    assert (b["width"], b["height"]) == (a["width"], a["height"]) == (464, 560)
    assert b["frames"] == a["frames"] == 66 and b["audio"] == 0
    assert "66/66" in proc.stderr and "done" in proc.stderr  # progress and summary went to stderr


def test_variable_frame_rate_input_keeps_its_timestamps(cli, tmp_path):
    tb = Fraction(1, 1000)
    steps = [33, 33, 100, 20, 20, 250, 40, 33, 67, 33] * 4
    pts = [0]
    for s in steps:
        pts.append(pts[-1] + s)
    src = make_video(tmp_path / "vfr.mp4", pts=pts, time_base=tb, fps=30)
    out = tmp_path / "out.mp4"
    assert cli("transcode", str(src), str(out), *FAST).returncode == 0
    t_in, t_out = video_facts(src)["times"], video_facts(out)["times"]
    assert len(t_out) == len(t_in) == len(pts)
    assert max(abs(x - y) for x, y in zip(t_in, t_out)) < 0.020  # within a frame (shortest: 20 ms)
    assert t_out[6] - t_out[5] == pytest.approx(0.250, abs=0.002)  # the long gap survived


def test_odd_frame_size_is_padded_by_one_pixel(cli, tmp_path):
    src = make_video(tmp_path / "odd.mkv", frames=12, size=(161, 121), codec="ffv1")
    out = tmp_path / "out.mp4"
    report = _report(cli("transcode", str(src), str(out), *FAST, "--json", "-q"))
    facts = video_facts(out)
    assert (facts["width"], facts["height"]) == (162, 122) and facts["frames"] == 12
    assert report["padded"] and any("padded" in n for n in report["notes"])


def test_rotated_input_comes_out_upright(cli, tmp_path):
    src = make_video(tmp_path / "rot.mp4", frames=5, size=(160, 96), rotation=90)
    out = tmp_path / "out.mp4"
    assert cli("transcode", str(src), str(out), *FAST).returncode == 0
    facts = video_facts(out)
    assert (facts["width"], facts["height"]) == (96, 160) and facts["rotation"] == 0


def test_existing_output_is_refused_without_overwrite(cli, shared_data, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    proc = cli("transcode", str(shared_data / "videos" / "dance.mp4"), str(out), *FAST)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr and out.read_bytes() == b"keep me"
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("transcode", str(shared_data / "videos" / "dance.mp4"), str(out), *FAST, "--overwrite", "-q")
    assert proc.returncode == 0 and video_facts(out)["frames"] == 66


def test_output_equal_to_input_is_refused_however_spelled(cli, tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=5)
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mp4").symlink_to(src)
    for spelling in (str(src), str(tmp_path / "sub" / ".." / "a.mp4"), str(tmp_path / "link.mp4")):
        proc = cli("transcode", str(src), spelling, "--overwrite")
        assert proc.returncode == 2 and "is the input" in proc.stderr, (spelling, proc.stderr)
    assert src.read_bytes() == before


def _damaged_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = make_video(tmp_path / "good.mp4", frames=40)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    cut = tmp_path / "cut.mp4"  # moov (the index) comes last: cutting the file loses it
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    audio_only = tmp_path / "audio.m4a"
    import numpy as np
    with av.open(str(audio_only), "w") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f):
                c.mux(p)
    odd_codec = tmp_path / "odd.avi"  # a fourcc no decoder knows
    tmp = make_video(tmp_path / "m4.avi", frames=5, codec="mpeg4")
    odd_codec.write_bytes(tmp.read_bytes().replace(b"FMP4", b"ZZZZ"))
    return {
        "missing": (tmp_path / "nope.mp4", "does not exist"),
        "empty": (empty, "empty"),
        "directory": (tmp_path, "directory"),
        "not a video": (text, "cannot read"),
        "truncated without index": (cut, "truncated"),
        "no video stream": (audio_only, "no video stream"),
        "unsupported codec": (odd_codec, "not supported"),
    }


def test_unusable_inputs_get_one_line_errors(cli, tmp_path):
    for what, (path, words) in _damaged_inputs(tmp_path).items():
        proc = cli("transcode", str(path), str(tmp_path / "out.mp4"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (what, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (what, lines)
        assert not (tmp_path / "out.mp4").exists()


def test_truncated_streaming_mp4_processes_what_decodes_and_warns(cli, tmp_path):
    good = make_video(tmp_path / "good.mp4", frames=60, faststart=True, audio=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.6)])
    out = tmp_path / "out.mp4"
    report = _report(cli("transcode", str(cut), str(out), *FAST, "--json", "-q"))
    n = video_facts(out)["frames"]
    assert 10 < n < 60 and report["frames_out"] == n
    assert report["warnings"] and "ended early" in report["warnings"][0] and "of 60" in report["warnings"][0]


@pytest.mark.parametrize("stage", ["decode", "encode"])
def test_a_failing_stage_stops_quickly_keeps_a_valid_output_and_is_named(cli, shared_data, tmp_path, stage):
    out = tmp_path / "out.mp4"
    proc = cli("transcode", str(shared_data / "videos" / "nggyup.mp4"), str(out), *FAST, "--json", "-q",
               env={"STREAMSWAP_FAULT": f"{stage}:60"})
    assert proc.returncode == 5
    assert f"stage '{stage}' failed at item 60" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "failed" and report["graph"]["failed_stage"] == stage
    assert report["graph"]["stop_latency_s"] < 2.0
    assert not out.exists() and report["output"] == str(tmp_path / "out.partial.mp4")  # never the final name
    out = tmp_path / "out.partial.mp4"
    facts = video_facts(out)  # a playable file ...
    assert 60 - 10 <= facts["frames"] <= 60  # ... with about 60 frames (those still queued are dropped)
    assert facts["frames"] == report["frames_out"]
    # audio stops with the video, not at the end of the input
    assert len(audio_packets(out)) < len(audio_packets(shared_data / "videos" / "nggyup.mp4")) * 0.4


def test_ctrl_c_finalises_a_playable_output_and_exits_130(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=250, size=(320, 180), fps=25, audio=True)
    out = tmp_path / "out.mp4"
    proc = start_cli("transcode", str(src), str(out), *FAST, "--realtime", "--json")
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # about 35 frames at the input's own pace
    proc.send_signal(signal.SIGINT)
    report, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "valid up to frame" in err and "out.partial.mp4" in err
    report = json.loads(report)
    assert report["status"] == "interrupted" and report["graph"]["stop_latency_s"] < 2.0
    assert report["error"] == "interrupted by Ctrl-C (SIGINT)"
    assert not out.exists()  # a stopped file job never takes the final name
    facts = video_facts(tmp_path / "out.partial.mp4")
    assert 10 <= facts["frames"] < 250 and facts["frames"] == report["frames_out"] and facts["audio"] == 1
    assert not list(tmp_path.glob(".*"))  # nothing left hidden


def _peak_rss_mib(*args: str) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "streamswap", "transcode", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read() if proc.stderr else ""
    return usage.ru_maxrss / 1024  # KiB on Linux


def test_memory_stays_flat_for_a_long_video(tmp_path):
    # 200 s of 180p at 10 fps (2000 frames) vs 30 seconds: peak RSS within 45 MiB. The bound per
    # extra frame is what 150 MiB over 5700 extra frames was (27 KiB, a sixth of one decoded 180p
    # frame), so a per-frame leak this catches is the one 10 minutes caught. Measured growth at
    # 360p: 0-4 MiB (1500 vs 300 frames); queues are bounded, so their peak does not grow with
    # length. 180p, not 360p: the same frame count in a quarter of the time.
    long = make_video(tmp_path / "long.mp4", frames=2000, size=(320, 180), fps=10, audio=True)
    short = make_video(tmp_path / "short.mp4", frames=300, size=(320, 180), fps=10, audio=True)
    rss_short = _peak_rss_mib(str(short), str(tmp_path / "s.mp4"), *FAST, "-q")
    rss_long = _peak_rss_mib(str(long), str(tmp_path / "l.mp4"), *FAST, "-q")
    with av.open(str(tmp_path / "l.mp4")) as c:
        assert c.streams.video[0].frames == 2000
    assert rss_long - rss_short < 45, (rss_short, rss_long)
