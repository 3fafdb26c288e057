"""Uploads streamed to disk with a byte cap, and server paths confined to the data dir.

A multipart body is parsed as it arrives (python-multipart's push parser): each file part is
written straight into the job's folder, and the request is refused (413) as soon as it passes
the cap, so nothing is held in memory or spooled to a temporary folder outside the data dir.
Images are then checked against the project's pixel caps (`streamswap.limits`) and videos
against its frame-size caps by `check_job_paths`, before any job is queued.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from streamswap.errors import InputError

MAX_FIELD_BYTES = 64 * 1024
MAX_FILES = 16
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


class TooLarge(InputError):
    """The request body passed the upload cap."""


@dataclass
class Form:
    """A parsed multipart body: text fields, and file fields as the paths they were saved to."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)


def confine(data_dir: Path, name: str) -> Path:
    """The server path `name` (relative to the data dir, or absolute inside it), resolved, or
    InputError: a `..` component, a path outside the data dir, or a symlink that leads out."""
    if not name or "\0" in name:
        raise InputError("empty server path")
    p = Path(name)
    if ".." in p.parts:
        raise InputError(f"server path {name!r} contains '..': give a path inside the data dir")
    root = data_dir.resolve()
    full = (p if p.is_absolute() else root / p).resolve()  # follows symlinks: a link out ends outside
    if not full.is_relative_to(root):
        raise InputError(f"server path {name!r} is outside the data dir")
    if not full.is_file():
        raise InputError(f"server path {name!r} is not a file in the data dir")
    return full


def safe_suffix(filename: str) -> str:
    """The suffix of an uploaded file's name if it is a plain one ('.mp4'), else ''."""
    suffix = Path(filename).suffix
    return suffix.lower() if _SAFE_SUFFIX.fullmatch(suffix) else ""


async def read_form(
    content_type: str, body: AsyncIterator[bytes], folder: Path, *, max_bytes: int, stem: str = "upload"
) -> Form:
    """Parse a multipart/form-data body into `folder` (which must exist): file part k of field F is
    saved as `F-k-STEM.SUFFIX` (the client's name, reduced to
    plain characters). TooLarge past `max_bytes` in all;
    InputError for a body that is not multipart or too many files."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, params = parse_options_header(content_type)
    if kind == b"application/x-www-form-urlencoded":  # fields only (server paths, options)
        return await _read_urlencoded(body)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise InputError("send the job as multipart/form-data (or urlencoded fields naming server paths)")
    form = Form()
    state: dict[str, object] = {"headers": {}, "field": b"", "value": b""}
    current: dict[str, object] = {}
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        current.clear()
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        _, disp = parse_options_header(headers.get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", name):
            raise InputError(f"bad form field name {name!r}")
        current["name"] = name
        if b"filename" in disp:
            count = sum(len(v) for v in form.files.values())
            if count >= MAX_FILES:
                raise InputError(f"at most {MAX_FILES} files per request")
            k = len(form.files.get(name, []))
            client = disp[b"filename"].decode("utf-8", "replace")
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(client).stem)[:40].strip("_")  # shown in the job list
            path = folder / f"{name}-{k}{'-' + stem if stem else ''}{safe_suffix(client)}"
            current["file"] = open(path, "xb")  # noqa: SIM115 - closed in on_part_end or below
            form.files.setdefault(name, []).append(path)
        else:
            current["value"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        f = current.get("file")
        if f is not None:
            f.write(data[start:end])  # type: ignore[attr-defined]
            return
        value = current["value"]
        assert isinstance(value, bytearray)
        value.extend(data[start:end])
        if len(value) > MAX_FIELD_BYTES:
            raise InputError(f"form field {current['name']} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        f = current.pop("file", None)
        if f is not None:
            f.close()  # type: ignore[attr-defined]
        else:
            value = current.get("value")
            assert isinstance(value, bytearray)
            form.fields[str(current["name"])] = value.decode("utf-8", "replace")

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge(f"upload is over the server's limit of {max_bytes / 1e6:.0f} MB (--max-upload-mb)")
            parser.write(chunk)
        parser.finalize()
    except InputError:
        raise
    except Exception as exc:  # python-multipart's parse errors: a malformed body
        raise InputError(f"malformed multipart body ({type(exc).__name__})") from None
    finally:
        f: IO[bytes] | None = current.get("file")  # type: ignore[assignment]
        if f is not None:
            f.close()
    return form


async def _read_urlencoded(body: AsyncIterator[bytes]) -> Form:
    from urllib.parse import parse_qsl

    data = bytearray()
    async for chunk in body:
        data.extend(chunk)
        if len(data) > MAX_FIELD_BYTES:
            raise TooLarge(f"form fields over {MAX_FIELD_BYTES} bytes")
    return Form(fields=dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)))
