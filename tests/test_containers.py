"""Every output container gets an encoder it accepts (H.264 where it can go, VP9 for WebM) or is
refused before any work with one line that says what to use; audio the container cannot hold
is skipped with a note, audio it can hold (Opus into WebM) is copied. Through the real CLI."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from helpers_media import audio_packets, video_facts
from streamswap.bench.media import make_video
from streamswap.errors import InputError
from streamswap.video.containers import video_encoder_for

FAST = ("--preset", "ultrafast")
HAS_VP9 = "libvpx-vp9" in av.codecs_available


def _codec(path: Path) -> str:
    with av.open(str(path)) as c:
        return c.streams.video[0].codec_context.name


def _one_error_line(stderr: str, *words: str) -> None:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def opus_video(path: Path, frames: int = 25) -> Path:
    """H.264 + Opus in Matroska (Opus is what WebM can carry)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 160, 96, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast"}
        a = out.add_stream("libopus", rate=48000)
        a.layout = "mono"
        tone = (0.1 * np.sin(np.arange(960) * 0.05)).astype(np.float32)[None]
        sample = 0
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(np.full((96, 160, 3), i * 8, np.uint8), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            for p in vs.encode(vf):
                out.mux(p)
            while sample < (i + 1) * 48000 / 25:
                af = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = 48000, sample, Fraction(1, 48000)
                for p in a.encode(af):
                    out.mux(p)
                sample += 960
        for p in [*vs.encode(None), *a.encode(None)]:
            out.mux(p)
    return path


def first_frames(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of `src` (and its audio over that time), packets copied: the very
    frames of the original without a transcode CLI run (nggyup.mp4 has no B-frames, so the
    packets before a time are the frames before it)."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        video = c.streams.video[0]
        end = Fraction(frames) / video.average_rate
        streams = [video, *c.streams.audio[:1]]
        outs = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in c.demux(streams):
            if packet.dts is None or packet.dts * packet.time_base >= end:
                continue
            packet.stream = outs[packet.stream.index]
            out.mux(packet)
    return dst


def test_each_container_gets_an_encoder_it_takes():
    for suffix in (".mp4", ".mkv", ".mov", ".avi", ".ts", ".flv"):
        assert video_encoder_for(f"out{suffix}").codec == "libx264", suffix
    if HAS_VP9:
        assert video_encoder_for("out.webm").codec == "libvpx-vp9"
    for bad in ("out.gif", "out.ogv", "out.y4m", "out"):
        with pytest.raises(InputError, match=r"\.mp4, \.mkv, \.mov or \.webm"):
            video_encoder_for(bad)


@pytest.mark.skipif(not HAS_VP9, reason="this PyAV build has no VP9 encoder")
def test_nvenc_gives_way_to_the_containers_own_encoder_where_h264_cannot_go():
    from streamswap.video.containers import choose_file_encoder
    from streamswap.video.nv import BackendChoice

    nvenc = BackendChoice("nvenc", "NVENC on a GPU")
    enc, choice = choose_file_encoder("out.mp4", nvenc)
    assert enc.codec == "libx264" and choice is nvenc  # H.264 fits: NVENC (or x264) as chosen
    enc, choice = choose_file_encoder("out.webm", nvenc)
    assert enc.codec == "libvpx-vp9" and choice.backend == "vp9" and "NVENC writes H.264 only" in choice.reason


@pytest.mark.parametrize("suffix", [".webm", ".avi"])
def test_transcode_writes_a_playable_file_in_the_container_asked_for(cli, tmp_path, suffix):
    if suffix == ".webm" and not HAS_VP9:
        pytest.skip("this PyAV build has no VP9 encoder")
    src = make_video(tmp_path / "in.mp4", frames=30, size=(160, 96), audio=True)  # AAC audio
    out = tmp_path / f"out{suffix}"
    proc = cli("transcode", str(src), str(out), *FAST, "--json", "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    facts = video_facts(out)
    assert facts["frames"] == report["frames_out"] == 30
    assert (facts["width"], facts["height"]) == (160, 96)
    if suffix == ".webm":
        assert _codec(out) == "vp9" and report["encoder"]["backend"] == "vp9"
        assert "webm" in report["encoder"]["reason"]
        # WebM holds Opus/Vorbis only: the AAC track is skipped, with a note
        assert facts["audio"] == 0 and any("aac" in n and "not copied" in n for n in report["notes"])
    else:
        assert _codec(out) == "h264" and facts["audio"] == 1
        assert audio_packets(out) == audio_packets(src)


@pytest.mark.skipif(not HAS_VP9, reason="this PyAV build has no VP9 encoder")
def test_opus_audio_is_copied_into_webm(cli, tmp_path):
    src = opus_video(tmp_path / "in.mkv")
    out = tmp_path / "out.webm"
    proc = cli("transcode", str(src), str(out), *FAST, "--json", "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["notes"] == [] and report["audio_packets"] > 0
    assert video_facts(out)["frames"] == 25 and _codec(out) == "vp9"
    assert audio_packets(out) == audio_packets(src)


@pytest.mark.skipif(not HAS_VP9, reason="this PyAV build has no VP9 encoder")
def test_a_lite_swap_writes_a_playable_webm(cli, shared_data, tmp_path):
    clip = first_frames(shared_data / "videos" / "nggyup.mp4", tmp_path / "clip.mp4", 12)
    out = tmp_path / "swapped.webm"
    proc = cli("swap", "-s", str(shared_data / "images" / "mark.jpg"), "-t", str(clip), "-o", str(out),
               "--engine", "lite", *FAST, "--json", "-q", timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == 12 and report["frames_swapped"] > 0
    assert video_facts(out)["frames"] == 12 and _codec(out) == "vp9"
    with av.open(str(out)) as c:
        assert any("synthetic" in v.lower() for v in c.metadata.values())


@pytest.mark.parametrize("command", ["transcode", "swap"])
def test_an_unsupported_container_is_refused_before_any_work(cli, shared_data, tmp_path, command):
    src = make_video(tmp_path / "in.mp4", frames=10, size=(160, 96))
    before = set(tmp_path.iterdir())
    for out, words in ((tmp_path / "out.gif", (".gif", "use a video suffix such as .mp4, .mkv, .mov or .webm")),
                       (tmp_path / "out.png", ("image file", "input is a video"))):
        if command == "transcode":
            proc = cli("transcode", str(src), str(out), "--json", timeout=60)
        else:
            proc = cli("swap", "-s", str(shared_data / "images" / "mark.jpg"), "-t", str(src), "-o", str(out),
                       "--engine", "lite", "--json", timeout=60)
        assert proc.returncode == 2, proc.stderr
        _one_error_line(proc.stderr, *words)
        assert proc.stdout == ""  # no report: nothing ran
        assert set(tmp_path.iterdir()) == before  # no output, no temporary file


@pytest.mark.skipif(not HAS_VP9, reason="this PyAV build has no VP9 encoder")
def test_a_distributed_swap_refuses_a_container_its_h264_chunks_cannot_go_into(cli, shared_data, tmp_path):
    pytest.importorskip("ray")
    src = make_video(tmp_path / "in.mp4", frames=10, size=(160, 96))
    proc = cli("swap", "-s", str(shared_data / "images" / "mark.jpg"), "-t", str(src), "-o", str(tmp_path / "out.webm"),
               "--engine", "lite", "--workers", "1", timeout=60)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc.stderr, "H.264 chunks", ".webm", "without --workers")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
