"""What the video tests check their outputs with (frame facts, audio packets, a decoded frame).
The synthetic inputs themselves (`make_video`, `pattern`) are in streamswap.bench.media, which
the benchmarks share."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


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

