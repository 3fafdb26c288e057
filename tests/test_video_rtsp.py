"""A live round trip on loopback: publish a shared video to a local RTSP server (Debian's
rtsp-server-perl) with the RTSP sink, read it back with the live source, check frames arrive in
order with bounded latency."""

from __future__ import annotations

import fcntl
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamswap.errors import InputError, PipelineError
from streamswap.stream import Graph, Sink, Source, Stage, StopPipeline
from streamswap.video.sinks import EncodeSettings, NetworkSink
from streamswap.video.sources import SourceOptions, open_source

SERVER = shutil.which("rtsp-server-perl")
# Two rtsp-server-perl instances at once break each other (seen under pytest -n 2: a publisher's
# ANNOUNCE fails with "Invalid data"), so a server is started only while holding this lock.
LOCK = Path(tempfile.gettempdir()) / "streamswap-tests-rtsp.lock"
BITS, BLOCK = 12, 32  # frame index written as a row of 32x32 black/white blocks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rtsp_server():
    """A fresh server per test (a bad publish request can take it down), on free ports."""
    if SERVER is None:
        pytest.skip("rtsp-server-perl is not installed (apt-get install rtsp-server-perl)")
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one server at a time, across pytest-xdist workers (released on close)
        client, source = _free_port(), _free_port()
        proc = subprocess.Popen([SERVER, "--clientport", str(client), "--serverport", str(source),
                                 "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                                 "--rtp_start_port", str(20000 + source % 20000)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", source), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        pytest.fail("rtsp-server-perl did not start")
                    time.sleep(0.05)
            yield client, source
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for(condition, what: str, timeout_s: float = 20.0) -> None:
    """Poll `condition` until it holds; fail (never hang) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def _stamp(frame):
    img = frame.image.clone()
    for b in range(BITS):
        img[:BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if (frame.index >> b) & 1 else 0
    return frame.with_image(img)


def _read_stamp(img) -> int:
    m = BLOCK // 4
    return sum(1 << b for b in range(BITS)
               if img[m:BLOCK - m, b * BLOCK + m:(b + 1) * BLOCK - m].float().mean() > 128)


def test_rtsp_round_trip_delivers_frames_in_order_with_low_latency(rtsp_server, shared_data):
    client_port, source_port = rtsp_server
    published: dict[int, float] = {}

    # published at half size (640x360): what is measured is the transport's latency, and on a
    # loaded 2-core CI machine encoding and decoding 720p in real time beside another test's work
    # fell behind (latency grew steadily to 1.1 s) although the transport kept up
    reading_done = threading.Event()

    def stamp(batch):
        if reading_done.is_set():  # the reader has its samples: stop publishing
            raise StopPipeline
        out = [_stamp(f.with_image(f.image[::2, ::2].contiguous())) for f in batch]
        for f in batch:
            published[f.index] = time.monotonic()
        return out

    # the clip is published looped (indices and timestamps running on) until the reader has its
    # samples: seen on a loaded CI run, a reader still short of them when a single pass of the
    # clip ended met the end of the stream and failed reconnecting to the gone publisher
    video = shared_data / "videos" / "nggyup.mp4"
    loops = 3  # 29 s of video at most; the reader's watchdog stops it after 20 s
    probe = open_source(video)
    probe.close()
    last = loops * 289 - 1  # nggyup has 289 frames
    step = round(1 / (probe.info.fps * probe.info.time_base))  # pts units per frame

    def looped():
        for n in range(loops):
            src = open_source(video, SourceOptions(pace=True))
            try:
                for f in src:
                    yield replace(f, index=f.index + n * 289, pts=f.pts + n * 289 * step)
            finally:
                src.close()

    half = replace(probe.info, width=probe.info.width // 2, height=probe.info.height // 2)
    sink = NetworkSink(f"rtsp://127.0.0.1:{source_port}/live", half, EncodeSettings(preset="ultrafast"))
    frames = looped()
    publisher = Graph(Source("decode", frames, frames.close), [Stage("stamp", stamp)],
                      Sink("publish", sink.write, sink.close))
    pub_thread = threading.Thread(target=publisher.run, daemon=True)
    pub_thread.start()
    _wait_for(lambda: len(published) >= 10, "the publisher's first frames")

    live = open_source(f"rtsp://127.0.0.1:{client_port}/live",
                       SourceOptions(transport="udp", read_timeout_s=2, reconnect=0))
    assert live.live and (live.info.width, live.info.height) == (640, 360)
    received: list[tuple[int, float]] = []
    # steady state: from 1 s after the first frame arrived (the server starts a reader at its last
    # keyframe, so the first frames are old by design). The reader's start point depends on how
    # long opening took, so stop on a count of samples, not on a frame index; judged on the last
    # `wanted` of 3x as many, once a start-up backlog or a burst of load has drained (on loaded
    # CI-like runs: a backlog that took over 1 s, and a 1.4-s burst 2 s into the window)
    wanted = 60

    def steady() -> list[tuple[int, float]]:
        return [(i, t) for i, t in received if t >= received[0][1] + 1.0]

    def collect(frame):
        received.append((_read_stamp(frame.image), time.monotonic()))
        if received[-1][0] >= last - 1 or (received[-1][1] >= received[0][1] + 1.0 and len(steady()) >= 3 * wanted):
            raise StopPipeline

    reader = Graph(Source("rtsp", live, live.close), [], Sink("show", collect, queue_size=2), mode="live")
    watchdog = threading.Timer(20, reader.interrupt)
    watchdog.start()
    stats = reader.run()
    watchdog.cancel()
    reading_done.set()
    pub_thread.join(10)

    assert stats.state == "stopped"
    indices = [i for i, _ in received]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert len(received) >= 0.8 * (indices[-1] - indices[0])  # few lost on loopback
    # median and 95th percentile. Seen on CI-like loaded 2-core runs: a start-up backlog of 1.3 s,
    # then isolated spikes to 0.93 s with a median of 0.085 s; a reader that falls behind shows as
    # a rising p95, not a spike
    latency = np.array([t - published[i] for i, t in steady()[-wanted:]])
    assert len(latency) >= wanted, len(latency)
    assert np.median(latency) < 0.3 and np.percentile(latency, 95) < 1.0, latency.round(3).tolist()


def test_rtsp_sink_refuses_an_unreachable_server_quickly(shared_data):
    src = open_source(shared_data / "videos" / "dance.mp4")
    src.close()
    t0 = time.monotonic()
    with pytest.raises(InputError, match="cannot reach the RTSP server at 127.0.0.1:"):
        NetworkSink(f"rtsp://127.0.0.1:{_free_port()}/x", src.info, EncodeSettings(), connect_timeout_s=1)
    assert time.monotonic() - t0 < 2


def test_live_source_retries_with_back_off_then_gives_up():
    opts = SourceOptions(reconnect=2, backoff_s=0.1, backoff_max_s=1.0, open_timeout_s=1)
    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"cannot open rtsp://127\.0\.0\.1:\d+/x after 3 attempt\(s\)"):
        open_source(f"rtsp://127.0.0.1:{_free_port()}/x", opts)
    assert 0.3 <= time.monotonic() - t0 < 5  # waited 0.1 + 0.2 s between the attempts


def test_live_source_reconnects_when_the_stream_comes_back(rtsp_server, shared_data):
    client_port, source_port = rtsp_server
    sent = {"first": 0}
    running: dict[str, Graph] = {}
    finished = threading.Event()

    def publish(offset: int, frames: int) -> None:
        src = open_source(shared_data / "videos" / "dance.mp4", SourceOptions(pace=True, max_frames=frames))
        sink = NetworkSink(f"rtsp://127.0.0.1:{source_port}/live", src.info,
                           EncodeSettings(preset="ultrafast", gop=5))

        def stamp(batch):
            sent["first"] += len(batch) if offset == 0 else 0
            return [_stamp(replace(f, index=f.index + offset)) for f in batch]

        graph = Graph(Source("decode", src, src.close), [Stage("stamp", stamp)],
                      Sink("publish", sink.write, sink.close))
        running["graph"] = graph
        try:
            graph.run()
        except PipelineError:  # the server drops its publisher once the test's reader has left
            pass

    def publishers() -> None:
        try:
            publish(0, 66)  # the whole clip, 2.6 s
        except Exception as exc:  # noqa: BLE001 - reported by the wait below
            sent["error"] = exc
            return
        # the stream is gone for a while, then comes back from a new publisher. The test server may
        # still hold the old publisher's session for a moment and refuse the new one, which can
        # surface as an error at once or as a publish that ends early: the test's publisher
        # publishes again until the reader has what it waits for (what is tested is the
        # reader's reconnect, not the publisher's)
        for _ in range(25):
            if finished.wait(1.0):
                return
            sent["rounds"] = sent.get("rounds", 0) + 1
            try:
                publish(1000, 66)
            except Exception as exc:  # noqa: BLE001 - shown if the reader never sees it come back
                sent["second"] = exc

    pub_thread = threading.Thread(target=publishers, daemon=True)
    pub_thread.start()
    _wait_for(lambda: sent["first"] >= 10 or "error" in sent, "the first publisher's frames")
    assert "error" not in sent, f"the publisher failed: {sent.get('error')}"
    live = open_source(f"rtsp://127.0.0.1:{client_port}/live",
                       SourceOptions(transport="udp", read_timeout_s=1, reconnect=6, backoff_s=0.3))
    received: list[tuple[int, int]] = []

    def collect(frame):
        received.append((_read_stamp(frame.image), frame.pts))
        if received[-1][0] >= 1000:
            raise StopPipeline

    reader = Graph(Source("rtsp", live, live.close), [], Sink("show", collect), mode="live")
    # generous: on a loaded 2-core machine a reconnect can miss a publisher round or two (a
    # CI-like run once ran out of 25 s here); the reader's own back-off still has to get it back
    watchdog = threading.Timer(45, reader.interrupt)
    watchdog.start()
    try:
        stats = reader.run()
    finally:
        watchdog.cancel()
        finished.set()
        running["graph"].interrupt()
        pub_thread.join(10)
    seen = [i for i, _ in received]
    # one reconnect per time the stream went away: after the first publisher, possibly once more
    # when that reconnect landed on the old publisher's lingering session (it replays its last
    # frames and ends: seen on a loaded CI-like run as indices 64, 65, then 1065 after 2
    # reconnects), and once for each later publish the server cut short before the reader got a
    # frame of it: at most one per new publisher round, plus the lingering session
    assert stats.state == "stopped" and 1 <= live.reconnects <= sent.get("rounds", 0) + 1, (
        stats.state, live.reconnects, sent.get("rounds"), len(seen), seen[-3:], sent.get("second"))
    before = [i for i, _ in received if i < 1000]
    assert before and received[-1][0] >= 1000  # frames from both publishers
    pts = [p for _, p in received]
    assert all(a < b for a, b in zip(pts, pts[1:]))  # timestamps keep increasing across the reconnect
