"""`streamswap live` through the real CLI: a file read at its frame rate, and an RTSP stream
published on loopback. Frames out + frames dropped = frames in, and the latency is reported."""

from __future__ import annotations

import json
import threading
import time

from helpers_media import video_facts
from test_video_rtsp import rtsp_server  # noqa: F401 - the loopback RTSP server fixture

from streamswap.bench.media import scaled_loop
from streamswap.frames import Frame
from streamswap.stream import Graph, Sink, Source
from streamswap.video.sinks import EncodeSettings, NetworkSink
from streamswap.video.sources import SourceOptions, open_source


def _check_accounting(report: dict, out) -> None:
    assert report["frames_in"] == report["frames"] + report["dropped"], report
    assert report["latency_p95_s"] is not None and report["latency_p95_s"] > 0
    assert video_facts(out)["frames"] == report["frames"]


def test_live_on_a_paced_file_accounts_for_every_frame(shared_data, tmp_path, cli):
    out = tmp_path / "live.mp4"
    result = cli("live", "-s", str(shared_data / "images" / "mark.jpg"), "-i", str(shared_data / "videos" / "dance.mp4"),
                 "-o", str(out), "--engine", "lite", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames_in"] == 66
    _check_accounting(report, out)
    assert report["frames_swapped"] > 0
    assert "latency p95" in result.stderr and "dropped" in result.stderr


def test_live_reads_an_rtsp_stream_on_loopback(rtsp_server, shared_data, tmp_path, cli):  # noqa: F811
    client_port, source_port = rtsp_server
    # nggyup.mp4's first 2 s at 640x360, looped: the publisher here and the live job each encode
    # and decode it a quarter as dearly as at 720p
    video = scaled_loop(shared_data / "videos" / "nggyup.mp4", tmp_path / "small.mp4", seconds=2, size=(640, 360),
                        fps=30)
    first = open_source(video, SourceOptions())
    info = first.info
    first.close()

    def looped():  # the clip over and over, paced, with increasing timestamps, until stopped
        offset = 0
        for _ in range(50):  # 100 s at most, as the 9.6 s clip 10 times
            src = open_source(video, SourceOptions(pace=True))
            last = 0
            for f in src:
                last = f.pts
                yield Frame(f.index, f.pts + offset, f.time_base, f.image)
            src.close()
            offset += last + 1

    sink = NetworkSink(f"rtsp://127.0.0.1:{source_port}/live", info, EncodeSettings(preset="ultrafast"))
    publisher = Graph(Source("decode", looped()), [], Sink("publish", sink.write, sink.close))
    thread = threading.Thread(target=publisher.run, daemon=True)
    thread.start()
    time.sleep(1.0)  # let the publisher announce the stream
    out = tmp_path / "from_rtsp.mp4"
    result = cli("live", "-s", str(shared_data / "images" / "mark.jpg"), "-i", f"rtsp://127.0.0.1:{client_port}/live",
                 "--rtsp-transport", "udp", "-o", str(out), "--max-frames", "40", "--engine", "lite", "--json",
                 "--quiet", timeout=120)
    publisher.interrupt()
    thread.join(10)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frames_in"] == 40
    _check_accounting(report, out)


def test_live_needs_exactly_one_output(shared_data, cli):
    mark = str(shared_data / "images" / "mark.jpg")
    for args in ([], ["--preview", "-o", "x.mp4"]):
        result = cli("live", "-s", mark, "-i", "0", *args)
        assert result.returncode == 2 and "choose one output" in result.stderr.strip().splitlines()[-1]
    cam = cli("live", "-s", mark, "-i", str(shared_data / "videos" / "dance.mp4"), "--virtual-cam", "--engine", "lite")
    assert cam.returncode == 2 and "cannot feed a virtual camera" in cam.stderr and "Traceback" not in cam.stderr


def test_virtual_camera_needs_pyvirtualcam_and_a_loopback_device():
    import importlib.util

    from streamswap.video.sinks import virtual_cam_problem

    if importlib.util.find_spec("pyvirtualcam") is None:
        assert "pyvirtualcam" in virtual_cam_problem()
    else:
        assert "v4l2loopback" in virtual_cam_problem(devices=["Integrated Camera"])
        assert virtual_cam_problem(devices=["Dummy video device (0x0000)"]) is None


def test_live_swap_api_stops_cleanly_from_another_thread(shared_data, tmp_path):
    from streamswap import LiveSwap, SwapOptions

    out = tmp_path / "stopped.mp4"
    job = LiveSwap(SwapOptions(sources=(str(shared_data / "images" / "mark.jpg"),), engine="lite"),
                   str(shared_data / "videos" / "nggyup.mp4"), str(out))
    threading.Timer(4.0, job.stop).start()
    t0 = time.monotonic()
    report = job.run()
    assert time.monotonic() - t0 < 9.0  # the 9.6 s file was cut short
    assert 0 < report.frames_in < 289
    _check_accounting(report.__dict__, out)
