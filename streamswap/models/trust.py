"""What a download must look like before it is trusted (and, on first use, pinned).

A mirror that answers 200 with an error page, a body cut short, a resume from the wrong
offset or an endless stream must never end up pinned as the model: so the size must fall in
the catalogue's range, the first bytes must be the file format's, the body must be complete,
and an https download may only be redirected to https.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamswap.errors import ModelError

#: the cap for a download with no catalogue range (a model file larger than this is not ours)
GLOBAL_MAX_BYTES = 8 << 30
HEAD_BYTES = 16  # enough for every format check below

#: ModelProto's field tags (field number << 3 | wire type) an ONNX file can start with:
#: ir_version(1, varint), producer_name(2), producer_version(3), domain(4), model_version(5,
#: varint), doc_string(6), graph(7), opset_import(8), metadata_props(14)
ONNX_FIRST_TAGS = frozenset({0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
ZIP_MAGIC = b"PK\x03\x04"
#: torch.save's legacy (pre-1.6, non-zip) format: pickle protocol 2, then its magic number as a
#: long; older published checkpoints use it and `weights_only=True` still loads it
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"


class Untrusted(ModelError):
    """The server's answer is not the file it should be: nothing is kept or pinned."""


@dataclass(frozen=True)
class Expect:
    """What a download must be: name (for messages), size bounds in bytes, and format."""

    name: str = "the file"
    min_bytes: int = 0
    max_bytes: int = GLOBAL_MAX_BYTES
    kind: str | None = None  # "zip", "pth", "onnx", "safetensors" or None (not checked)

    @classmethod
    def for_file(cls, filename: str, size_range: tuple[int, int] | None = None) -> Expect:
        low, high = size_range or (0, GLOBAL_MAX_BYTES)
        return cls(filename, low, high, kind_of(filename))


def kind_of(filename: str) -> str | None:
    """The format a file name promises, from its suffix."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return suffix if suffix in ("zip", "pth", "onnx", "safetensors") else None


def human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def size_problem(size: int, expect: Expect) -> str | None:
    """Why `size` bytes cannot be `expect`'s file, or None."""
    if expect.min_bytes <= size <= expect.max_bytes:
        return None
    return f"{human(size)}, but {expect.name} is {human(expect.min_bytes)} to {human(expect.max_bytes)}"


def _looks_like_text(head: bytes) -> str:
    stripped = head.lstrip()
    if stripped.startswith(b"<"):
        return "it starts with '<': an HTML or XML page"
    if stripped.startswith((b"{", b"[")):
        return "it starts with JSON"
    return f"it starts with {head[:8]!r}"


def format_problem(head: bytes, expect: Expect) -> str | None:
    """Why a file starting with `head` is not of `expect.kind`, or None (also for no kind)."""
    kind = expect.kind
    if kind is None:
        return None
    if len(head) < HEAD_BYTES:
        return f"only {len(head)} bytes"
    if kind == "zip" and head.startswith(ZIP_MAGIC):
        return None
    if kind == "pth" and head.startswith((ZIP_MAGIC, TORCH_LEGACY_MAGIC)):
        return None
    if kind == "onnx" and head[0] in ONNX_FIRST_TAGS and (head[0] != 0x08 or 1 <= head[1] <= 64):
        return None  # a ModelProto field tag; ir_version (when first) is a small number
    if kind == "safetensors":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return None
    wanted = {
        "zip": "a zip archive (PK\\x03\\x04)",
        "pth": "a torch checkpoint (zip or legacy pickle)",
        "onnx": "an ONNX protobuf",
        "safetensors": "a safetensors header",
    }[kind]
    return f"not {wanted}: {_looks_like_text(head)}"


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ContentRange:
    """A parsed `Content-Range: bytes START-END/TOTAL` (total None for `*`)."""

    start: int
    end: int
    total: int | None


def parse_content_range(value: str | None) -> ContentRange | None:
    """The range a 206 says it carries, or None when absent or malformed."""
    m = _CONTENT_RANGE.match(value or "")
    if m is None:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return ContentRange(int(m.group(1)), int(m.group(2)), total)


def unsatisfied_total(value: str | None) -> int | None:
    """The total a 416 states (`Content-Range: bytes */TOTAL`), or None."""
    m = _UNSATISFIED.match(value or "")
    return int(m.group(1)) if m else None


def range_problem(cr: ContentRange | None, offset: int, length: int | None) -> str | None:
    """Why a 206 answering `Range: bytes=OFFSET-` cannot be appended at `offset`, or None:
    it must start there, run to the end of a stated total, and match its Content-Length."""
    if cr is None:
        return "a 206 without a valid Content-Range"
    said = f"bytes {cr.start}-{cr.end}/{cr.total if cr.total is not None else '*'}"
    if cr.start != offset:
        return f"{said} when asked from byte {offset}"
    if cr.total is None or cr.end != cr.total - 1 or cr.end < cr.start:
        return f"an inconsistent range ({said})"
    if length is not None and length != cr.end - cr.start + 1:
        return f"Content-Length {length} for {said}"
    return None


def check_redirect(from_url: str, to_url: str) -> None:
    """Refuse a redirect that leaves https (anything else an http URL may do)."""
    if urlsplit(from_url).scheme.lower() == "https" and urlsplit(to_url).scheme.lower() != "https":
        raise Untrusted(
            f"refused the redirect from {from_url} to {to_url}: an https download is only "
            "followed to https; check the URL (or STREAMSWAP_MIRROR) or fetch the file by hand"
        )
