"""How StreamSwap writes a file it hands to the user: never under a name it does not own, never
a partial file under the final name.

- `temp_beside(final)`: a new, exclusively created (O_EXCL) hidden file in the final file's
  folder (so the rename is atomic and a planted symlink cannot redirect the write), keeping the
  suffix (FFmpeg picks the container by it).
- `publish(tmp, final)`: ordinary permissions (0666 & ~umask; mkstemp creates 0600), then an
  atomic rename over `final`.
- `partial_name(final)`: where a stopped or failed job leaves what it wrote, `NAME.partial.EXT`,
  so an existing complete output is untouched until a complete one replaces it.
"""

from __future__ import annotations

import os
import tempfile
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


__all__ = ["ordinary_mode", "partial_name", "publish", "temp_beside", "umask"]
