"""Benchmark and test inputs: a real video looped, re-encoded smaller, cut to a length (what a
long real job looks like, at a cost a 2-core machine can measure: `scaled_loop`), frames sampled
from a real video (`sample_video_frames`), and small synthetic videos made with PyAV, cheap to make
and to check (`make_video`, from `pattern` frames or given pictures)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

if TYPE_CHECKING:
    import torch


def scaled_loop(
    src: str | Path,
    path: str | Path,
    *,
    seconds: float,
    size: tuple[int, int],
    fps: int = 25,
    gop: int = 25,
    loops: int = 1,
) -> Path:
    """A real input made cheaper: `src`'s video (looped up to `loops` times) re-encoded at `size`
    (width, height) and `fps` with a keyframe every `gop` frames, cut at `seconds`, with src's
    first audio stream copied packet by packet (looped alike, interleaved loop by loop)."""
    w, h = size
    frames = int(seconds * fps)
    n, offset = 0, 0.0
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.options = {
            "preset": "ultrafast",
            "crf": "20",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
        }
        audio_out = None
        for _ in range(loops):
            with av.open(str(src)) as c:
                if audio_out is None and c.streams.audio:
                    audio_out = out.add_stream_from_template(c.streams.audio[0])
                for frame in c.decode(video=0):
                    if n == frames:
                        break
                    f = frame.reformat(width=w, height=h, format="yuv420p")
                    f.pts, f.time_base = n, Fraction(1, fps)
                    for pkt in vs.encode(f):
                        out.mux(pkt)
                    n += 1
                if audio_out is not None:
                    c.seek(0)
                    for pkt in c.demux(c.streams.audio[0]):
                        if pkt.dts is None or offset + float(pkt.dts * pkt.time_base) >= seconds:
                            continue
                        shift = round(offset / pkt.time_base)
                        if pkt.pts is not None:  # a packet may carry dts only; leave its pts unset
                            pkt.pts += shift
                        pkt.dts += shift
                        pkt.stream = audio_out
                        out.mux(pkt)
                offset += float(c.duration or 0) / av.time_base
            if n == frames:
                break
        for pkt in vs.encode(None):
            out.mux(pkt)
    return Path(path)


def sample_video_frames(path: Path, count: int) -> torch.Tensor:
    """`count` frames spread evenly over a video (PyAV) -> (count, 3, H, W) uint8 RGB."""
    import torch  # here, so that making synthetic videos needs no torch

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total = stream.frames
        wanted = {int(i) for i in np.linspace(0, total - 1, count).round()}
        frames = []
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
            if len(frames) == len(wanted):
                break
    return torch.stack(frames)


def pattern(w: int, h: int, i: int) -> np.ndarray:
    """A cheap (h, w, 3) uint8 RGB frame that changes with i: gradients plus a moving bar."""
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x + 0 * y).astype(np.uint8)
    img[..., 1] = (y + 0 * x).astype(np.uint8)
    img[..., 2] = (i * 7) % 256
    bar = (i * 5) % max(1, w - 8)
    img[:, bar : bar + 8] = 255
    return img


def face_blobs(n: int, size: tuple[int, int] = (640, 360), r: int = 40) -> np.ndarray:
    """A grey (h, w, 3) uint8 picture with n skin-coloured ellipses on a 3-wide grid: n faces for
    the stand-in SCRFD, whose score head responds to skin colours. size: (width, height); the
    grid's cells are 210 x 180 pixels at 640x360 and scale with the size."""
    w, h = size
    sx, sy = w / 640, h / 360
    img = np.full((h, w, 3), 90, np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(n):
        row, col = divmod(k, 3)
        cx, cy, rx, ry = (110 + col * 210) * sx, (90 + row * 180) * sy, r * sx, 1.25 * r * sy
        img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = (210, 150, 120)
    return img


def make_video(
    path: Path,
    *,
    frames: int = 30,
    size: tuple[int, int] = (160, 96),
    fps: int = 25,
    codec: str = "libx264",
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int | None = None,
    audio: bool = False,
    faststart: bool = False,
    preset: str = "ultrafast",
    distinct: int = 8,
    sample_rate: int = 16000,
    images: Sequence[np.ndarray] | None = None,
    gop: int | None = None,
    pix_fmt: str = "yuv420p",
    bt709: bool = False,
) -> Path:
    """Write a synthetic video (the tests' inputs, and the benchmarks' when real media would cost too much).

    size: (width, height). pts: explicit timestamps (variable frame rate) in `time_base`
    (default 1/fps). rotation: display-matrix rotation in degrees. audio: add an AAC tone track.
    faststart: put the index (moov) before the data, as streaming MP4s do. distinct: how many
    different pictures to cycle through (encoding cost stays tiny for long videos).
    images: use these (h, w, 3) uint8 pictures (cycled) instead of the pattern.
    gop: x264 keyframe interval in frames (default: x264's 250).
    pix_fmt: the encoded pixel format ("yuv420p10le", "yuv444p": 10-bit and 4:4:4 test inputs).
    bt709: convert with, and tag the stream as, BT.709 (FFmpeg assumes BT.601 untagged).
    """
    w, h = size
    tb = time_base or Fraction(1, fps)
    options = {"movflags": "+faststart"} if faststart else {}
    out = av.open(str(path), "w", options=options)
    vs = out.add_stream(codec, rate=fps)
    if not isinstance(vs, av.VideoStream):  # `codec` is any name; only a video encoder can take the frames
        out.close()
        raise ValueError(f"{codec!r} is not a video codec")
    vs.width, vs.height = w, h
    vs.pix_fmt = pix_fmt
    if bt709:
        cc = vs.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc = 1, 1, 1  # AVCOL_*_BT709
    vs.time_base = tb
    vs.codec_context.time_base = tb
    if codec == "libx264":
        vs.codec_context.options = {
            "preset": preset,
            "crf": "23",
            **({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if gop else {}),
        }
    elif codec == "libx265":
        vs.codec_context.options = {"preset": preset, "x265-params": "log-level=error"}
    if rotation:
        vs.set_display_rotation(rotation)
    a_stream = None
    if audio:
        a_stream = out.add_stream("aac", rate=sample_rate)
        a_stream.layout = "mono"
    pics = list(images) if images is not None else [pattern(w, h, i) for i in range(distinct)]
    matrix = "ITU709" if bt709 else None
    vframes = [
        av.VideoFrame.from_ndarray(p, format="rgb24").reformat(format=pix_fmt, dst_colorspace=matrix) for p in pics
    ]
    times = list(pts) if pts is not None else list(range(frames))
    a_next = 0
    samples_per_chunk = 1024
    tone = (0.2 * np.sin(np.arange(samples_per_chunk) * 2 * np.pi * 440 / sample_rate)).astype(np.float32)
    for i, p in enumerate(times[:frames] if pts is None else times):
        vf = vframes[i % len(vframes)]
        vf.pts, vf.time_base = p, tb
        for pkt in vs.encode(vf):
            out.mux(pkt)
        if a_stream is not None:
            until = float((p + 1) * tb) * sample_rate
            while a_next < until:
                af = av.AudioFrame.from_ndarray(tone[None, :], format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = sample_rate, a_next, Fraction(1, sample_rate)
                for pkt in a_stream.encode(af):
                    out.mux(pkt)
                a_next += samples_per_chunk
    for pkt in vs.encode(None):
        out.mux(pkt)
    if a_stream is not None:
        for pkt in a_stream.encode(None):
            out.mux(pkt)
    out.close()
    return path


__all__ = ["face_blobs", "make_video", "pattern", "sample_video_frames", "scaled_loop"]
