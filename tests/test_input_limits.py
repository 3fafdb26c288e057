"""Bad input cannot exhaust the machine: images above the pixel cap and videos above the frame
size cap are refused from their headers, before anything is decoded, with one line and exit 2,
and the real CLI stays far below 1 GB of peak RSS doing so (read with os.wait4)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import REPO, default_signals
from streamswap.bench.media import make_video
from streamswap.errors import InputError
from streamswap.limits import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_VIDEO_SIZE,
    check_image,
    image_size,
    max_image_pixels,
    max_video_size,
)

GIB = 1024 ** 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid greyscale PNG of width x height zeros: under 1 MB on disk (zlib over row blocks),
    2.7 GB once OpenCV decodes it to BGR."""
    comp = zlib.compressobj(1)
    block = b"\0" * ((width + 1) * 500)  # 500 rows: filter byte 0 + the row
    parts = [comp.compress(block) for _ in range(height // 500)]
    parts.append(comp.compress(b"\0" * ((width + 1) * (height % 500))))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
                     + _png_chunk(b"IEND", b""))
    return path


def raw_video_header(path: Path, size: int = 10000) -> Path:
    """A Matroska file whose rawvideo stream claims size x size frames (a few hundred bytes)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("rawvideo", rate=25)
        s.width = s.height = size
        s.pix_fmt = "gray"
        pkt = av.Packet(b"\0" * 16)
        pkt.stream, pkt.pts, pkt.dts, pkt.time_base = s, 0, 0, Fraction(1, 25)
        out.mux(pkt)
    return path


# The CLI is started by a small launcher, which reports its child's peak RSS (os.wait4). Read
# directly, a child of this test process would count this process's pages too: a forked child
# shares them until its exec, and Linux carries that high-water mark across exec into ru_maxrss
# (a child of a 1.5-GB process running `python -c pass` read 1508 MiB; through the launcher 11 MiB).
LAUNCHER = """
import os, sys
report = os.dup(1)
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.execv(sys.executable, [sys.executable, "-m", "streamswap", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
os.write(report, f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}\\n".encode())
"""


def run_measured(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, float]:
    """The real CLI in a subprocess: (exit code, stderr, peak RSS in bytes, the CLI's own)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, *args], cwd=REPO,
                                env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=err, text=True,
                                preexec_fn=default_signals, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            raise TimeoutError(f"the CLI ran past {timeout} s") from None
        code, maxrss = (int(v) for v in out.split())
        err.seek(0)
        return code, err.read(), maxrss * 1024.0  # ru_maxrss: KiB on Linux


def _one_error_line(stderr: str, *words: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    path = huge_png(tmp_path_factory.mktemp("limits") / "huge.png")
    assert path.stat().st_size < 5 * 2**20
    return path


def test_image_size_comes_from_the_header_for_each_format(tmp_path, shared_data):
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm", ".pgm"):
        path = tmp_path / f"x{ext}"
        assert cv2.imwrite(str(path), img if ext != ".pgm" else img[..., 0]), ext
        assert image_size(path) == (53, 37), ext
    lossless = tmp_path / "lossless.webp"
    cv2.imwrite(str(lossless), img, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert image_size(lossless) == (53, 37)
    for name in ("mark.jpg", "tgt1.png"):
        real = shared_data / "images" / name
        assert image_size(real) == cv2.imread(str(real)).shape[1::-1]
    (tmp_path / "text.png").write_text("not an image")
    assert image_size(tmp_path / "text.png") is None


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("STREAMSWAP_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.delenv("STREAMSWAP_MAX_VIDEO_SIZE", raising=False)
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 100_000_000
    assert max_video_size() == DEFAULT_MAX_VIDEO_SIZE == (8192, 8192)
    assert max_image_pixels({"STREAMSWAP_MAX_IMAGE_PIXELS": "400M"}) == 400_000_000
    assert max_image_pixels({"STREAMSWAP_MAX_IMAGE_PIXELS": "1200000000"}) == 1_200_000_000
    assert max_video_size({"STREAMSWAP_MAX_VIDEO_SIZE": "16384x16384"}) == (16384, 16384)
    with pytest.raises(InputError, match="STREAMSWAP_MAX_IMAGE_PIXELS"):
        max_image_pixels({"STREAMSWAP_MAX_IMAGE_PIXELS": "lots"})
    with pytest.raises(InputError, match="STREAMSWAP_MAX_VIDEO_SIZE"):
        max_video_size({"STREAMSWAP_MAX_VIDEO_SIZE": "big"})


def test_the_image_cap_is_checked_from_the_header_and_can_be_raised(huge, monkeypatch):
    with pytest.raises(InputError, match=r"30000x30000 is 900 MP, above the 100 MP limit"):
        check_image(huge)
    monkeypatch.setenv("STREAMSWAP_MAX_IMAGE_PIXELS", "1G")
    assert check_image(huge) == (30000, 30000)  # allowed now (not decoded here)


@pytest.mark.parametrize("role", ["source", "target", "transcode"])
def test_a_huge_png_is_refused_in_one_line_with_little_memory(huge, shared_data, tmp_path, role):
    if role == "source":
        args = ("swap", "-s", str(huge), "-t", str(shared_data / "images" / "tgt1.png"), "-o", str(tmp_path / "o.png"),
                "--engine", "lite")
    elif role == "target":
        args = ("swap", "-s", str(shared_data / "images" / "mark.jpg"), "-t", str(huge), "-o", str(tmp_path / "o.png"),
                "--engine", "lite")
    else:
        args = ("transcode", str(huge), str(tmp_path / "o.mp4"))
    code, err, rss = run_measured(*args)
    assert code == InputError.exit_code == 2, err
    _one_error_line(err, "30000x30000", "100 MP limit", "STREAMSWAP_MAX_IMAGE_PIXELS")
    assert rss < 1 * GIB, rss / 2**20
    assert not list(tmp_path.iterdir())  # no output, no temporary file


H264_10K = """
import av, sys
out = av.open(sys.argv[1], "w")
s = out.add_stream("libx264", rate=25)
s.width = s.height = 10000
s.pix_fmt = "yuv420p"
s.codec_context.options = {"preset": "ultrafast", "crf": "40"}
f = av.VideoFrame(10000, 10000, "yuv420p")
for p in f.planes:
    p.update(bytes(p.buffer_size))
f.pts = 0
for pkt in [*s.encode(f), *s.encode(None)]:
    out.mux(pkt)
out.close()
"""


@pytest.mark.parametrize("kind", ["rawvideo header", "real h264"])
def test_a_video_with_huge_frames_is_refused_from_its_header(tmp_path, kind):
    if kind == "rawvideo header":
        video = raw_video_header(tmp_path / "huge.mkv")  # a header only: its one packet is 16 bytes
        assert video.stat().st_size < 4096
    else:  # a real, decodable 10000x10000 H.264 frame (made in a child: x264 needs 600 MB for it)
        video = tmp_path / "huge.mp4"
        subprocess.run([sys.executable, "-c", H264_10K, str(video)], check=True, timeout=60)
    code, err, rss = run_measured("transcode", str(video), str(tmp_path / "o.mp4"))
    assert code == 2, err
    _one_error_line(err, "10000x10000", "8192x8192", "STREAMSWAP_MAX_VIDEO_SIZE")
    assert rss < 1 * GIB, rss / 2**20
    assert not (tmp_path / "o.mp4").exists()


def test_a_lowered_video_cap_refuses_a_real_video_before_decoding(shared_data, tmp_path):
    # nggyup.mp4 is 1280x720: with the cap at 640x360 both commands refuse it from the header
    # (the swap before any model loads), and raising the cap back lets it through
    env = {"STREAMSWAP_MAX_VIDEO_SIZE": "640x360"}
    video = shared_data / "videos" / "nggyup.mp4"
    for args in (("transcode", str(video), str(tmp_path / "o.mp4")),
                 ("swap", "-s", str(shared_data / "images" / "mark.jpg"), "-t", str(video), "-o",
                  str(tmp_path / "o.mp4"), "--engine", "lite")):
        code, err, rss = run_measured(*args, env=env)
        assert code == 2, err
        _one_error_line(err, "1280x720", "640x360")
        assert rss < 1 * GIB
    assert not list(tmp_path.iterdir())
    small = make_video(tmp_path / "small.mp4", frames=3, size=(64, 48))
    code, err, _ = run_measured("transcode", str(small), str(tmp_path / "ok.mp4"), "-q", env={"STREAMSWAP_MAX_VIDEO_SIZE": "64x48"})
    assert code == 0, err
