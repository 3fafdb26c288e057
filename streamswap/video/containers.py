"""Which video encoder an output container takes, decided before any work.

FFmpeg picks the container from the output's suffix, and not every container holds H.264: WebM
takes VP8/VP9/AV1 only, GIF its own codec, Ogg Theora. Instead of failing inside the encode stage
("'webm' format does not support 'libx264' codec") after the whole input was decoded, the output
is checked when the job starts: the first encoder of `CANDIDATES` that this PyAV build has and
that the container accepts is used (H.264 where it can go, VP9 or AV1 otherwise, e.g. for .webm);
a container that takes none of them is refused with one line saying which suffixes work.

"Accepts" is tried, not looked up: a 64x64 frame is encoded into a throw-away file with the
same suffix (FFmpeg's own container choice, codec checks and header writing), once per suffix
and process (a few milliseconds).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av

from streamswap.errors import InputError

if TYPE_CHECKING:  # nv imports torch: this module is used by checks that run before torch loads
    from streamswap.video.nv import BackendChoice

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VideoEncoder:
    """An FFmpeg encoder: codec (its name), backend (what reports call it), label (the format)."""

    codec: str
    backend: str
    label: str


# in order of preference: H.264 (what every player takes), then VP9, then AV1
CANDIDATES = (
    VideoEncoder("libx264", "x264", "H.264"),
    VideoEncoder("libvpx-vp9", "vp9", "VP9"),
    VideoEncoder("libsvtav1", "svt-av1", "AV1"),
    VideoEncoder("libaom-av1", "aom-av1", "AV1"),
)
WORKING_SUFFIXES = ".mp4, .mkv, .mov or .webm"


def add_video_stream(
    out: av.container.OutputContainer, codec: str, rate: Fraction | int | None = None
) -> av.video.stream.VideoStream:
    """`out.add_stream(codec, rate=rate)` for a video encoder named at run time (PyAV types that
    as any kind of stream; the codecs here are all video encoders)."""
    s = out.add_stream(codec, rate=rate)
    if not isinstance(s, av.video.stream.VideoStream):
        raise ValueError(f"{codec} is not a video encoder")
    return s


def _trial_options(codec: str) -> dict[str, str]:
    return {
        "libx264": {"preset": "ultrafast"},
        "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
        "libsvtav1": {"preset": "12"},
        "libaom-av1": {"cpu-used": "8", "usage": "realtime"},
    }.get(codec, {})


def quiet_svt() -> None:
    """SVT-AV1 prints a banner of `Svt[info]` lines on stderr for every encoder it opens: errors
    only (SVT_LOG=1), unless the user set SVT_LOG. SVT reads it when it first logs."""
    os.environ.setdefault("SVT_LOG", "1")


@functools.lru_cache(maxsize=64)
def accepts(suffix: str, codec: str) -> bool:
    """Whether FFmpeg writes a `codec` video stream into a `suffix` file (tried once per process)."""
    if codec not in av.codecs_available:
        return False
    if codec == "libsvtav1":
        quiet_svt()
    with tempfile.TemporaryDirectory(prefix="streamswap-container-") as tmp:
        path = os.path.join(tmp, f"probe{suffix}")
        try:
            out = av.open(path, "w")
        except (av.error.FFmpegError, ValueError, OSError):
            return False
        try:
            s = add_video_stream(out, codec, rate=25)
            s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
            s.time_base = s.codec_context.time_base = Fraction(1, 25)
            s.codec_context.options = _trial_options(codec)
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts, frame.time_base = 0, Fraction(1, 25)
            for pkt in [*s.encode(frame), *s.encode(None)]:
                out.mux(pkt)
            out.close()
        except (av.error.FFmpegError, ValueError, OSError, TypeError) as exc:
            log.debug("%s does not take %s: %s", suffix, codec, exc)
            try:
                out.close()
            except Exception:  # noqa: BLE001 - a container that refused its header may not close either
                pass
            return False
        return os.path.getsize(path) > 0


def video_encoder_for(path: str | os.PathLike[str]) -> VideoEncoder:
    """The encoder a video file at `path` gets (by its suffix); InputError when none fits."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not suffix:
        raise InputError(f"output {p} has no suffix: name the container ({WORKING_SUFFIXES})")
    for enc in CANDIDATES:
        if accepts(suffix, enc.codec):
            return enc
    tried = ", ".join(dict.fromkeys(e.label for e in CANDIDATES if e.codec in av.codecs_available))
    raise InputError(
        f"output {p}: a {suffix} file takes none of the video encoders here ({tried}); "
        f"use a video suffix such as {WORKING_SUFFIXES}"
    )


def choose_file_encoder(path: str | os.PathLike[str], choice: BackendChoice) -> tuple[VideoEncoder, BackendChoice]:
    """The encoder for a video file and the backend choice to report: `choice` itself where the
    container holds H.264 (x264, or NVENC whose output is H.264), else the container's own CPU
    encoder, saying why."""
    from streamswap.video.nv import BackendChoice

    enc = video_encoder_for(path)
    if enc.codec == "libx264":
        return enc, choice
    suffix = Path(path).suffix.lower()
    why = f"CPU {enc.codec}: {suffix} files do not hold H.264"
    if choice.backend == "nvenc":
        why += " (NVENC writes H.264 only)"
    return enc, BackendChoice(enc.backend, why)


def encoder_options(codec: str, crf: int, preset: str, max_lookahead: int | None) -> dict[str, str]:
    """FFmpeg options for a CPU encoder other than x264 from the x264-style settings: crf 0..51 is
    mapped onto the codec's 0..63 scale; the x264 preset onto its speed setting."""
    speed = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
    rank = speed.index(preset) if preset in speed else 5  # 0 fastest .. 9 slowest
    q = str(round(crf * 63 / 51))
    if codec == "libvpx-vp9":
        # realtime for the fast presets (what a live or CPU swap job can keep up with), else good
        opts = {
            "crf": q,
            "b:v": "0",
            "row-mt": "1",
            "deadline": "realtime" if rank <= 3 else "good",
            "cpu-used": str((8, 8, 7, 6, 5, 4, 3, 2, 1, 0)[rank]),
        }
        if max_lookahead is not None:
            opts["lag-in-frames"] = str(max(0, min(25, max_lookahead)))
        return opts
    if codec == "libsvtav1":
        return {"crf": q, "preset": str((12, 11, 10, 9, 8, 7, 6, 4, 2, 1)[rank])}
    if codec == "libaom-av1":
        return {
            "crf": q,
            "b:v": "0",
            "cpu-used": str((8, 8, 7, 6, 5, 4, 3, 2, 1, 0)[rank]),
            **({"usage": "realtime"} if rank <= 3 else {}),
        }
    return {}
