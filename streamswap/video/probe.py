"""What an input is (file, image, webcam, network URL) and what a video file holds, with one-line
errors for inputs that cannot be used."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, Unpack

import av

from streamswap.errors import InputError
from streamswap.limits import check_video_size
from streamswap.video.nvdec_support import StreamFacts

if TYPE_CHECKING:
    from av.codec.hwaccel import HWAccel

InputKind = Literal["file", "image", "webcam", "network"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})
# schemes whose streams have no end and no seek: always live
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp"})

# FFmpeg's AVColorSpace numbers -> the names PyAV's reformatter takes (None: FFmpeg's default, BT.601)
_COLORSPACES = {1: "ITU709", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020"}


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """A video stream as the pipeline will see it.

    width, height: of the frames the source yields (rotation applied, so a portrait phone video
        is taller than wide). fps: nominal rate (None if unknown, e.g. a still image).
    time_base: unit of the frames' pts. frames / duration_s: estimates from the container
        (None when unknown, e.g. live). rotation: degrees counter-clockwise the decoded picture is
        turned to be upright (from the display matrix; 0, 90, 180 or 270).
    colorspace: PyAV reformatter name of the YUV matrix (None: unspecified, FFmpeg uses BT.601);
        full_range: JPEG (0-255) rather than MPEG (16-235) YUV levels.
    pix_fmt, profile: FFmpeg's names for the decoded pixel format ("yuv420p10le") and the codec
        profile ("Main 10").
    """

    width: int
    height: int
    fps: Fraction | None
    time_base: Fraction
    frames: int | None
    duration_s: float | None
    codec: str
    rotation: int = 0
    colorspace: str | None = None
    full_range: bool = False
    has_audio: bool = False
    live: bool = False
    pix_fmt: str = ""
    profile: str | None = None

    @property
    def facts(self) -> StreamFacts:
        """What the NVDEC decision reads (the coded size, before rotation)."""
        w, h = (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)
        return StreamFacts.of(self.codec, self.profile, self.pix_fmt, w, h)


def classify(spec: str) -> InputKind:
    """Which kind of input `spec` names: a URL, a webcam (/dev/videoN, "webcam", "webcam:N"),
    an image (by suffix) or else a video file."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in NETWORK_SCHEMES:
        return "network"
    if re.fullmatch(r"webcam(:\d+)?", spec) or re.fullmatch(r"/dev/video\d+", spec):
        return "webcam"
    if Path(spec).suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "file"


def webcam_device(spec: str) -> str:
    """The v4l2 device path for a webcam spec ("webcam" -> /dev/video0, "webcam:2" -> /dev/video2)."""
    if spec.startswith("/dev/"):
        return spec
    _, _, num = spec.partition(":")
    return f"/dev/video{num or 0}"


def check_file(path: str | os.PathLike[str]) -> Path:
    """The path, if it names a non-empty readable file; else InputError saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if p.is_dir():
        raise InputError(f"input {p} is a directory, not a video or image file")
    if p.stat().st_size == 0:
        raise InputError(f"input {p} is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InputError(f"input {p} is not readable (check its permissions)")
    return p


def check_input(spec: str) -> None:
    """Cheap checks of a local input with PyAV only, before any model or torch loads: a file or
    image exists, is not empty and is readable; a video file has a video stream FFmpeg can
    decode, of a frame size within the limits. InputError (one line) otherwise; live inputs
    (webcams, URLs) are left to the source, which retries them."""
    kind = classify(spec)
    if kind in ("file", "image"):
        check_file(spec)
    if kind == "file":
        with open_container(spec) as container:
            video_stream(container, spec)


class OpenOptions(TypedDict, total=False):
    """What `av.open` takes besides the file and mode."""

    format: str
    options: dict[str, str]
    container_options: dict[str, str]
    stream_options: list[str]
    metadata_encoding: str
    metadata_errors: str
    buffer_size: int
    hwaccel: HWAccel


def open_container(path: str | os.PathLike[str], **kwargs: Unpack[OpenOptions]) -> av.container.InputContainer:
    """av.open for reading, with FFmpeg's complaints turned into one-line InputErrors."""
    try:
        return av.open(str(path), **kwargs)
    except av.error.FFmpegError as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        hint = " (truncated, or not a video)" if "moov" in why or "Invalid data" in why else ""
        raise InputError(f"cannot read {path}: {why}{hint}") from None


