"""HTTP download with resume, atomic rename, SHA-256 and trust checks: the one way StreamSwap
fetches files.

The partial file lives beside the target as `NAME.part`; an interrupted download (the server
cut the connection, Ctrl-C, a crash) resumes from it with an HTTP `Range` request, on a retry
within the same call or on the next call. Only a complete file that passes `trust` (size in
range, format magic, every byte the server announced) and whose hash is accepted is renamed to
the final name, so a half-written or wrong file never carries the final name. Callers that
share a cache hold `files.exclusive` around this (the registry does).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from streamswap.errors import ModelError
from streamswap.models.files import disk_error, is_plain_file, open_append, open_read
from streamswap.models.trust import (
    HEAD_BYTES,
    Expect,
    Untrusted,
    check_redirect,
    format_problem,
    human,
    parse_content_range,
    range_problem,
    size_problem,
    unsatisfied_total,
)

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_REDIRECTS = 5
#: progress(bytes_done, bytes_total_or_None)
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DownloadSettings:
    """How hard to try: attempts per call, back-off between them, socket timeout (s)."""

    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 30.0


def _hash_into(hasher: hashlib._Hash, path: Path) -> hashlib._Hash:
    with open(open_read(path), "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            hasher.update(block)
    return hasher


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects and never from https to anything else."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        try:
            check_redirect(req.full_url, newurl)
        except Untrusted:
            fp.close()
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    req = urllib.request.Request(url, headers={"User-Agent": "streamswap"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    opener = urllib.request.build_opener(_HttpsOnlyRedirects())  # per call: proxies from the env
    return opener.open(req, timeout=timeout)  # an HTTPResponse: the catalogue's URLs are https/http


class _Restart(Exception):
    """The server's answer to a resume cannot be appended: start again from byte 0."""


@dataclass
class _Partial:
    """The `.part` file, its size, the running hash of its bytes, and the total the server
    announced (None until a response says it)."""

    path: Path
    hasher: hashlib._Hash
    size: int = 0
    total: int | None = None

    @classmethod
    def open(cls, path: Path, expect: Expect) -> _Partial:
        partial = cls(path, hashlib.sha256())
        if path.is_symlink():  # not ours (we never make links): drop the link, never its target
            log.warning("%s is a symbolic link; removing it and starting again", path)
            partial.restart()
        elif path.exists() and not is_plain_file(path):
            raise ModelError(f"{path} is not a regular file; remove it and retry")
        elif path.exists():
            size = path.stat().st_size
            if size > expect.max_bytes:  # cannot be the start of a valid file
                partial.restart()
            else:  # resume: the hash must cover the bytes already there
                _hash_into(partial.hasher, path)
                partial.size = size
        return partial

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.total = None

    def head(self) -> bytes:
        with open(open_read(self.path), "rb") as f:
            return f.read(HEAD_BYTES)


def _advice(dest: Path) -> str:
    return (
        f"nothing was kept or pinned; check the URL (or STREAMSWAP_MIRROR) and retry, or fetch the "
        f"file elsewhere into {dest.parent}"
    )


def _announced(
    resp: http.client.HTTPResponse, url: str, offset: int, partial: _Partial, expect: Expect, dest: Path
) -> tuple[int, int | None]:
    """(offset the body starts at, total size or None) from the response headers; raises
    `_Restart` for a resume the server did not honour, `Untrusted` for an unusable answer."""
    length_header = resp.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.strip().isdigit() else None
    if resp.status == 206:
        cr = parse_content_range(resp.headers.get("Content-Range"))
        problem = range_problem(cr, offset, length)
        if problem and offset:
            raise _Restart(f"{url} answered a resume with {problem}")
        if problem:
            raise Untrusted(f"{url} answered a plain request with {problem}; {_advice(dest)}")
        assert cr is not None and cr.total is not None
        total: int | None = cr.total
    elif resp.status == 200:
        if offset:
            log.info("server does not resume; restarting %s", url)
            partial.restart()
            offset = 0
        total = length
    else:
        raise Untrusted(f"{url} answered HTTP {resp.status}, not the file; {_advice(dest)}")
    if total is None and not getattr(resp, "chunked", False):
        raise Untrusted(
            f"{url} sent neither Content-Length nor chunked encoding, so a cut transfer "
            f"could not be told from the whole file; {_advice(dest)}"
        )
    if total is not None:
        if offset and partial.total is not None and total != partial.total:
            raise _Restart(f"{url} changed size during the download ({partial.total} then {total} bytes)")
        problem = size_problem(total, expect)
        if problem:
            raise Untrusted(f"{url} announces {problem}; {_advice(dest)}")
    partial.total = total
    return offset, total


