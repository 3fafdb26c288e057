"""Safe file primitives for the model cache: an exclusive lock file, files that cannot be
redirected through a planted symbolic link, and ordinary permissions for what we keep.

The cache may be shared (several CLIs, Ray actors on one machine, an NFS home), so whoever
fetches a file holds `NAME.lock` beside it; a second fetcher waits, then finds the file there.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamswap.errors import ModelError
from streamswap.files import ordinary_mode

try:
    import fcntl
except ImportError:  # not POSIX: no flock; fetches are then not serialised between processes
    fcntl = None  # type: ignore[assignment]  # the optional-module idiom: keeps fcntl typed where it exists

log = logging.getLogger(__name__)

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def disk_error(exc: OSError, path: Path) -> ModelError:
    """The one-line ModelError for an OSError while writing `path`."""
    if exc.errno == errno.ENOSPC:
        return ModelError(f"disk full while writing {path}; free some space or point STREAMSWAP_HOME at a larger disk")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ModelError(
            f"cannot write {path} ({exc.strerror}); make the folder writable or set "
            "STREAMSWAP_HOME to a writable folder"
        )
    if exc.errno == errno.ELOOP:
        return ModelError(f"{path} is a symbolic link, which the model cache never creates; remove it and retry")
    return ModelError(f"cannot write {path}: {exc.strerror or exc}")


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on the lock file `path` (created if absent, never through a
    symlink) for the duration of the block; waits for another holder first."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o666)
    except OSError as exc:
        raise disk_error(exc, path) from exc
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another process that is fetching %s", what)
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def open_append(path: Path) -> int:
    """A write descriptor appending to `path`: a new file is created with O_EXCL, an existing
    one is opened with O_NOFOLLOW, so neither lands on a planted symlink's target."""
    flags = os.O_WRONLY | os.O_APPEND | O_NOFOLLOW | O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ModelError(f"{path} is not a regular file; remove it and retry")
    return fd


def open_read(path: Path) -> int:
    """A read descriptor for `path`, refusing a symlink (ELOOP)."""
    return os.open(path, os.O_RDONLY | O_NOFOLLOW | O_CLOEXEC)


def is_plain_file(path: Path) -> bool:
    """True when `path` exists and is a regular file itself (not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def temp_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file in `path`'s folder (random name, O_EXCL: mkstemp), with ordinary
    permissions rather than mkstemp's 0o600, since it becomes a file we keep."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.fchmod(fd, ordinary_mode())
    return fd, Path(tmp)
