"""The driver of cluster jobs: joins or starts a Ray cluster, plans chunks, schedules them over
worker actors, retries what fails, stitches each file, and reports.

- Cluster: `address` joins a running one (`ray start --head` on one machine, `ray start
  --address HEAD:6379` on the others); otherwise a local one is started for the job, listening on
  127.0.0.1 only (`start_local_cluster`; RAY_ADDRESS is then ignored), and shut down after it.
  Ray's own scheduler places the actors: one GPU each where the cluster has GPUs (`num_gpus=1`,
  or a fraction to share one), else CPUs split evenly between them, each request sized to fit a
  node (`actor_resources`); workers that cannot start within `start_timeout_s` fail the job with
  one line naming the request. Every worker checks it runs the driver's StreamSwap version with
  the driver's model files, and refuses the job otherwise (`cluster.trust`).
- Outputs: each output's work is locked (`outputs.OutputLock`: a second job on it is refused);
  a finished output gets a completion record (frames, SHA-256) and a batch skips an output only
  when that record matches the file, never because a file exists.
- Chunks: each input is cut at keyframes (`chunks.plan_chunks`); finished chunks are kept in the
  job's work directory (`workdir.WorkDir`), so a re-run does only what is left.
- Scheduling: a chunk goes to an idle worker; chunks of every input share the pool (a batch of
  files keeps all workers busy). The source identity is computed once, by one worker, and handed
  to all of them through the object store. The policy (queue, retries, lost workers) is
  `schedule.ChunkScheduler`, which knows nothing of Ray; `_schedule` drives it with Ray's futures.
- Faults: a chunk whose worker died (the actor is restarted by Ray) or that raised is queued
  again, preferring a worker it has not failed on, up to `max_retries` times; then its file
  fails (a single-file job raises PipelineError, a batch goes on with the other files).
- Ctrl-C: the workers are killed, a local cluster is shut down, finished chunks stay on disk,
  and KeyboardInterrupt propagates.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from streamswap import __version__
from streamswap.cluster.chunks import (
    Chunk,
    PlanSettings,
    VideoIndex,
    frame_range,
    index_video,
    plan_chunks,
)
from streamswap.cluster.outputs import OutputLock, completion, done_path_for, record_complete
from streamswap.cluster.schedule import ChunkItem, ChunkScheduler, Failure, Finished, Outcome, ProbeAnswer
from streamswap.cluster.stitch import stitch
from streamswap.cluster.trust import job_identity
from streamswap.cluster.workdir import ChunkRecord, WorkDir, fingerprint, input_identity
from streamswap.cluster.worker import ChunkOutput, ChunkTask, ChunkWorker
from streamswap.engines.base import effective_detect_every
from streamswap.engines.registry import choose_engine, engine_named
from streamswap.errors import InputError, PipelineError, StreamSwapError
from streamswap.options import SYNTHETIC_COMMENT, SwapOptions, check_job_paths
from streamswap.redact import redact_url
from streamswap.video.probe import classify

log = logging.getLogger(__name__)

# Measured with `streamswap bench workers` on nggyup.mp4 (720p, lite, 2 CPU cores): see the README.
DEFAULT_CHUNK_S = 30.0


@dataclass(frozen=True)
class ClusterSettings:
    """How a job is spread. workers: actors (None: one per GPU of the cluster, else one per
    `cpus_per_worker` CPUs); address: a running cluster to join (None: start a local one);
    chunk_s: chunk length, s; warmup_s: frames processed before each chunk and not written;
    max_retries: attempts after the first for a chunk; cpus_per_worker / gpus_per_worker: the
    actors' resources (None: decided from the cluster); start_timeout_s: how long the workers may
    take to start (a request no node can grant fails then, with one line, instead of waiting)."""

    workers: int | None = None
    address: str | None = None
    chunk_s: float = DEFAULT_CHUNK_S
    warmup_s: float = 1.0
    max_retries: int = 3
    cpus_per_worker: float | None = None
    gpus_per_worker: float | None = None
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError("--workers must be at least 1")
        if self.chunk_s <= 0:
            raise InputError("--chunk-seconds must be positive")
        if self.max_retries < 0:
            raise InputError("max retries must be >= 0")
        if self.start_timeout_s <= 0:
            raise InputError("the workers' start timeout must be positive")


@dataclass(frozen=True)
class FileJob:
    """One input and where its output goes."""

    input: str
    output: str


@dataclass
class WorkerStats:
    """One worker's share: chunks, frames written and processed (with warm-up), busy seconds,
    written frames per busy second."""

    worker: int
    pid: int | None = None
    host: str | None = None
    chunks: int = 0
    frames: int = 0
    processed: int = 0
    busy_s: float = 0.0
    fps: float = 0.0


@dataclass
class FileResult:
    """What became of one input: status done / skipped (its output was recorded complete and still
    matches its record) / failed; chunks run now vs kept from an earlier run."""

    input: str
    output: str
    status: str = "pending"
    frames: int = 0
    frames_expected: int = 0
    chunks: int = 0
    chunks_run: int = 0
    chunks_reused: int = 0
    audio_packets: int = 0
    stitch_s: float = 0.0
    error: str | None = None


@dataclass
class ClusterReport:
    """What a cluster job did (`--json` prints it)."""

    engine: str
    workers: int = 0
    address: str | None = None
    chunk_s: float = 0.0
    outputs: list[FileResult] = field(default_factory=list)
    frames: int = 0
    frames_total: int = 0
    elapsed_s: float = 0.0
    fps: float = 0.0
    chunks_total: int = 0
    chunks_run: int = 0
    chunks_reused: int = 0
    retries: int = 0
    retry_log: list[dict[str, Any]] = field(default_factory=list)
    chunk_log: list[dict[str, Any]] = field(default_factory=list)
    worker_stats: list[WorkerStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterProgress:
    """A progress snapshot: frames written (incl. chunks kept from an earlier run) of the total,
    frames/s of this run, ETA, workers busy, chunks done, retries so far."""

    frames_done: int
    frames_total: int
    fps: float
    eta_s: float | None
    busy: int
    workers: int
    chunks_done: int
    chunks_total: int
    retries: int


@dataclass
class _Job:
    file: FileJob
    result: FileResult
    index: VideoIndex | None = None
    chunks: list[Chunk] = field(default_factory=list)
    work: WorkDir | None = None
    first: int = 0
    end: int = 0
    key: str = ""
    lock: OutputLock | None = None


def swap_cluster(
    options: SwapOptions,
    target: str,
    output: str,
    settings: ClusterSettings,
    *,
    progress: Callable[[ClusterProgress], None] | None = None,
    notice: Callable[[str], None] | None = None,
    on_assign: Callable[[ChunkTask, dict[str, Any]], None] | None = None,
) -> ClusterReport:
    """Swap faces into one video file on a Ray cluster (see the module docstring); PipelineError
    when a chunk fails beyond its retries. on_assign(task, worker_info): hears each chunk handed
    to a worker (worker_info has its pid)."""
    check_job_paths(options, target, output)
    if classify(target) != "file":
        raise InputError(f"--workers/--ray-address split video files; {target} is not one")
    report = run_jobs(
        options,
        [FileJob(target, output)],
        settings,
        skip_done=False,
        progress=progress,
        notice=notice,
        on_assign=on_assign,
    )
    result = report.outputs[0]
    if result.status == "failed":
        raise PipelineError(f"{target}: {result.error}")
    return report


def batch_jobs(inputs: str | Path, output_dir: str | Path, suffix: str | None = None) -> list[FileJob]:
    """The jobs of a batch: `inputs` is a folder (its video files, sorted by name) or a text file
    listing one path per line (blank lines and #-comments skipped, relative paths from the
    list's folder); each output is `output_dir`/<input name> (with `suffix` if given)."""
    src, out = Path(inputs), Path(output_dir)
    if not out.is_dir():
        raise InputError(f"output folder {out} does not exist")
    if src.is_dir():
        from streamswap.video.probe import IMAGE_SUFFIXES

        paths = sorted(
            p
            for p in src.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.suffix.lower() not in IMAGE_SUFFIXES
            and p.suffix.lower() not in (".txt", ".json")
        )
    elif src.is_file():
        paths = []
        for line in src.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                paths.append(p if p.is_absolute() else src.parent / p)
    else:
        raise InputError(f"--inputs {src}: no such folder or list file")
    if not paths:
        raise InputError(f"--inputs {src}: no video file in it")
    names = [p.name if suffix is None else p.with_suffix(suffix).name for p in paths]
    seen: dict[str, Path] = {}
    for p, n in zip(paths, names, strict=True):  # case-insensitively: A.mp4 and a.mp4 are one file on many disks
        if (other := seen.setdefault(n.casefold(), p)) is not p:
            raise InputError(f"{other} and {p} would write the same output {out / n}; give them distinct names")
    return [FileJob(str(p), str(out / n)) for p, n in zip(paths, names, strict=True)]


def run_jobs(
    options: SwapOptions,
    jobs: list[FileJob],
    settings: ClusterSettings,
    *,
    skip_done: bool = True,
    progress: Callable[[ClusterProgress], None] | None = None,
    notice: Callable[[str], None] | None = None,
    on_assign: Callable[[ChunkTask, dict[str, Any]], None] | None = None,
) -> ClusterReport:
    """Run swap jobs on files over one cluster. With `skip_done`, an output recorded complete (its
    completion record matches the file) is skipped, one recorded but changed since is made again,
    and a file that exists without a record is refused (that file fails) unless options.overwrite;
    without it, an existing output is refused unless options.overwrite. Each output's work is
    locked for the job (a second job on it is refused). See the module docstring for scheduling,
    retries and Ctrl-C."""
    locks: list[OutputLock] = []
    try:
        return _run_jobs(
            options, jobs, settings, locks, skip_done=skip_done, progress=progress, notice=notice, on_assign=on_assign
        )
    finally:
        for lock in locks:
            lock.release()


def _run_jobs(
    options: SwapOptions,
    jobs: list[FileJob],
    settings: ClusterSettings,
    locks: list[OutputLock],
    *,
    skip_done: bool,
    progress: Callable[[ClusterProgress], None] | None,
    notice: Callable[[str], None] | None,
    on_assign: Callable[[ChunkTask, dict[str, Any]], None] | None,
) -> ClusterReport:
    chosen, message = choose_engine(options.engine)
    engine = chosen.name
    if message and notice:
        notice(message)
    report = ClusterReport(
        engine=engine, address=redact_url(settings.address) if settings.address else None, chunk_s=settings.chunk_s
    )
    if message:
        report.notes.append(message)
    if not options.sources:
        raise InputError("give at least one --source face image")
    every = effective_detect_every(chosen, options)
    plan = PlanSettings(
        chunk_s=settings.chunk_s, warmup_s=settings.warmup_s, lookahead=options.smoothing_window, detect_every=every
    )
    todo = []
    for file in jobs:
        try:
            todo.append(_prepare(options, engine, plan, file, skip_done, locks))
        except StreamSwapError as exc:
            if not skip_done:
                raise  # a single job: the user's error, at once
            todo.append(_Job(file, FileResult(file.input, file.output, status="failed", error=str(exc))))
    report.outputs = [j.result for j in todo]
    active = [j for j in todo if j.result.status == "pending"]
    report.frames_total = sum(j.result.frames_expected for j in active)
    report.chunks_total = sum(len(j.chunks) for j in active)
    report.chunks_reused = sum(j.result.chunks_reused for j in active)
    t0 = time.monotonic()
    for j in active:  # everything already there from an earlier run: only the stitch is left
        if j.work is not None and len(j.work.finished()) == len(j.chunks):
            _stitch(j, options)
    queue = [
        ChunkItem(n, c)
        for n, j in enumerate(todo)
        if j.result.status == "pending" and j.work is not None
        for c in j.chunks
        if j.work.record(c.number) is None
    ]
    if queue:
        _schedule(options, engine, settings, todo, queue, report, progress, on_assign)
    report.elapsed_s = time.monotonic() - t0
    report.chunks_run = sum(j.result.chunks_run for j in todo)
    new_frames = sum(s.frames for s in report.worker_stats)
    report.frames = sum(j.result.frames for j in todo if j.result.status == "done")
    report.fps = new_frames / report.elapsed_s if report.elapsed_s > 0 else 0.0
    return report


def _prepare(
    options: SwapOptions, engine: str, plan: PlanSettings, file: FileJob, skip_done: bool, locks: list[OutputLock]
) -> _Job:
    result = FileResult(file.input, file.output)
    job = _Job(file, result)
    job.lock = OutputLock.acquire(file.output)  # before anything is looked at: no other job is on it now
    locks.append(job.lock)
    if skip_done and not options.overwrite and Path(file.output).exists():
        if completion(file.output) is not None:
            result.status = "skipped"
            return job
        if not done_path_for(file.output).exists():
            raise InputError(
                f"{file.output} exists but no streamswap job recorded it complete; pass --overwrite to replace it"
            )
        log.warning("%s no longer matches its completion record (changed or damaged): it is made again", file.output)
        options = replace(options, overwrite=True)  # our own output, recorded and since changed
    check_job_paths(options, file.input, file.output)
    from streamswap.video.containers import video_encoder_for

    if video_encoder_for(file.output).codec != "libx264":  # chunks are H.264, joined by copying packets
        raise InputError(
            f"{file.output}: a distributed job joins H.264 chunks, which a {Path(file.output).suffix} "
            "file cannot hold; use .mp4, .mkv or .mov (or swap without --workers)"
        )
    job.index = index_video(file.input)
    ranged = options.start_s > 0 or options.end_s is not None
    job.first, job.end = frame_range(job.index, options.start_s, options.end_s) if ranged else (0, job.index.frames)
    job.chunks = plan_chunks(job.index, plan, job.first, job.end)
    opts = {k: v for k, v in asdict(options).items() if k != "overwrite"}
    key = fingerprint(
        {
            "input": input_identity(file.input),
            "options": opts,
            "engine": engine,
            "plan": asdict(plan),
            "version": __version__,
        }
    )
    job.key = key
    job.work = WorkDir.open(file.output, key, job.chunks)
    result.frames_expected = job.end - job.first
    result.chunks = len(job.chunks)
    result.chunks_reused = len(job.work.finished())
    return job


def _stitch(job: _Job, options: SwapOptions) -> None:
    assert job.work is not None
    try:
        rep = stitch(
            [job.work.chunk_path(c.number) for c in job.chunks],
            job.file.output,
            expected_frames=job.end - job.first,
            audio_from=job.file.input,
            start_s=options.start_s,
            end_s=options.end_s,
            metadata={"comment": SYNTHETIC_COMMENT},
        )
    except (StreamSwapError, OSError) as exc:
        job.result.status, job.result.error = "failed", str(exc)
        return
    job.result.status, job.result.frames = "done", rep.frames
    job.result.audio_packets, job.result.stitch_s = rep.audio_packets, rep.seconds
    try:  # what a later batch trusts instead of the file's mere existence
        record_complete(job.file.output, rep.frames, job.key)
    except OSError as exc:
        log.warning("cannot record %s as complete (%s): a later batch will not skip it", job.file.output, exc)
    job.work.remove()


def fetch_engine_models(options: SwapOptions, engine: str) -> None:
    """Fetch (and verify) the engine's models here, before any actor starts: otherwise every
    actor would find them missing at once and download them itself."""
    engine_named(engine).fetch(options)


def _connect(settings: ClusterSettings) -> bool:
    """Join or start a cluster; True when this call started it (and must shut it down)."""
    if settings.address:
        _token_auth_when_a_token_is_there()  # before Ray reads its configuration
    try:
        import ray
    except ImportError:
        raise InputError("--workers/--ray-address need Ray: pip install 'streamswap[cluster]'") from None

    if ray.is_initialized():
        return False
    if settings.address:  # "auto" takes RAY_ADDRESS from the environment (Ray's own convention)
        address = os.environ.get("RAY_ADDRESS", "auto") if settings.address == "auto" else settings.address
        local = _is_loopback_only(address)  # a cluster of this machine only: join it as one of its nodes
        # Any: ray.init's **kwargs take Ray's private options, which its typed keywords do not name
        node: dict[str, Any] = {"_node_ip_address": LOOPBACK} if local else {}
        try:
            with _loopback_node(local):
                ray.init(address=settings.address, log_to_driver=False, configure_logging=False, **node)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(
                f"cannot join the Ray cluster at {settings.address}: {exc} (start it with `ray start --head`)"
            ) from None
    else:
        start_local_cluster(max(settings.workers or 1, os.cpu_count() or 1))
    _restore_sigint()
    return True


LOOPBACK = "127.0.0.1"


def start_local_cluster(num_cpus: int | None = None) -> None:
    """Start a Ray cluster on this machine for this process, reachable from this machine only: its
    GCS, raylet, object manager and workers listen on 127.0.0.1 (Ray's own default is every
    interface). RAY_ADDRESS in the environment is ignored (Ray's `init` would join that instead)."""
    import ray

    saved_address = os.environ.pop("RAY_ADDRESS", None)
    try:
        with _loopback_node(True):
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _node_ip_address=LOOPBACK,
            )
    finally:
        if saved_address is not None:
            os.environ["RAY_ADDRESS"] = saved_address
    node = ray.util.get_node_ip_address()
    if node != LOOPBACK:  # another Ray version: say so rather than pretend
        log.warning(
            "the local Ray cluster runs on %s, not only on %s: it may be reachable from the network", node, LOOPBACK
        )


