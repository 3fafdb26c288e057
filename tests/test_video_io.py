"""Sources and sinks in-process: timestamps, rotation, images, pacing, sink finalisation and
the preview window's display check."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from helpers_media import video_facts
from streamswap.bench.media import make_video
from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.video.nv import BackendChoice
from streamswap.video.probe import classify
from streamswap.video.sinks import EncodeSettings, FileSink, PreviewSink, display_problem
from streamswap.video.sources import ImageSource, PyAVFileSource, SourceOptions, open_source

X264 = BackendChoice("x264", "test")


def test_file_source_keeps_every_frame_with_its_pts_and_time_base(shared_data):
    path = shared_data / "videos" / "nggyup.mp4"
    with av.open(str(path)) as c:
        ref = [(f.pts, f.time_base) for f in c.decode(video=0)]
    src = open_source(path)
    frames = list(src)
    src.close()
    assert src.choice.backend == "pyav" and "CPU" in src.choice.reason
    assert [(f.pts, f.time_base) for f in frames] == ref and len(frames) == 289
    assert [f.index for f in frames] == list(range(289))
    img = frames[100].image
    assert img.shape == (720, 1280, 3) and img.dtype == torch.uint8 and img.device.type == "cpu"
    assert src.info.frames == 289 and src.info.fps == 30 and src.info.has_audio and not src.live
    assert src.warnings == []


def test_rotation_metadata_is_applied_counter_clockwise(tmp_path):
    pic = np.zeros((96, 160, 3), np.uint8)
    pic[:16, :16] = (255, 0, 0)  # red mark in the top-left corner of the stored picture
    path = make_video(tmp_path / "r.mp4", frames=3, size=(160, 96), rotation=90, images=[pic])
    src = open_source(path)
    frame = next(iter(src))
    src.close()
    assert src.info.rotation == 90 and (src.info.width, src.info.height) == (96, 160)
    img = frame.image.numpy()
    assert img.shape == (160, 96, 3)
    # turned 90 degrees counter-clockwise, the top-left corner ends at the bottom-left
    assert img[-12:, :12, 0].mean() > 200 and img[-12:, :12, 1].mean() < 60
    assert img[:12, :12, 0].mean() < 60


def test_still_image_is_a_one_frame_source_in_rgb(tmp_path):
    bgr = np.zeros((30, 40, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    src = open_source(path)
    assert isinstance(src, ImageSource) and classify(str(path)) == "image"
    frames = list(src)
    assert len(frames) == 1 and frames[0].image.shape == (30, 40, 3)
    assert frames[0].image[..., 0].float().mean() == 200 and frames[0].image[..., 2].float().mean() == 0
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg" * 10)
    with pytest.raises(InputError, match="cannot read .* as an image"):
        open_source(bad)


def test_inputs_are_classified():
    assert classify("rtsp://cam.local/stream") == "network"
    assert classify("https://example.org/live.m3u8") == "network"
    assert classify("/dev/video0") == "webcam" and classify("webcam:1") == "webcam"
    assert classify("clip.MP4") == "file" and classify("face.JPG") == "image"


def test_missing_webcam_is_an_input_error():
    with pytest.raises(InputError, match="no webcam at /dev/video97"):
        open_source("/dev/video97")


def test_paced_file_source_delivers_at_the_native_rate(tmp_path):
    path = make_video(tmp_path / "p.mp4", frames=10, fps=25)
    src = PyAVFileSource(str(path), SourceOptions(pace=True), BackendChoice("pyav", "t"))
    t0 = time.monotonic()
    n = sum(1 for _ in src)
    assert n == 10 and 0.33 <= time.monotonic() - t0 < 1.0  # 9 frame intervals of 40 ms


def test_max_frames_stops_the_source_early(shared_data):
    src = open_source(shared_data / "videos" / "dance.mp4", SourceOptions(max_frames=7))
    assert len(list(src)) == 7 and src.warnings == []


def _frame(i: int, w: int = 64, h: int = 48) -> Frame:
    return Frame(i, i, Fraction(1, 25), torch.full((h, w, 3), i * 10 % 256, dtype=torch.uint8))


def test_sink_finalises_after_an_error_as_a_partial_file(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=50, size=(64, 48), audio=True)
    info = open_source(src).info
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier complete output")
    sink = FileSink(out, info, EncodeSettings(preset="ultrafast"), X264, audio_from=str(src), overwrite=True)
    assert sink.tmp.parent == out.parent and sink.tmp.suffix == ".mp4" and sink.tmp.name.startswith(".out.")
    for i in range(20):
        sink.write(_frame(i))
    sink.close(RuntimeError("a stage failed"))
    assert out.read_bytes() == b"an earlier complete output"  # untouched: the new one is not complete
    partial = tmp_path / "out.partial.mp4"
    assert partial.exists() and not sink.tmp.exists() and sink.report.path == str(partial)
    assert not sink.report.complete
    assert partial.stat().st_mode & 0o777 == 0o666 & ~_umask()  # ordinary permissions, not mkstemp's 0600
    facts = video_facts(partial)
    assert facts["frames"] == 20
    with av.open(str(partial)) as c:  # audio stops near the last frame (0.8 s), not at the input's end (2 s)
        last = max(float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None)
    assert 0.6 < last < 1.0


def _umask() -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith("Umask:")).split()[1], 8)


def test_a_complete_sink_replaces_the_output_and_supersedes_nothing_else(tmp_path):
    info = open_source(make_video(tmp_path / "in.mp4", frames=3)).info
    out = tmp_path / "out.mp4"
    sink = FileSink(out, info, EncodeSettings(preset="ultrafast"), X264)
    for i in range(5):
        sink.write(_frame(i))
    sink.close(None)
    assert video_facts(out)["frames"] == 5 and sink.report.complete and sink.report.path == str(out)
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert not list(tmp_path.glob(".*"))


def test_sink_without_frames_leaves_no_file(tmp_path):
    info = open_source(make_video(tmp_path / "in.mp4", frames=3)).info
    sink = FileSink(tmp_path / "out.mp4", info, EncodeSettings(), X264)
    sink.close(RuntimeError("failed before the first frame"))
    assert list(tmp_path.glob("out*")) == [] and not sink.tmp.exists()


def test_sink_refuses_unusable_output_paths(tmp_path):
    info = open_source(make_video(tmp_path / "in.mp4", frames=3)).info
    with pytest.raises(InputError, match="output folder .* does not exist"):
        FileSink(tmp_path / "no" / "out.mp4", info, EncodeSettings(), X264)
    with pytest.raises(InputError, match="use a video suffix"):
        FileSink(tmp_path / "out.nosuchformat", info, EncodeSettings(), X264)
    (tmp_path / "taken.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match="--overwrite"):
        FileSink(tmp_path / "taken.mp4", info, EncodeSettings(), X264)
    with pytest.raises(InputError, match="crf"):
        EncodeSettings(crf=60)
    with pytest.raises(InputError, match="preset"):
        EncodeSettings(preset="warp")
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_sink_rejects_a_frame_size_change(tmp_path):
    info = open_source(make_video(tmp_path / "in.mp4", frames=3)).info
    sink = FileSink(tmp_path / "out.mp4", info, EncodeSettings(preset="ultrafast"), X264)
    sink.write(_frame(0))
    with pytest.raises(RuntimeError, match="frame size changed"):
        sink.write(_frame(1, w=32))
    sink.close(None)
    assert video_facts(tmp_path / "out.mp4")["frames"] == 1


def test_preview_needs_a_display_and_a_gui_opencv():
    assert "no display" in display_problem(env={}, build_info="GUI: GTK3", platform="linux")
    headless = "  GUI:                           NONE\n"
    assert "opencv-python-headless" in display_problem(env={"DISPLAY": ":0"}, build_info=headless, platform="linux")
    assert display_problem(env={"DISPLAY": ":0"}, build_info="  GUI: GTK3\n", platform="linux") is None
    if display_problem() is not None:  # this machine: no display, headless OpenCV
        with pytest.raises(InputError, match="cannot open a preview window"):
            PreviewSink()
