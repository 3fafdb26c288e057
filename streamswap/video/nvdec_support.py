"""Can NVDEC decode this stream on this GPU, and in which surface layout does it hand frames over?

A pure decision from what the probe read (codec, profile, pixel format, size) and the GPU's
compute capability, taken once when the input is opened: a stream NVDEC cannot decode goes to
PyAV from its first frame, never mid-run. The table follows NVIDIA's NVDEC support matrix
(Video Codec SDK 13, "NVDEC Video Decoder API Programming Guide", table 1); where a generation's
support is uncertain it is left to PyAV, which is slower but never wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import av

Chroma = Literal["400", "420", "422", "444"]
# what PyNvVideoCodec hands over for each kind of stream (its default, native output format)
Surface = Literal["nv12", "p016", "yuv444", "yuv444_16bit"]

# NVDEC's smallest picture (all codecs); larger limits are per row below
MIN_WIDTH, MIN_HEIGHT = 48, 16


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What the decision needs to know about a video stream.

    width, height: coded picture size before rotation. bit_depth: bits per sample (8, 10, 12).
    chroma: the subsampling ("420", "422", "444"; "400" for greyscale).
    """

    codec: str
    profile: str | None
    pix_fmt: str
    bit_depth: int
    chroma: Chroma
    width: int
    height: int

    @classmethod
    def of(cls, codec: str, profile: str | None, pix_fmt: str, width: int, height: int) -> StreamFacts:
        """Facts from FFmpeg's names (bit depth and chroma read from the pixel format)."""
        bits, chroma = pixel_layout(pix_fmt)
        return cls(codec, profile, pix_fmt, bits, chroma, width, height)


def pixel_layout(pix_fmt: str) -> tuple[int, Chroma]:
    """(bits per sample, chroma subsampling) of an FFmpeg pixel format ("yuv420p10le" -> (10, "420")).
    Unknown or empty names read as 8-bit 4:2:0, the common case, which the decoder then checks."""
    try:
        fmt = av.VideoFormat(pix_fmt, 16, 16)
    except (ValueError, TypeError):
        return 8, "420"
    comps = fmt.components
    bits = max(int(c.bits) for c in comps)
    if len(comps) < 3 or pix_fmt.startswith("gray"):
        return bits, "400"
    w, h = int(comps[1].width), int(comps[1].height)
    if w == 16 and h == 16:
        return bits, "444"
    return bits, ("422" if h == 16 else "420")


@dataclass(frozen=True, slots=True)
class NvdecRow:
    """One line of the support matrix: `codec` at `chroma` up to `max_bits` from compute
    capability `since` on (except `excluded` generations), up to max_width x max_height."""

    codec: str
    chroma: Chroma
    max_bits: int
    since: tuple[int, int]
    max_width: int
    max_height: int
    excluded: tuple[tuple[int, int], ...] = ()


# Maxwell 5.x, Pascal 6.x, Volta 7.0, Turing 7.5, Ampere 8.0 (GA100) / 8.6, Ada 8.9, Hopper 9.0,
# Blackwell 10.x / 12.x
NVDEC_MATRIX: tuple[NvdecRow, ...] = (
    NvdecRow("mpeg1video", "420", 8, (5, 0), 4080, 4080),
    NvdecRow("mpeg2video", "420", 8, (5, 0), 4080, 4080),
    NvdecRow("mpeg4", "420", 8, (5, 0), 2048, 2048),
    NvdecRow("vc1", "420", 8, (5, 0), 2048, 2048),
    NvdecRow("mjpeg", "420", 8, (5, 0), 16384, 16384),
    NvdecRow("h264", "420", 8, (5, 0), 4096, 4096),
    NvdecRow("h264", "420", 10, (10, 0), 8192, 8192),  # High10: Blackwell only
    NvdecRow("h264", "422", 10, (10, 0), 8192, 8192),  # High 4:2:2: Blackwell only
    NvdecRow("hevc", "420", 8, (5, 2), 4096, 2304),
    NvdecRow("hevc", "420", 12, (6, 0), 8192, 8192),  # Main10/Main12: Pascal on
    NvdecRow("hevc", "444", 12, (7, 5), 8192, 8192),  # 4:4:4 (Rext): Turing on
    NvdecRow("hevc", "422", 12, (10, 0), 8192, 8192),  # 4:2:2 (Rext): Blackwell only
    NvdecRow("vp8", "420", 8, (5, 2), 4096, 4096),
    NvdecRow("vp9", "420", 8, (5, 2), 4096, 2304),
    NvdecRow("vp9", "420", 12, (6, 0), 8192, 8192),
    NvdecRow("av1", "420", 10, (8, 6), 8192, 8192, excluded=((9, 0),)),  # not GA100 (8.0), not H100/H200 (9.0)
)

# 4:2:2 (Blackwell decodes it) arrives as NV16/P216, which the colour conversion does not read yet
_SURFACES: dict[tuple[Chroma, bool], Surface] = {
    ("420", False): "nv12",
    ("420", True): "p016",
    ("444", False): "yuv444",
    ("444", True): "yuv444_16bit",
}


def generation(capability: tuple[int, int]) -> str:
    """A readable name for a compute capability ((9, 0) -> "Hopper")."""
    major, minor = capability
    names = {5: "Maxwell", 6: "Pascal", 8: "Ampere", 9: "Hopper", 10: "Blackwell", 12: "Blackwell"}
    if major == 7:
        return "Volta" if minor < 5 else "Turing"
    if (major, minor) == (8, 9):
        return "Ada"
    return names.get(major, f"compute capability {major}.{minor}")


def surface_for(facts: StreamFacts) -> Surface | None:
    """The layout NVDEC's frames of this stream arrive in, or None when it is not converted here."""
    return _SURFACES.get((facts.chroma, facts.bit_depth > 8))


def nvdec_refusal(facts: StreamFacts, capability: tuple[int, int] | None) -> str | None:
    """Why NVDEC must not decode this stream on a GPU of this compute capability (one phrase),
    or None when it can, and its frames convert correctly."""
    sampling = ":".join(facts.chroma)  # "420" -> "4:2:0"
    what = " ".join(f"{facts.codec} {facts.profile or ''} {facts.bit_depth}-bit {sampling}".split())
    rows = [r for r in NVDEC_MATRIX if r.codec == facts.codec]
    if not rows:
        return f"NVDEC does not decode {facts.codec}"
    if capability is None:
        return "the GPU's generation (compute capability) is unknown"
    if facts.width % 2 or facts.height % 2:
        return f"its {facts.width}x{facts.height} picture has an odd side (NVDEC surfaces are 2x2-subsampled)"
    if facts.width < MIN_WIDTH or facts.height < MIN_HEIGHT:
        return f"its {facts.width}x{facts.height} picture is below NVDEC's {MIN_WIDTH}x{MIN_HEIGHT}"
    fits = [r for r in rows if r.chroma == facts.chroma and facts.bit_depth <= r.max_bits]
    if not fits:
        return f"NVDEC has no {what}"
    gen = generation(capability)
    here = [r for r in fits if capability >= r.since and capability not in r.excluded]
    if not here:
        return f"{gen} NVDEC has no {what}"
    if not any(facts.width <= r.max_width and facts.height <= r.max_height for r in here):
        biggest = max(here, key=lambda r: r.max_width * r.max_height)
        limit = f"{biggest.max_width}x{biggest.max_height}"
        return f"{facts.width}x{facts.height} is above {gen} NVDEC's {limit} for {facts.codec}"
    if surface_for(facts) is None:
        return f"NVDEC's {what} surfaces are not converted here"
    return None
