"""A job's work directory: what a re-run of an interrupted job keeps.

`<output folder>/.<output name>.streamswap-work/` holds `plan.json` (the input's identity, the
job's settings and the chunk plan) and, per finished chunk, `chunk-NNNN.mp4` with a
`chunk-NNNN.json` record written after it (a chunk counts as finished only when both exist, so a
job killed mid-write leaves nothing that looks done). The record holds the chunk file's SHA-256,
checked when a re-run would reuse the chunk: a chunk that does not match (or a record without a
hash, or one that cannot be read) is deleted and run again, never stitched. Workers send the chunk's bytes back
through Ray's object store and the driver alone writes here, so the workers of a multi-machine
cluster need no shared output folder. A plan that no longer matches (another
input file, changed settings) is discarded with its chunks. The directory is removed once the
output is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from streamswap.cluster.chunks import Chunk
from streamswap.files import sha256_of, write_atomic

log = logging.getLogger(__name__)

PLAN = "plan.json"


@dataclass(frozen=True)
class ChunkRecord:
    """A finished chunk: frames written, frames processed (with warm-up and look-ahead), seconds,
    which worker (pid, host) ran it, and the SHA-256 of its file (filled in by `WorkDir` when it
    stores the chunk)."""

    number: int
    frames: int
    processed: int
    seconds: float
    worker: int
    pid: int
    host: str
    sha256: str = ""


def work_dir_for(output: str | Path) -> Path:
    """The work directory of the job writing `output` (next to it, hidden)."""
    out = Path(output)
    return out.with_name(f".{out.name}.streamswap-work")


def input_identity(path: str | Path) -> dict[str, Any]:
    """What identifies an input file's content cheaply: absolute path, size, mtime."""
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(obj: Any) -> str:
    """A short stable hash of JSON-able settings."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class WorkDir:
    """The chunks of one job on disk; see the module docstring."""

    def __init__(self, root: Path, key: str, chunks: list[Chunk]) -> None:
        self.root, self.key, self.chunks = root, key, chunks
        self._checked: dict[int, ChunkRecord] = {}  # records whose chunk file was hashed and matched

    @classmethod
    def open(cls, output: str | Path, key: str, chunks: list[Chunk]) -> WorkDir:
        """The work directory for `output`, keeping finished chunks if its plan has this `key`
        (a fingerprint of input and settings) and these chunks; starting afresh otherwise."""
        root = work_dir_for(output)
        plan = {"key": key, "chunks": [asdict(c) for c in chunks]}
        old = _read_json(root / PLAN)
        if old != plan and root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        if old != plan:
            _write_json(root / PLAN, plan)
        wd = cls(root, key, chunks)
        wd.clean_partial()
        return wd

    def chunk_path(self, number: int) -> Path:
        return self.root / f"chunk-{number:04d}.mp4"

    def partial_path(self, number: int) -> Path:
        """Where a worker writes a chunk before it is known complete."""
        return self.root / f"chunk-{number:04d}.part.mp4"

    def record(self, number: int) -> ChunkRecord | None:
        """The finished chunk's record (None: not finished). A chunk kept from an earlier run is
        hashed once and must match its record; one that does not is deleted (and so run again)."""
        if number in self._checked:
            return self._checked[number]
        meta = self.root / f"chunk-{number:04d}.json"
        data = _read_json(meta)
        path = self.chunk_path(number)
        if data is None or not path.is_file():
            return None
        try:
            record = ChunkRecord(**data)
            ok = bool(record.sha256) and record.number == number and sha256_of(path) == record.sha256
        except (TypeError, ValueError, OSError):
            record, ok = None, False
        if not ok or record is None:
            log.warning(
                "chunk %d in %s does not match its record (damaged or changed): it is run again", number, self.root
            )
            meta.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            return None
        self._checked[number] = record
        return record

    def finished(self) -> dict[int, ChunkRecord]:
        return {c.number: r for c in self.chunks if (r := self.record(c.number)) is not None}

    def commit(self, number: int, data: bytes, record: ChunkRecord) -> None:
        """Store a finished chunk's file (written under a partial name, then renamed), then its
        record: a crash in between leaves a chunk that is not counted as finished."""
        part = self.partial_path(number)
        part.write_bytes(data)
        os.replace(part, self.chunk_path(number))
        record = replace(record, sha256=hashlib.sha256(data).hexdigest())
        _write_json(self.root / f"chunk-{number:04d}.json", asdict(record))
        self._checked[number] = record

    def mark_done(self, number: int, record: ChunkRecord) -> None:
        """Record a chunk whose file is already complete at `chunk_path(number)` (a resumable
        single-process job writes it there itself); its SHA-256 is taken here."""
        record = replace(record, sha256=sha256_of(self.chunk_path(number)))
        _write_json(self.root / f"chunk-{number:04d}.json", asdict(record))
        self._checked[number] = record

    def clean_partial(self) -> None:
        """Remove what unfinished chunk runs left (their partial and temporary files)."""
        for p in self.root.glob("*.part*"):
            p.unlink(missing_ok=True)
        for p in self.root.glob(".chunk-*"):
            p.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._checked.clear()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=1))
