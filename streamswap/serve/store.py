"""Job records in SQLite (`jobs.db` under the data dir), so the job list outlives the server.

Every record is stored with its URLs' credentials redacted (`streamswap.redact`): what the API
shows is what is on disk. The paths a job runs on are server paths inside the data dir.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from streamswap.redact import redact_data

#: states a job ends in; `queued` and `running` ones are resumed when the server starts again
FINAL_STATES = ("done", "cancelled", "failed")


@dataclass(frozen=True)
class JobRecord:
    """One job. sources/target: server paths of the inputs; output: where the result goes;
    options: the swap options (a `SwapOptions` as a dict); state: queued, running, done,
    cancelled or failed; frames/frames_expected/fps/eta_s: progress; result: the file to
    download (the output, or its playable partial after a cancel); error: the one-line reason a
    job failed; notes: what the job reported; resumed: how often a restart picked it up."""

    id: str
    created: float
    sources: tuple[str, ...]
    target: str
    output: str
    options: dict[str, Any]
    kind: str = "video"
    state: str = "queued"
    frames: int = 0
    frames_expected: int | None = None
    fps: float = 0.0
    eta_s: float | None = None
    faces_swapped: int = 0
    result: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    resumed: int = 0
    updated: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        """What the API shows (file names only, not the data dir's layout)."""
        d = asdict(self)
        d["sources"] = [Path(p).name for p in self.sources]
        d["target"] = Path(self.target).name
        d["output"] = Path(self.output).name
        d["result"] = Path(self.result).name if self.result else None
        opts = d["options"]
        for key in ("sources", "target_faces"):
            opts[key] = [Path(p).name for p in opts.get(key, [])]
        if opts.get("generator"):
            opts["generator"] = Path(opts["generator"]).name
        return redact_data(d)


_COLUMNS = tuple(f.name for f in fields(JobRecord))


class JobStore:
    """The records, one row each (a JSON document keyed by id), safe to use from any thread."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created REAL, record TEXT)")
        self._lock = threading.Lock()

    def put(self, record: JobRecord) -> JobRecord:
        """Insert or replace `record` (redacted), stamping `updated`; returns what was stored."""
        record = replace(record, updated=time.time())
        doc = redact_data(asdict(record))
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs (id, created, record) VALUES (?, ?, ?)",
                (record.id, record.created, json.dumps(doc)),
            )
        return _record(doc)

    def get(self, job_id: str) -> JobRecord | None:
        """The record of `job_id`, or None."""
        with self._lock:
            row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(json.loads(row[0])) if row else None

    def all(self) -> list[JobRecord]:
        """Every record, the newest first."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM jobs ORDER BY created DESC").fetchall()
        return [_record(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _record(doc: dict[str, Any]) -> JobRecord:
    doc = {k: v for k, v in doc.items() if k in _COLUMNS}
    doc["sources"] = tuple(doc.get("sources", ()))
    doc["notes"] = tuple(doc.get("notes", ()))
    return JobRecord(**doc)
