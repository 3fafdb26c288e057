"""What the `streamswap serve` tests share: tiny clips cut from the shared media, a free port, and
a real server process on 127.0.0.1 (started with default stop signals, stopped with SIGTERM)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
from conftest import REPO, default_signals

TOKEN = "test-token-not-a-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    """A port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clip(src: Path, dst: Path, *, seconds: float, start: float = 2.0, size: tuple[int, int] = (320, 180)) -> Path:
    """`seconds` of `src` from `start`, scaled to `size`, x264 + AAC audio (fast to swap)."""
    w, h = size
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        rate = vin.average_rate or Fraction(25)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.options = {"preset": "ultrafast", "crf": "23"}
        aout = out.add_stream("aac", rate=ain.codec_context.sample_rate)
        n, want = 0, int(round(seconds * float(rate)))
        for f in inp.decode(vin):
            if f.time < start:
                continue
            g = f.reformat(width=w, height=h, format="yuv420p")
            g.pts, g.time_base = n, 1 / Fraction(rate)
            out.mux(vout.encode(g))
            n += 1
            if n >= want:
                break
        out.mux(vout.encode(None))
        inp.seek(int(start / ain.time_base), stream=ain)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=ain.codec_context.sample_rate)
        for f in inp.decode(ain):
            if f.time < start:
                continue
            if f.time > start + seconds:
                break
            for r in resampler.resample(f):
                r.pts = None
                out.mux(aout.encode(r))
        out.mux(aout.encode(None))
    return dst


def make_y4m(
    src: Path, dst: Path, *, seconds: float = 2.0, start: float = 2.0, size: tuple[int, int] = (320, 180)
) -> Path:
    """A y4m file for Chromium's fake camera (`--use-file-for-fake-video-capture`), 30 fps."""
    w, h = size
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        s = out.add_stream("wrapped_avframe", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        n = 0
        for f in inp.decode(inp.streams.video[0]):
            if f.time < start:
                continue
            g = f.reformat(width=w, height=h, format="yuv420p")
            g.pts, g.time_base = n, Fraction(1, 30)
            out.mux(s.encode(g))
            n += 1
            if n >= seconds * 30:
                break
        out.mux(s.encode(None))
    return dst


class Server:
    """`python -m streamswap serve` on a free port of 127.0.0.1 with `data_dir` and `TOKEN`."""

    def __init__(self, data_dir: Path, log: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir, self.log_path, self.extra = data_dir, log, extra
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> Server:
        """Start it and wait until it answers (TimeoutError, with its log, otherwise)."""
        args = [sys.executable, "-m", "streamswap", "serve", "--port", str(self.port), "--data-dir",
                str(self.data_dir), "--token", TOKEN, "--engine", "lite", "--device", "cpu", *self.extra]
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=default_signals, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/api/info", headers=AUTH, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"server did not answer in {timeout_s} s: {self.log_path.read_text()}")

    def client(self) -> httpx.Client:
        """An httpx client with the token, on this server."""
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not leave in `timeout_s`; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        code, self.proc = self.proc.returncode, None
        return code


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll `predicate()` until it returns something truthy (returned); TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