@contextmanager
def _loopback_node(on: bool) -> Iterator[None]:
    """While `on`: this process's Ray node is 127.0.0.1. Ray resolves a node's address with
    services.get_node_ip_address(), which answers the loopback address (even for
    `_node_ip_address="127.0.0.1"`, and for a GCS address on 127.0.0.1, both of which it rewrites
    to this machine's network address) only while this flag, its switch for single-machine
    platforms, is off; the servers then bind to the node's address instead of every interface
    (checked with Ray 2.60: `ss -ltnp` shows 127.0.0.1 instead of `*`). Only `ray.init` needs it."""
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if not on or saved is None:
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _token_auth_when_a_token_is_there() -> None:
    """Join with token authentication when this machine has a Ray token and RAY_AUTH_MODE is not
    set: `ray start` turns token authentication on by default (Ray 2.59+, checked with 2.60) and
    writes ~/.ray/auth_token, but a driver's `ray.init` still defaults to "disabled" and is then
    refused (InvalidAuthToken). A token sent to a cluster without authentication is ignored."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or Path(path).is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _is_loopback_only(address: str) -> bool:
    """Whether a Ray address names a cluster that listens on this machine's loopback only (one
    `start_local_cluster` started: its raylet is 127.0.0.1 too, so the driver must say so), as
    opposed to `ray start --head` (which serves every interface, its node on the machine's network
    address, even when given 127.0.0.1), found by knocking on the GCS port at that address."""
    import socket

    if not _is_loopback(address):
        return False
    from ray._private import services

    try:
        port = int(address.split("://", 1)[-1].rsplit(":", 1)[-1])
    except ValueError:  # no port: Ray's own error says what it wants
        return False
    try:
        with socket.create_connection((services.get_node_ip_address(), port), timeout=1.0):
            return False
    except OSError:
        return True


def _is_loopback(address: str) -> bool:
    """Whether a Ray address (HOST:PORT, ray://HOST:PORT) names this machine's loopback."""
    import ipaddress

    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _restore_sigint() -> None:
    """Give the stop signals back to Python: Ray's core worker takes SIGINT over at `ray.init` and
    swallows it while the driver waits in `ray.wait` (checked with Ray 2.60)."""
    import threading

    from streamswap.stopping import reinstall_stop_handlers

    if threading.current_thread() is threading.main_thread():
        reinstall_stop_handlers()


def actor_resources(settings: ClusterSettings, nodes: list[tuple[float, float]]) -> tuple[int, dict[str, float]]:
    """How many workers, and each one's Ray resources, for a cluster whose nodes have these
    (CPUs, GPUs), each request sized so that the workers fit on the nodes (an actor runs on one
    node: a share of the cluster's total may fit none): one GPU each (more workers than GPUs
    share them, e.g. 2 on one GPU get 0.5 each, 3 on two one-GPU nodes 0.5), else the CPUs split
    as evenly as the nodes allow, whole CPUs where they suffice (Ray sets each actor's OMP/torch
    threads to its share); without `workers`, one per GPU, or one per 2 CPUs (at most a node's).
    PipelineError when a request given in `settings` fits no node."""
    cpus, gpus = [c for c, _ in nodes], [g for _, g in nodes]
    n = settings.workers
    if settings.gpus_per_worker is not None or sum(gpus) > 0:
        g = settings.gpus_per_worker
        if g is None:
            g = 1.0 if n is None else (_largest_share(gpus, n, top=1.0, whole=False) or 1.0)
        n = n or (max(1, sum(int(x / g + 1e-9) for x in gpus)) if g > 0 else 1)
        resources = {
            "num_gpus": g,
            "num_cpus": settings.cpus_per_worker if settings.cpus_per_worker is not None else 1.0,
        }
    elif n is None:
        c = settings.cpus_per_worker or float(min(2.0, max(cpus, default=1.0)) or 1.0)
        n, resources = max(1, sum(int(x / c + 1e-9) for x in cpus)), {"num_cpus": c}
    else:
        c = settings.cpus_per_worker or (
            _largest_share(cpus, n, top=None, whole=True) or _largest_share(cpus, n, top=None, whole=False) or 1.0
        )
        resources = {"num_cpus": c}
    if not any(c >= resources["num_cpus"] - 1e-9 and g >= resources.get("num_gpus", 0) - 1e-9 for c, g in nodes):
        raise PipelineError(
            f"each worker would request {_describe(resources)} and no node of the cluster has that "
            f"much (nodes: {_describe_nodes(nodes)}); ask for fewer resources per worker"
        )
    return n, resources


def _largest_share(caps: list[float], n: int, *, top: float | None, whole: bool) -> float | None:
    """The largest share of a resource (at most `top`; whole units if `whole`) that gives `n`
    actors a place on nodes with these capacities; None when there is none."""
    candidates = {c / k for c in caps if c > 0 for k in range(1, n + 1)}
    if whole:
        candidates = {float(int(s + 1e-9)) for s in candidates if s >= 1 - 1e-9}
    for share in sorted((min(s, top) if top is not None else s for s in candidates), reverse=True):
        if share > 0 and sum(int(c / share + 1e-9) for c in caps) >= n:
            return share
    return None


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {'GPU' if k == 'num_gpus' else 'CPU'}" for k, v in resources.items())


def _describe_nodes(nodes: list[tuple[float, float]]) -> str:
    return "; ".join(f"{c:g} CPU {g:g} GPU" for c, g in nodes) or "none"


def _cluster_nodes(ray: Any) -> list[tuple[float, float]]:
    """(CPUs, GPUs) of each live node of the connected cluster."""
    return [
        (float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def _schedule(
    options: SwapOptions,
    engine: str,
    settings: ClusterSettings,
    jobs: list[_Job],
    queue: Iterable[ChunkItem[Chunk]],
    report: ClusterReport,
    progress: Callable[[ClusterProgress], None] | None,
    on_assign: Callable[[ChunkTask, dict[str, Any]], None] | None,
) -> None:
    """Run the queued chunks over a pool of worker actors: start them, drive a ChunkScheduler with
    Ray's futures (`_Driver`), and kill the workers (and shut a local cluster down) at the end,
    whatever happened."""
    fetch_engine_models(options, engine)
    started = _connect(settings)
    import ray

    actors: list[Any] = []
    try:
        pool = _start_pool(ray, options, engine, settings, report, actors)
        sched: ChunkScheduler[Chunk] = ChunkScheduler(queue, len(actors), settings.max_retries)
        _Driver(ray, pool, sched, options, jobs, report, progress, on_assign).run()
    finally:
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - an actor already gone
                log.debug("kill: %s", exc)
        if started:
            ray.shutdown()


@dataclass(frozen=True)
class _Pool:
    """The job's workers: actors, their info() (updated when a restarted one answers), and the
    object ref of the job's source identity."""

    actors: list[Any]
    infos: list[dict[str, Any]]
    identity: Any


def _start_pool(
    ray: Any, options: SwapOptions, engine: str, settings: ClusterSettings, report: ClusterReport, actors: list[Any]
) -> _Pool:
    """Start the workers (into `actors`, so that the caller kills them whatever happens), wait for
    them, and put the job's source identity, computed by one of them, in the object store."""
    from ray.exceptions import RayTaskError

    nodes = _cluster_nodes(ray)
    n, resources = actor_resources(settings, nodes)
    expected = job_identity(options, engine)  # what every worker must match (version, model files)
    remote = ray.remote(max_restarts=settings.max_retries + 1, max_task_retries=0, **resources)(ChunkWorker)
    actors.extend(remote.remote(options, engine, w, expected) for w in range(n))
    report.workers = n
    infos = _started(ray, actors, resources, nodes, settings.start_timeout_s)
    report.worker_stats = [WorkerStats(w, i["pid"], i["host"]) for w, i in enumerate(infos)]
    identity = actors[0].source_identity.remote()  # once, into the object store
    try:
        ray.get(identity)
    except RayTaskError as exc:
        cause = exc.cause
        raise cause if isinstance(cause, StreamSwapError) else PipelineError(f"source identity: {cause}") from None
    return _Pool(actors, infos, identity)


@dataclass
class _Driver:
    """The scheduling loop on Ray: the scheduler decides; this submits `run_chunk`, waits, turns
    Ray's answers into scheduler calls (RayTaskError: the chunk raised; ActorUnavailableError from
    a probe: still restarting; any other RayError: the worker was lost, or is gone for a probe),
    and keeps the report: retries, commits, stitches, worker stats, progress."""

    ray: Any
    pool: _Pool
    sched: ChunkScheduler[Chunk]
    options: SwapOptions
    jobs: list[_Job]
    report: ClusterReport
    progress: Callable[[ClusterProgress], None] | None
    on_assign: Callable[[ChunkTask, dict[str, Any]], None] | None
    t0: float = 0.0
    done_frames: int = 0  # written, chunks kept from an earlier run included
    done_chunks: int = 0
    new_frames: int = 0  # written by this run
    last_tick: float = 0.0

    def run(self) -> None:
        """Until every chunk has run or given up."""
        self.t0 = time.monotonic()
        self.done_frames = sum(c.frames for j in self.jobs if j.work for c in j.chunks if j.work.record(c.number))
        self.done_chunks = self.report.chunks_reused
        while not self.sched.done:
            self._submit()
            waiting = self.sched.pending()
            ready, _ = self.ray.wait(waiting, num_returns=1, timeout=0.25) if waiting else ([], [])
            for ref in ready:
                if self.sched.is_probe(ref):
                    self._probed(ref)
                else:
                    self._chunk_ended(ref)
            self._tick(bool(ready))

    def _submit(self) -> None:
        for a in self.sched.assignments():
            job = self.jobs[a.item.job]
            assert job.index is not None
            task = ChunkTask(
                a.item.job, a.item.chunk.number, job.file.input, a.item.chunk.span(job.index), a.item.attempts
            )
            self.sched.started(self.pool.actors[a.worker].run_chunk.remote(task, self.pool.identity), a.worker, a.item)
            if self.on_assign is not None:
                self.on_assign(task, dict(self.pool.infos[a.worker]))

    def _probed(self, ref: Any) -> None:
        from ray.exceptions import ActorUnavailableError, RayError

        try:
            info = self.ray.get(ref)
        except ActorUnavailableError:  # still restarting: ask again shortly
            w = self.sched.probe_answered(ref, ProbeAnswer.RESTARTING).worker
            time.sleep(0.1)
            self.sched.probe(self.pool.actors[w].info.remote(), w)
        except RayError:  # out of restarts: the pool goes on without it
            for item in self.sched.probe_answered(ref, ProbeAnswer.GONE).dropped:
                _fail(self.jobs[item.job], "every worker was lost")
        else:
            w = self.sched.probe_answered(ref, ProbeAnswer.BACK).worker
            self.pool.infos[w] = info
            self.report.worker_stats[w].pid = info["pid"]

    def _chunk_ended(self, ref: Any) -> None:
        from ray.exceptions import RayError, RayTaskError

        try:
            out: ChunkOutput = self.ray.get(ref)
        except RayTaskError as exc:
            self._failed(self.sched.failed(ref, f"{type(exc.cause).__name__}: {exc.cause}", worker_lost=False))
        except RayError as exc:  # the worker died (Ray restarts it) or its result was lost
            w = self.sched.running(ref).worker
            self._failed(self.sched.failed(ref, f"worker {w} lost ({type(exc).__name__})", worker_lost=True))
            self.sched.probe(self.pool.actors[w].info.remote(), w)  # back when it answers; gone if out of restarts
        else:
            finished = self.sched.succeeded(ref)
            if finished.wanted:  # else its file already failed
                self._commit(finished, out)

    def _failed(self, failure: Failure[Chunk]) -> None:
        if failure.outcome is Outcome.IGNORED:
            return  # its file already failed
        item, job = failure.item, self.jobs[failure.item.job]
        self.report.retry_log.append(
            {
                "input": job.file.input,
                "chunk": item.chunk.number,
                "worker": failure.worker,
                "attempt": item.attempts,
                "error": failure.why,
            }
        )
        log.warning(
            "chunk %d of %s failed on worker %d (%s); attempt %d of %d",
            item.chunk.number,
            job.file.input,
            failure.worker,
            failure.why,
            item.attempts + 1,
            self.sched.max_retries + 1,
        )
        if failure.outcome is Outcome.GAVE_UP:  # not retried: the file fails (its queued chunks are dropped)
            self.report.retry_log[-1]["gave_up"] = True
            _fail(job, f"chunk {item.chunk.number} failed {item.attempts} times; last: {failure.why}")
        else:
            self.report.retries += 1

    def _commit(self, finished: Finished[Chunk], out: ChunkOutput) -> None:
        job, w = self.jobs[finished.item.job], finished.worker
        assert job.work is not None
        job.work.commit(
            out.number,
            out.data,
            ChunkRecord(out.number, out.frames, out.processed, out.seconds, out.worker, out.pid, out.host),
        )
        job.result.chunks_run += 1
        self.report.chunk_log.append(
            {
                "input": job.file.input,
                "chunk": out.number,
                "worker": w,
                "pid": out.pid,
                "frames": out.frames,
                "processed": out.processed,
                "seconds": round(out.seconds, 3),
            }
        )
        stats = self.report.worker_stats[w]
        stats.chunks += 1
        stats.frames += out.frames
        stats.processed += out.processed
        stats.busy_s += out.seconds
        stats.fps = stats.frames / stats.busy_s if stats.busy_s > 0 else 0.0
        self.done_frames += out.frames
        self.done_chunks += 1
        self.new_frames += out.frames
        if len(job.work.finished()) == len(job.chunks):
            _stitch(job, self.options)

    def _tick(self, ready: bool) -> None:
        now = time.monotonic()
        if self.progress is not None and (ready or now - self.last_tick >= 0.5):
            self.last_tick = now
            fps = self.new_frames / (now - self.t0) if now > self.t0 else 0.0
            left = self.report.frames_total - self.done_frames
            self.progress(
                ClusterProgress(
                    self.done_frames,
                    self.report.frames_total,
                    fps,
                    left / fps if fps > 0 else None,
                    self.sched.busy,
                    self.sched.alive,
                    self.done_chunks,
                    self.report.chunks_total,
                    self.report.retries,
                )
            )


def _started(
    ray: Any, actors: list[Any], resources: dict[str, float], nodes: list[tuple[float, float]], timeout_s: float
) -> list[dict[str, Any]]:
    """Each worker's info() once it has started; PipelineError (one line) when one refuses the job
    or fails to start, or when some have not started within `timeout_s` (no node can grant
    their request now: the cluster is too small or busy), instead of waiting for ever."""
    from ray.exceptions import RayError, RayTaskError

    refs = [a.info.remote() for a in actors]
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        late = [w for w, r in enumerate(refs) if r in pending]
        free = ray.available_resources()
        raise PipelineError(
            f"{len(late)} of {len(refs)} worker(s) did not start within {timeout_s:g} s: no node "
            f"could give one {_describe(resources)} (nodes: {_describe_nodes(nodes)}; free now: "
            f"{free.get('CPU', 0):g} CPU {free.get('GPU', 0):g} GPU); use fewer --workers or free "
            "the cluster"
        )
    infos = []
    for w, ref in enumerate(refs):
        try:
            infos.append(ray.get(ref))
        except RayTaskError as exc:
            cause = exc.cause
            raise (cause if isinstance(cause, StreamSwapError) else PipelineError(f"worker {w}: {cause}")) from None
        except RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PipelineError(f"worker {w} could not start: {first}") from None
    return infos


def _fail(job: _Job, why: str) -> None:
    if job.result.status == "pending":
        job.result.status, job.result.error = "failed", why


__all__ = [
    "DEFAULT_CHUNK_S",
    "ClusterProgress",
    "ClusterReport",
    "ClusterSettings",
    "FileJob",
    "FileResult",
    "WorkerStats",
    "actor_resources",
    "batch_jobs",
    "run_jobs",
    "start_local_cluster",
    "swap_cluster",
]