def _receive(
    resp: http.client.HTTPResponse,
    url: str,
    offset: int,
    partial: _Partial,
    expect: Expect,
    dest: Path,
    progress: Progress | None,
) -> bool:
    """Append the response body to the part file; True when the whole announced file is there."""
    offset, total = _announced(resp, url, offset, partial, expect, dest)
    done = offset
    try:
        with open(open_append(partial.path), "ab") as f:
            while block := resp.read(CHUNK):
                if done == 0 and len(block) >= HEAD_BYTES:  # fail fast on an error page
                    problem = format_problem(block[:HEAD_BYTES], expect)
                    if problem:
                        raise Untrusted(f"{url} did not send {expect.name}: {problem}; {_advice(dest)}")
                if done + len(block) > expect.max_bytes:  # an endless or oversized body
                    raise Untrusted(
                        f"{url} sent more than {human(expect.max_bytes)}, the most {expect.name} "
                        f"can be; stopped and discarded the partial file; {_advice(dest)}"
                    )
                f.write(block)
                partial.hasher.update(block)
                done += len(block)
                partial.size = done
                if progress:
                    progress(done, total)
    except OSError as exc:
        if isinstance(exc, (ConnectionError, TimeoutError)) or not exc.errno:
            raise
        raise disk_error(exc, partial.path) from exc
    if total is not None and done > total:
        raise Untrusted(f"{url} sent {done} bytes after announcing {total}; {_advice(dest)}")
    return total is None or done == total  # None: chunked, whose end the protocol checks


def _one_attempt(
    url: str, partial: _Partial, expect: Expect, dest: Path, settings: DownloadSettings, progress: Progress | None
) -> bool:
    """Append to the part file from where it ends (restarting from zero at most once when the
    server's resume is unusable); True when the part holds the whole file."""
    for _ in range(2):
        offset = partial.size
        try:
            resp = _open(url, offset, settings.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # range past the end: whole, if the total says so
                exc.close()
                if unsatisfied_total(exc.headers.get("Content-Range")) == offset:
                    partial.total = offset
                    return True
                log.info("416 without a matching total; restarting %s from zero", url)
                partial.restart()
                continue
            raise
        with resp:
            try:
                return _receive(resp, url, offset, partial, expect, dest, progress)
            except _Restart as why:
                log.warning("%s; restarting from zero", why)
                partial.restart()
    return False


def _check_whole(partial: _Partial, url: str, expect: Expect, dest: Path) -> None:
    """The last look before the hash: size, completeness and format of the finished part."""
    problem = size_problem(partial.size, expect)
    if problem is None and partial.total is not None and partial.size != partial.total:
        problem = f"{partial.size} of the {partial.total} bytes announced"
    if problem is None:
        problem = format_problem(partial.head(), expect)
    if problem:
        raise Untrusted(f"{url} did not send {expect.name}: {problem}; {_advice(dest)}")


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expect: Expect | None = None,
    settings: DownloadSettings = DownloadSettings(),
    progress: Progress | None = None,
) -> str:
    """Download `url` to `dest` atomically and return its hex SHA-256.

    Resumes from `dest.part` if present; retries cut connections with back-off. `expect` (default:
    the global size cap and the format `dest`'s suffix names) is checked before anything is kept;
    a failed check discards the partial file. When `expected_sha256` is given and the finished
    file differs, the file is deleted. Every failure is one `ModelError` line.
    """
    expect = expect or Expect.for_file(dest.name)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(exc, dest.parent) from exc
    partial = _Partial.open(part, expect)
    last_error: Exception | None = None
    try:
        for attempt in range(settings.attempts):
            try:
                if _one_attempt(url, partial, expect, dest, settings, progress):
                    break
                got = f": {partial.size} of {partial.total} bytes" if partial.total else ""
                last_error = ConnectionError(f"connection closed before the end of the file{got}")
            except urllib.error.HTTPError as exc:
                reason = " ".join(str(exc.reason).split())  # urllib's redirect-loop reason has newlines
                raise ModelError(
                    f"download of {url} failed: HTTP {exc.code} {reason}; check the URL "
                    f"or fetch the file elsewhere into {dest.parent}"
                ) from exc
            except ModelError:
                raise
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
                last_error = exc
            log.info("download of %s interrupted (%s); attempt %d/%d", url, last_error, attempt + 1, settings.attempts)
            if attempt + 1 < settings.attempts:
                time.sleep(settings.backoff_s * (2**attempt))
        else:
            cause = getattr(last_error, "reason", last_error)
            raise ModelError(
                f"cannot download {url} ({cause}); nothing was pinned and the partial file is "
                f"kept for resuming: retry later, or fetch it elsewhere and put it in {dest.parent}"
            )
        _check_whole(partial, url, expect, dest)
    except Untrusted:
        part.unlink(missing_ok=True)  # bytes from a server that misbehaved are not resumed
        raise
    digest = partial.hasher.hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise ModelError(
            f"SHA-256 mismatch for {dest.name} from {url}: got {digest[:16]}…, expected "
            f"{expected_sha256[:16]}…; the file was discarded (corrupt or tampered)"
        )
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise disk_error(exc, dest) from exc
    return digest
