"""How StreamSwap writes a file it hands to the user: never under a name it does not own, never
a partial file under the final name.

- `temp_beside(final)`: a new, exclusively created (O_EXCL) hidden file in the final file's
  folder (so the rename is atomic and a planted symlink cannot redirect the write), keeping the
  suffix (FFmpeg picks the container by it).
- `publish(tmp, final)`: ordinary permissions (0666 & ~umask; mkstemp creates 0600), then an
  atomic rename over `final`.
- `partial_name(final)`: where a stopped or failed job leaves what it wrote, `NAME.partial.EXT`,
  so an existing complete output is untouched until a complete one replaces it.
- `replacing(final)` / `write_atomic(final, data)`: both of the above around a write (the
  temporary file is removed if the write fails).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_beside(final: str | os.PathLike[str]) -> Path:
    """Create an empty hidden temporary file next to `final` (same suffix) and return its path."""
    final = Path(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    return Path(name)


def partial_name(final: str | os.PathLike[str]) -> Path:
    """`out.mp4` -> `out.partial.mp4`: the visible name of a stopped or failed job's output."""
    final = Path(final)
    return final.with_name(f"{final.stem}.partial{final.suffix}")


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask() sets it,
    which would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def ordinary_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def publish(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Give `tmp` ordinary permissions and rename it over `final` (atomic). Returns `final`."""
    os.chmod(tmp, ordinary_mode())
    os.replace(tmp, final)
    return Path(final)


@contextmanager
def replacing(final: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path beside `final`; when the block ends without an error, the
    file (flushed to disk first with `fsync`) replaces `final` atomically."""
    tmp = temp_beside(final)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(final: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` (str as UTF-8) to `final` through `replacing`. Returns `final`."""
    with replacing(final) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(final)


__all__ = ["ordinary_mode", "partial_name", "publish", "replacing", "temp_beside", "umask", "write_atomic"]


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, hex (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
