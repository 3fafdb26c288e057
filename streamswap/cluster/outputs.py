"""What keeps two runs, or a damaged file, from passing for a finished output.

- `OutputLock`: an exclusive, non-blocking `flock` held on `.<name>.streamswap-work.lock` beside
  the output (next to its work directory, which a job may remove and re-create, so the lock lives
  beside it) for as long as a job works on that output; a second job on the same output is
  refused with one line naming the holder's pid. The kernel drops the lock when the holder dies,
  so a killed job never leaves a stale lock behind.
- The completion record: `.<name>.streamswap-done.json` beside the output, written once the
  output is complete, with its frame count, size and SHA-256. A batch counts an output as done
  only when this record matches the file; a file that merely exists is not done.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from streamswap.errors import InputError
from streamswap.files import sha256_of, write_atomic


def lock_path_for(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    return out.with_name(f".{out.name}.streamswap-work.lock")


def done_path_for(output: str | os.PathLike[str]) -> Path:
    out = Path(output)
    return out.with_name(f".{out.name}.streamswap-done.json")


class OutputLock:
    """The exclusive lock of one output's work (see the module docstring). `acquire` or InputError;
    `release` (idempotent) unlocks and removes the lock file."""

    def __init__(self, output: str | os.PathLike[str], fd: int, path: Path) -> None:
        self.output, self._fd, self.path = str(output), fd, path

    @classmethod
    def acquire(cls, output: str | os.PathLike[str]) -> OutputLock:
        path = lock_path_for(output)
        for _ in range(10):  # the file may be removed by its holder between open and flock: retry
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise InputError(f"cannot lock {output} for this job ({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    who = f" (pid {holder})" if holder else ""
                    raise InputError(
                        f"another streamswap job{who} is working on {output}; wait for it to finish "
                        f"or stop it (lock: {path})"
                    ) from None
                raise InputError(f"cannot lock {output} for this job ({exc.strerror or exc})") from None
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # we locked a file its previous holder had just removed: lock the new one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return cls(output, fd, path)
        raise InputError(f"cannot lock {output} for this job (its lock file keeps changing: {path})")

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: no one else has it now
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CompletionRecord:
    """An output written complete: frames, bytes, SHA-256, and the job's fingerprint."""

    frames: int
    size: int
    sha256: str
    key: str = ""


def record_complete(output: str | os.PathLike[str], frames: int, key: str = "") -> CompletionRecord:
    """Hash the finished `output` and write its completion record beside it (atomically)."""
    out = Path(output)
    record = CompletionRecord(frames, out.stat().st_size, sha256_of(out), key)
    write_atomic(done_path_for(out), json.dumps(asdict(record), indent=1))
    return record


def completion(output: str | os.PathLike[str]) -> CompletionRecord | None:
    """The output's completion record when the file still matches it (size and SHA-256); None when
    there is no record, it is unreadable, or the file is missing or differs."""
    out = Path(output)
    try:
        record = CompletionRecord(**json.loads(done_path_for(out).read_text()))
        if not out.is_file() or out.stat().st_size != record.size:
            return None
        return record if sha256_of(out) == record.sha256 else None
    except (OSError, ValueError, TypeError):
        return None


def forget_completion(output: str | os.PathLike[str]) -> None:
    done_path_for(output).unlink(missing_ok=True)


__all__ = [
    "CompletionRecord",
    "OutputLock",
    "completion",
    "done_path_for",
    "forget_completion",
    "lock_path_for",
    "record_complete",
]
