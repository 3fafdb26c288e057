"""Size limits on inputs, checked from headers before anything is decoded.

A few megabytes on disk can claim gigapixels (a 30000x30000 PNG of zeros is under 1 MB), and
decoding one takes gigabytes of memory and tens of seconds before any face code runs. So:

- images (source faces, reference faces, image targets): at most `max_image_pixels()` pixels,
  default 100 MP; `STREAMSWAP_MAX_IMAGE_PIXELS` raises (or lowers) it, e.g. `400000000` or `400M`;
- video frames (files, webcams, streams): at most `max_video_size()`, default 8192x8192;
  `STREAMSWAP_MAX_VIDEO_SIZE` changes it, e.g. `16384x16384`.

`image_size` reads an image's size from its header alone (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X,
BMP, GIF, TIFF and BigTIFF, PNM), a few hundred bytes in the common cases; no decoder runs.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import BinaryIO

from streamswap.errors import InputError

MAX_IMAGE_PIXELS_ENV = "STREAMSWAP_MAX_IMAGE_PIXELS"
MAX_VIDEO_SIZE_ENV = "STREAMSWAP_MAX_VIDEO_SIZE"
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
DEFAULT_MAX_VIDEO_SIZE = (8192, 8192)

_SCALE = {"": 1, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}


def max_image_pixels(env: dict[str, str] | None = None) -> int:
    """The most pixels an input image may have (`STREAMSWAP_MAX_IMAGE_PIXELS`, default 100 MP)."""
    text = (os.environ if env is None else env).get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)", text.upper().replace("_", ""))
    if not m or float(m.group(1)) * _SCALE[m.group(2)] < 1:
        raise InputError(f"{MAX_IMAGE_PIXELS_ENV}={text!r} is not a pixel count (e.g. 400000000 or 400M)")
    return int(float(m.group(1)) * _SCALE[m.group(2)])


def max_video_size(env: dict[str, str] | None = None) -> tuple[int, int]:
    """The largest video frame (width, height) accepted (`STREAMSWAP_MAX_VIDEO_SIZE`, default 8192x8192)."""
    text = (os.environ if env is None else env).get(MAX_VIDEO_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VIDEO_SIZE
    m = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"{MAX_VIDEO_SIZE_ENV}={text!r} is not a frame size (e.g. 16384x16384)")
    return int(m.group(1)), int(m.group(2))


def check_video_size(width: int, height: int, name: str) -> None:
    """InputError when a video's frames (as its header states them) exceed `max_video_size()`.
    Unknown sizes (0) pass: the first decoded frame is checked again."""
    mw, mh = max_video_size()
    if width > mw or height > mh:
        raise InputError(
            f"{name}: frames of {width}x{height} exceed the limit of {mw}x{mh} "
            f"(set {MAX_VIDEO_SIZE_ENV}=WxH to allow larger)"
        )


def check_image(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The image's (width, height) from its header, after checking it against `max_image_pixels()`
    (InputError when larger). None when the header is not one `image_size` knows (not an image,
    or an unusual format): the caller's decoder decides then."""
    size = image_size(path)
    if size is not None:
        w, h = size
        limit = max_image_pixels()
        if w * h > limit:
            raise InputError(
                f"{path}: {w}x{h} is {w * h / 1e6:.0f} MP, above the {limit / 1e6:g} MP limit for "
                f"images (set {MAX_IMAGE_PIXELS_ENV} to allow more)"
            )
    return size


def require_image(path: str | os.PathLike[str]) -> tuple[int, int]:
    """`check_image`, and InputError when the header is not an image's we know (what we cannot
    size from its header we do not decode)."""
    size = check_image(path)
    if size is None:
        raise InputError(f"{path} is not a readable image (expected JPEG, PNG, BMP, WebP, ...)")
    return size


# ----------------------------------------------------------------------------- headers


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, JPEG, WebP, BMP, GIF, TIFF or PNM file;
    None for anything else (or a header too damaged to say)."""
    try:
        with open(Path(path), "rb") as f:
            head = f.read(64)
            for parse in (_png, _gif, _bmp, _webp, _pnm):
                size = parse(head, f)
                if size is not None:
                    return size
            if head[:2] == b"\xff\xd8":
                return _jpeg(f)
            if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
                return _tiff(f, head)
    except (OSError, struct.error, ValueError):
        return None
    return None


def _png(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _gif(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if head[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    return struct.unpack("<HH", head[6:10])


def _bmp(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if head[:2] != b"BM" or len(head) < 26:
        return None
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        return struct.unpack("<HH", head[18:22])
    w, h = struct.unpack("<ii", head[18:26])
    return abs(w), abs(h)  # a negative height is a top-down bitmap


def _webp(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    kind = head[12:16]
    if kind == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if kind == b"VP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    return None


def _pnm(head: bytes, f: BinaryIO) -> tuple[int, int] | None:
    if len(head) < 2 or head[0:1] != b"P" or head[1:2] not in b"123456":
        return None
    f.seek(2)
    text = f.read(1024)
    text = re.sub(rb"#[^\n]*", b" ", text)  # comments may sit between the fields
    fields = text.split()
    if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()):
        return None
    return int(fields[0]), int(fields[1])


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(f: BinaryIO) -> tuple[int, int] | None:
    """Walk the JPEG markers (seeking over each segment's data) to the first SOF."""
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            return None  # out of sync: not a marker where one must be
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code == 0xD8 or 0xD0 <= code <= 0xD7 or code == 0x01:
            continue  # markers without a length
        if code in (0xD9, 0xDA):
            return None  # end of image / start of scan before any frame header
        (length,) = struct.unpack(">H", f.read(2))
        if length < 2:
            return None
        if code in _SOF:
            h, w = struct.unpack(">xHH", f.read(5))
            return w, h
        f.seek(length - 2, os.SEEK_CUR)


def _tiff(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """The first IFD's ImageWidth (256) and ImageLength (257); classic TIFF and BigTIFF."""
    e = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\0", b"\0+")
    if big:
        (offset,) = struct.unpack(e + "Q", head[8:16])
        count_fmt, entry_size = "Q", 20
    else:
        (offset,) = struct.unpack(e + "I", head[4:8])
        count_fmt, entry_size = "H", 12
    f.seek(offset)
    (count,) = struct.unpack(e + count_fmt, f.read(struct.calcsize(count_fmt)))
    found: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        entry = f.read(entry_size)
        if len(entry) < entry_size:
            break
        tag, typ = struct.unpack(e + "HH", entry[:4])
        if tag not in (256, 257):
            continue
        value = entry[12:] if big else entry[8:]
        fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)
        if fmt is None:
            return None
        (found[tag],) = struct.unpack(e + fmt, value[: struct.calcsize(fmt)])
        if len(found) == 2:
            return found[256], found[257]
    return None
