"""Small synthetic media for the video tests, generated with PyAV (cheap to make and to check)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np


def pattern(w: int, h: int, i: int) -> np.ndarray:
    """A cheap (h, w, 3) uint8 RGB frame that changes with i: gradients plus a moving bar."""
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x + 0 * y).astype(np.uint8)
    img[..., 1] = (y + 0 * x).astype(np.uint8)
    img[..., 2] = (i * 7) % 256
    bar = (i * 5) % max(1, w - 8)
    img[:, bar:bar + 8] = 255
    return img


def make_video(path: Path, *, frames: int = 30, size: tuple[int, int] = (160, 96), fps: int = 25,
               codec: str = "libx264", pts: Sequence[int] | None = None, time_base: Fraction | None = None,
               rotation: int | None = None, audio: bool = False, faststart: bool = False,
               preset: str = "ultrafast", distinct: int = 8, sample_rate: int = 16000,
               images: Sequence[np.ndarray] | None = None, gop: int | None = None) -> Path:
    """Write a test video.

    size: (width, height). pts: explicit timestamps (variable frame rate) in `time_base`
    (default 1/fps). rotation: display-matrix rotation in degrees. audio: add an AAC tone track.
    faststart: put the index (moov) before the data, as streaming MP4s do. distinct: how many
    different pictures to cycle through (encoding cost stays tiny for long videos).
    images: use these (h, w, 3) uint8 pictures (cycled) instead of the pattern.
    gop: x264 keyframe interval in frames (default: x264's 250).
    """
    w, h = size
    tb = time_base or Fraction(1, fps)
    options = {"movflags": "+faststart"} if faststart else {}
    out = av.open(str(path), "w", options=options)
    vs = out.add_stream(codec, rate=fps)
    vs.width, vs.height = w, h
    vs.pix_fmt = "yuv420p"
    vs.time_base = tb
    vs.codec_context.time_base = tb
    if codec == "libx264":
        vs.codec_context.options = {"preset": preset, "crf": "23",
                                    **({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"} if gop else {})}
    if rotation:
        vs.set_display_rotation(rotation)
    a_stream = None
    if audio:
        a_stream = out.add_stream("aac", rate=sample_rate)
        a_stream.layout = "mono"
    pics = list(images) if images is not None else [pattern(w, h, i) for i in range(distinct)]
    vframes = [av.VideoFrame.from_ndarray(p, format="rgb24").reformat(format="yuv420p") for p in pics]
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


def video_facts(path: Path) -> dict:
    """Frame count (decoded), size, rate, duration, rotation and frame times of the first video stream."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times, rot = [], 0
        for f in c.decode(s):
            times.append(float(f.pts * f.time_base))
            rot = f.rotation
        return {"frames": len(times), "width": s.codec_context.width, "height": s.codec_context.height,
                "fps": s.average_rate, "duration": float(s.duration * s.time_base) if s.duration else None,
                "times": times, "rotation": rot, "audio": len(c.streams.audio)}


def audio_packets(path: Path) -> list[bytes]:
    """The payloads of the first audio stream's packets, in file order."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.dts is not None and p.size]


def first_frame(path: Path, index: int = 0) -> np.ndarray:
    """Decoded RGB frame `index` of a video, (h, w, 3) uint8."""
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise IndexError(index)

