"""Benchmark and test inputs made from real media: a video looped, re-encoded smaller, cut to a
length (what a long real job looks like, at a cost a 2-core machine can measure)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av


def scaled_loop(src: str | Path, path: str | Path, *, seconds: float, size: tuple[int, int], fps: int = 25,
                gop: int = 25, loops: int = 1) -> Path:
    """A real input made cheaper: `src`'s video (looped up to `loops` times) re-encoded at `size`
    (width, height) and `fps` with a keyframe every `gop` frames, cut at `seconds`, with src's
    first audio stream copied packet by packet (looped alike, interleaved loop by loop)."""
    w, h = size
    frames = int(seconds * fps)
    n, offset = 0, 0.0
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "crf": "20", "g": str(gop), "keyint_min": str(gop),
                                    "sc_threshold": "0"}
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


__all__ = ["scaled_loop"]
