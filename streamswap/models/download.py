"""HTTP download with resume, atomic rename and SHA-256: the one way StreamSwap fetches files.

The partial file lives beside the target as `NAME.part`; an interrupted download (the server
cut the connection, Ctrl-C, a crash) resumes from it with an HTTP `Range` request, on a retry
within the same call or on the next call. Only a complete file whose hash is accepted is
renamed to the final name, so a half-written file never carries the final name.
"""

from __future__ import annotations

import errno
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

from streamswap.errors import ModelError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
#: progress(bytes_done, bytes_total_or_None)
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class DownloadSettings:
    """How hard to try: attempts per call, back-off between them, socket timeout (s)."""

    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 30.0


def _hash_into(hasher: "hashlib._Hash", path: Path) -> "hashlib._Hash":
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            hasher.update(block)
    return hasher


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    return _hash_into(hashlib.sha256(), path).hexdigest()


def _disk_error(exc: OSError, path: Path) -> ModelError:
    if exc.errno == errno.ENOSPC:
        return ModelError(f"disk full while writing {path}; free some space or point "
                          "STREAMSWAP_HOME at a larger disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ModelError(f"cannot write {path} ({exc.strerror}); make the folder writable or set "
                          "STREAMSWAP_HOME to a writable folder")
    return ModelError(f"cannot write {path}: {exc.strerror or exc}")


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    req = urllib.request.Request(url, headers={"User-Agent": "streamswap"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (https/http URLs from the catalogue)


@dataclass
class _Partial:
    """The `.part` file and the running hash of the bytes in it."""

    path: Path
    hasher: "hashlib._Hash"

    @classmethod
    def open(cls, path: Path) -> "_Partial":
        hasher = hashlib.sha256()
        if path.exists():  # resume: the hash must cover the bytes already there
            _hash_into(hasher, path)
        return cls(path, hasher)

    def restart(self) -> None:
        self.path.unlink(missing_ok=True)
        self.hasher = hashlib.sha256()


def _one_attempt(url: str, partial: _Partial, settings: DownloadSettings,
                 progress: Progress | None) -> bool:
    """Append to the part file from where it ends; True when the server says the file is complete."""
    part = partial.path
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, settings.timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range past the end: the part is already whole
            return True
        raise
    with resp:
        if offset and resp.status != 206:  # server ignored Range: start again
            log.info("server does not resume; restarting %s", url)
            offset = 0
            partial.restart()
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        done = offset
        try:
            with open(part, "ab") as f:
                while block := resp.read(CHUNK):
                    f.write(block)
                    partial.hasher.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except OSError as exc:
            if isinstance(exc, (ConnectionError, TimeoutError)) or not exc.errno:
                raise
            raise _disk_error(exc, part) from exc
        return total is None or done >= total


def download(url: str, dest: Path, *, expected_sha256: str | None = None,
             settings: DownloadSettings = DownloadSettings(),
             progress: Progress | None = None) -> str:
    """Download `url` to `dest` atomically and return its hex SHA-256.

    Resumes from `dest.part` if present; retries cut connections with back-off. When
    `expected_sha256` is given and the finished file differs, the file is deleted and
    `ModelError` raised. Raises `ModelError` for unreachable URLs, HTTP errors and disk errors.
    """
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, dest.parent) from exc
    partial = _Partial.open(part)
    last_error: Exception | None = None
    for attempt in range(settings.attempts):
        try:
            if _one_attempt(url, partial, settings, progress):
                break
            last_error = ConnectionError("connection closed before the end of the file")
        except urllib.error.HTTPError as exc:
            raise ModelError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the URL "
                             f"or fetch the file elsewhere into {dest.parent}") from exc
        except ModelError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                TimeoutError, OSError) as exc:
            last_error = exc
        log.info("download of %s interrupted (%s); attempt %d/%d", url, last_error, attempt + 1,
                 settings.attempts)
        if attempt + 1 < settings.attempts:
            time.sleep(settings.backoff_s * (2 ** attempt))
    else:
        reason = getattr(last_error, "reason", last_error)
        raise ModelError(f"cannot download {url} ({reason}); the partial file is kept for resuming; "
                         f"or fetch it elsewhere and put it in {dest.parent}")
    digest = partial.hasher.hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        part.unlink(missing_ok=True)
        raise ModelError(f"SHA-256 mismatch for {dest.name} from {url}: got {digest[:16]}…, expected "
                         f"{expected_sha256[:16]}…; the file was discarded (corrupt or tampered)")
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise _disk_error(exc, dest) from exc
    return digest