def rotation_of(stream: av.video.stream.VideoStream, first_frame: av.VideoFrame | None) -> int:
    """Display rotation in degrees counter-clockwise, snapped to 0/90/180/270."""
    deg = 0.0
    if first_frame is not None:
        deg = float(first_frame.rotation or 0)
    return int(round(deg / 90.0)) % 4 * 90


def video_info(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    first_frame: av.VideoFrame | None,
    *,
    live: bool = False,
) -> VideoInfo:
    """VideoInfo for `stream` of an open container (first_frame: for rotation and colour tags)."""
    cc = stream.codec_context
    rotation = rotation_of(stream, first_frame)
    w = first_frame.width if first_frame is not None else cc.width
    h = first_frame.height if first_frame is not None else cc.height
    check_video_size(int(w), int(h), "the input")  # its header may not have said (a URL is not repeated here)
    if rotation in (90, 270):
        w, h = h, w
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    tb = stream.time_base or (Fraction(1, int(fps)) if fps else Fraction(1, 1000))
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    frames = stream.frames or (int(round(duration * fps)) if duration and fps else None)
    cs_num = int(first_frame.colorspace) if first_frame is not None else int(cc.colorspace or 2)
    rng = int(first_frame.color_range) if first_frame is not None else int(cc.color_range or 0)
    return VideoInfo(
        width=int(w),
        height=int(h),
        fps=Fraction(fps) if fps else None,
        time_base=Fraction(tb),
        frames=None if live else frames,
        duration_s=None if live else duration,
        codec=cc.name,
        rotation=rotation,
        colorspace=_COLORSPACES.get(cs_num),
        full_range=rng == 2,
        has_audio=bool(container.streams.audio),
        live=live,
        pix_fmt=(first_frame.format.name if first_frame is not None else cc.pix_fmt) or "",
        profile=cc.profile,
    )


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    """The first video stream, or InputError if there is none or FFmpeg cannot decode it."""
    if not container.streams.video:
        kinds: list[str] = sorted({s.type for s in container.streams}) or ["nothing"]
        raise InputError(f"{name} has no video stream (it holds {', '.join(kinds)})")
    stream = container.streams.video[0]
    codec = stream.codec_context.name if stream.codec_context else "none"
    if codec in ("none", "") or stream.codec_context is None:
        tag = getattr(stream.codec_context, "codec_tag", "") if stream.codec_context else ""
        raise InputError(
            f"{name}: video codec {tag or 'unknown'!s} is not supported (re-encode it to H.264, e.g. with ffmpeg)"
        )
    # the frame size the header states, before a frame is decoded (a few bytes can claim 100 MP frames)
    check_video_size(int(stream.codec_context.width or 0), int(stream.codec_context.height or 0), name)
    return stream


def check_output_path(inp: str, out: str, overwrite: bool) -> None:
    """Refuse writing over the input (whatever the spelling: `..`, symlinks) or, without
    `overwrite`, over an existing file; the output's folder must exist; a video output's
    container must take one of the encoders here (`video.containers`). InputError otherwise."""
    out_path = Path(out)
    if classify(inp) in ("file", "image") and Path(inp).exists() and out_path.exists():
        if Path(inp).resolve() == out_path.resolve() or os.path.samefile(inp, out):
            raise InputError(f"output {out} is the input file; choose another output path")
    if out_path.exists() and not overwrite:
        raise InputError(f"output {out} exists (pass --overwrite to replace it)")
    if not out_path.parent.is_dir():
        raise InputError(f"output folder {out_path.parent} does not exist")
    from streamswap.video.containers import WORKING_SUFFIXES, video_encoder_for

    if classify(out) == "image":
        if classify(inp) != "image":
            raise InputError(
                f"output {out} is an image file but the input is a video; use a video suffix ({WORKING_SUFFIXES})"
            )
    else:
        video_encoder_for(out)  # e.g. .gif: refused now, not in the encode stage
