"""Runs job records through the same API the CLI uses (`streamswap.api.run_job`, or the cluster's
`swap_cluster` with --ray-address), at most `jobs` at a time, updating their records as they go.

A cancel interrupts the job's graph, as Ctrl-C does, so the sink finalises a playable partial
(`NAME.partial.mp4`, audio up to the last frame). Stopping the server does the same to running
jobs but leaves them queued: the next start runs them again, and a resumable job (a long video,
or one asked to `resume`) keeps its finished segments (`streamswap.resume`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from streamswap.errors import InputError, StreamSwapError
from streamswap.options import SwapOptions
from streamswap.redact import redact_url
from streamswap.serve.settings import ServeSettings
from streamswap.serve.store import FINAL_STATES, JobRecord, JobStore

log = logging.getLogger(__name__)

#: form fields a job accepts, with their types and the `SwapOptions` field each sets
OPTION_FIELDS: dict[str, tuple[type, str]] = {
    "engine": (str, "engine"),
    "device": (str, "device"),
    "detect_every": (int, "detect_every"),
    "batch_size": (int, "batch_size"),
    "crf": (int, "crf"),
    "preset": (str, "preset"),
    "encoder": (str, "encoder"),
    "start": (float, "start_s"),
    "end": (float, "end_s"),
    "similarity": (float, "similarity"),
    "source_face_index": (int, "source_face_index"),
    "blocks": (int, "blocks"),
    "sr": (bool, "sr"),
    "resume": (bool, "resume"),
    "segment_seconds": (float, "segment_s"),
}


def options_from_form(
    fields: dict[str, str], sources: list[Path], target_faces: list[Path], settings: ServeSettings
) -> SwapOptions:
    """The swap options of a job from its form fields (InputError, one line, for a bad value)."""
    values: dict[str, Any] = {"engine": settings.engine, "device": settings.device}
    for name, text in fields.items():
        if name not in OPTION_FIELDS or text == "":
            continue
        kind, key = OPTION_FIELDS[name]
        try:
            if kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                    raise ValueError(text)
                values[key] = text.lower() in ("1", "true", "on", "yes")
            else:
                values[key] = kind(text)
        except ValueError:
            raise InputError(f"option {name}={text!r} is not a valid {kind.__name__}") from None
    return SwapOptions(
        sources=tuple(str(p) for p in sources),
        target_faces=tuple(str(p) for p in target_faces),
        overwrite=True,  # the output is the server's own file of this job (a rerun replaces it)
        **values,
    )


def new_id() -> str:
    """A job id: short, random, URL-safe."""
    return uuid.uuid4().hex[:12]


@dataclass
class _Running:
    graph: Any = None
    cancel: bool = False
    stopping: bool = False
    latest: Any = None  # the last frame the encoder took (a Frame): the running job's preview


class JobRunner:
    """`jobs` worker threads taking queued records in order (see the module docstring)."""

    def __init__(self, settings: ServeSettings, store: JobStore) -> None:
        self.settings, self.store = settings, store
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"serve-job-{i}", daemon=True) for i in range(settings.jobs)
        ]

    def start(self) -> int:
        """Start the workers and queue again every job a previous server left unfinished; how many."""
        again = 0
        for rec in sorted(self.store.all(), key=lambda r: r.created):
            if rec.state not in FINAL_STATES:
                self.store.put(replace(rec, state="queued", resumed=rec.resumed + 1))
                self._queue.put(rec.id)
                again += 1
        for t in self._threads:
            t.start()
        return again

    def submit(self, record: JobRecord) -> JobRecord:
        """Store a new record and queue it."""
        stored = self.store.put(record)
        self._queue.put(record.id)
        return stored

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a job: a queued one never runs; a running one stops cleanly (a playable partial).
        The record as it is now (None: no such job)."""
        with self._lock:  # the workers take a job under this lock: it is queued or running, not between
            rec = self.store.get(job_id)
            if rec is None or rec.state in FINAL_STATES:
                return rec
            run = self._running.get(job_id)
            if run is None:
                return self.store.put(replace(rec, state="cancelled", eta_s=None))
            if self.settings.ray_address and rec.kind == "video":
                raise InputError("a job on the Ray cluster cannot be cancelled from here (stop it with Ray)")
            run.cancel = True
            if run.graph is not None:
                run.graph.interrupt("cancelled")
        return self.store.get(job_id)

    def latest_frame(self, job_id: str) -> Any:
        """The frame a running job encoded last (a `Frame`, its image (H, W, 3) uint8 RGB on the
        job's device), or None: not running, or no frame yet."""
        run = self._running.get(job_id)
        return run.latest if run is not None else None

    def shutdown(self, timeout_s: float = 20.0) -> None:
        """Stop: running jobs are interrupted (their records stay queued, for the next start)."""
        self._stopping = True
        with self._lock:
            for run in self._running.values():
                run.stopping = True
                if run.graph is not None:
                    run.graph.interrupt("server stopping")
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # --- the workers ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping:
                return
            with self._lock:
                rec = self.store.get(job_id)
                if rec is None or rec.state != "queued":
                    continue  # cancelled while it waited
                run = _Running()
                self._running[job_id] = run
            try:
                self._run(rec, run)
            finally:
                with self._lock:
                    self._running.pop(job_id, None)

    def _run(self, rec: JobRecord, run: _Running) -> None:
        rec = self.store.put(replace(rec, state="running", error=None))
        options = SwapOptions(
            **{
                **rec.options,
                "sources": tuple(rec.options["sources"]),
                "target_faces": tuple(rec.options["target_faces"]),
            }
        )
        notes: list[str] = []
        try:
            if self.settings.ray_address and rec.kind == "video":
                rec = self._run_cluster(rec, options)
            else:
                rec = self._run_local(rec, run, options, notes)
        except StreamSwapError as exc:
            rec = replace(rec, state="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # a bug: one line in the record, the traceback in the log (--debug)
            log.debug("job %s failed", rec.id, exc_info=True)
            rec = replace(rec, state="failed", error=f"unexpected {type(exc).__name__}: {exc}".splitlines()[0])
        if rec.error:  # shown to clients: without the data dir's location
            rec = replace(rec, error=rec.error.replace(f"{self.settings.data_dir}/", ""))
        self.store.put(replace(rec, eta_s=None, notes=tuple(dict.fromkeys((*rec.notes, *notes)))))

    def _run_local(self, rec: JobRecord, run: _Running, options: SwapOptions, notes: list[str]) -> JobRecord:
        from streamswap.api import Job, run_job

        last = [0.0]

        def progress(stats: Any, report: Any) -> None:
            now = time.monotonic()
            if now - last[0] < 0.25:
                return
            last[0] = now
            expected = report.frames_expected
            fps = stats.frames_per_s
            eta = (expected - stats.frames_out) / fps if expected and fps > 0 else None
            fields = {"frames": stats.frames_out, "frames_expected": expected, "fps": round(fps, 2)}
            self.store.put(replace(rec, **fields, eta_s=eta, faces_swapped=report.faces_swapped))

        def attach(graph: Any) -> None:
            with self._lock:
                run.graph = graph
                if run.cancel or run.stopping:
                    graph.interrupt("cancelled" if run.cancel else "server stopping")

        def keep(frame: Any) -> None:
            run.latest = frame  # one reference: the previous frame is freed as usual

        job = Job(options, rec.target, rec.output, on_frame=keep)
        report = run_job(job, progress=progress, notice=notes.append, on_graph=attach)
        if run.stopping and not run.cancel and report.status != "done":
            state = "queued"  # the next server start runs it again (resuming its segments)
        elif run.cancel and report.status != "done":
            state = "cancelled"
        else:
            state = "done" if report.status == "done" else "failed"
        result = report.output if report.output and Path(report.output).is_file() else None
        return replace(
            rec,
            state=state,
            frames=report.frames,
            frames_expected=report.frames_expected,
            fps=round(report.fps, 2),
            faces_swapped=report.faces_swapped,
            result=result,
            notes=tuple(redact_url(n) for n in report.notes),
            error=None if state != "failed" else f"the job ended {report.status}",
        )

    def _run_cluster(self, rec: JobRecord, options: SwapOptions) -> JobRecord:
        from streamswap.cluster.run import DEFAULT_CHUNK_S, ClusterSettings, swap_cluster

        def progress(p: Any) -> None:
            self.store.put(replace(rec, frames=p.frames_done, frames_expected=p.frames_total, fps=p.fps, eta_s=p.eta_s))

        settings = ClusterSettings(workers=None, address=self.settings.ray_address, chunk_s=DEFAULT_CHUNK_S)
        report = swap_cluster(options, rec.target, rec.output, settings, progress=progress)
        return replace(
            rec,
            state="done",
            frames=report.frames,
            frames_expected=report.frames_total,
            fps=round(report.fps, 2),
            result=rec.output if Path(rec.output).is_file() else None,
            notes=tuple(redact_url(n) for n in report.notes),
        )


def record_options(options: SwapOptions) -> dict[str, Any]:
    """`options` as a record stores them (JSON: lists for tuples)."""
    d = asdict(options)
    d["sources"], d["target_faces"] = list(options.sources), list(options.target_faces)
    return d
