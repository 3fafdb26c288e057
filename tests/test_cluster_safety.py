"""A cluster job cannot leak, corrupt or hang itself, on real local Ray clusters (127.0.0.1):

- the cluster `swap --workers` starts listens on 127.0.0.1 only (every socket of the job's
  processes, read from /proc), RAY_ADDRESS without --ray-address is ignored, and a time range
  comes out as the single-process job's (frames, times from 0, audio);
- a worker with another StreamSwap version, or other model files, refuses the job with one line;
- a second job on the same output is refused with one line while the first runs;
- a kept chunk that was damaged is run again, never stitched;
- a worker request no node can grant fails within the start timeout, naming the request.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_media import audio_packets, video_facts
from streamswap.bench.media import make_video

from conftest import REPO, default_signals, start_cli

ray = pytest.importorskip("ray")

from streamswap import __version__  # noqa: E402
from streamswap.api import SwapOptions, swap_video  # noqa: E402
from streamswap.cluster.outputs import lock_path_for  # noqa: E402
from streamswap.cluster.run import ClusterSettings, start_local_cluster, swap_cluster  # noqa: E402
from streamswap.cluster.workdir import work_dir_for  # noqa: E402
from streamswap.errors import PipelineError  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A local cluster as a job starts it, for the in-process tests: 2 CPUs."""
    start_local_cluster(2)
    signal.signal(signal.SIGINT, signal.getsignal(signal.SIGINT))  # Ray takes Ctrl-C over; give it back to pytest
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def mark(shared_data) -> str:
    return str(shared_data / "images" / "mark.jpg")


def _clip(path: Path, frames: int = 60, fps: int = 20) -> Path:
    """A synthetic clip (192x108, AAC audio) with a keyframe every 10 frames (so 1-s chunks can be cut)."""
    return make_video(path, frames=frames, size=(192, 108), fps=fps, gop=10, audio=True)


# -- sockets from /proc: which addresses the processes of a job listen on ----------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _tree(root: int) -> set[int]:
    kids, todo, seen = _children(), [root], set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, []))
    return seen


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        for fd in (Path("/proc") / str(pid) / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    except OSError:
        pass
    return out


def _bound_sockets() -> dict[int, tuple[str, str, int]]:
    """inode -> (proto, address, port) of every listening TCP socket and bound UDP socket."""
    out = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = (Path("/proc/net") / proto).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], int(f[9])
            if (proto.startswith("tcp") and state != "0A") or inode == 0:  # 0A: LISTEN
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            if len(raw) == 4:
                addr = ipaddress.IPv4Address(raw[::-1])
            else:  # four host-order 32-bit words
                addr = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            out[inode] = (proto, str(addr), int(hexport, 16))
    return out


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _name(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"


@pytest.mark.timeout(200)  # a local cluster started and a 4-chunk job: 20-40 s on two busy cores
def test_swap_with_workers_starts_a_loopback_only_cluster_ignores_ray_address_and_keeps_a_time_range_in_sync(
        mark, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", frames=80)
    out = tmp_path / "out.mp4"
    # a stale RAY_ADDRESS must not make the job join (or wait for) another cluster without --ray-address
    proc = start_cli("swap", "--source", mark, "--target", str(clip), "--output", str(out), "--engine", "lite",
                     "--preset", "ultrafast", "--workers", "2", "--chunk-seconds", "1", "--start", "0.5",
                     "--end", "3.5", "--json", "--quiet", env={"RAY_ADDRESS": "127.0.0.1:9"})
    seen: dict[tuple[int, int], tuple[str, str, str, int]] = {}  # (pid, inode) -> (process, proto, address, port)
    deadline = time.monotonic() + 180
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            sockets = _bound_sockets()
            for pid in _tree(proc.pid):
                for inode in _socket_inodes(pid) & sockets.keys():
                    seen.setdefault((pid, inode), (_name(pid), *sockets[inode]))
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    names = {v[0] for v in seen.values()}
    # the job's own servers were seen: Ray's GCS, the raylet and a worker's core-worker server
    assert {"gcs_server", "raylet"} <= names and any("ChunkWorker" in n or n.startswith("ray::") for n in names), seen
    wide = {k: v for k, v in seen.items() if not _loopback(v[2])}
    assert not wide, f"listening beyond 127.0.0.1: {sorted(wide.values())}"

    report = json.loads(stdout)
    assert report["workers"] == 2 and report["chunks_total"] == 3 and report["frames"] == 60
    assert all({"worker", "pid", "chunks", "frames", "fps"} <= set(w) for w in report["worker_stats"])
    # the same range in one process: same frames, times shifted to 0 alike, the same stretch of audio
    options = SwapOptions(sources=(mark,), engine="lite", preset="ultrafast", start_s=0.5, end_s=3.5)
    swap_video(options, str(clip), str(tmp_path / "single.mp4"))
    single, chunked = video_facts(tmp_path / "single.mp4"), video_facts(out)
    assert chunked["frames"] == single["frames"] == 60
    assert chunked["times"] == pytest.approx(single["times"], abs=1e-6) and chunked["times"][0] == 0
    assert audio_packets(out) == audio_packets(tmp_path / "single.mp4")


def _head(tmp_path: Path, pythonpath: Path) -> tuple[subprocess.Popen[str], str]:
    """A one-node cluster in its own process whose workers import from `pythonpath` first (another
    machine's install, in effect); (process, address). Stopped by closing its stdin."""
    script = tmp_path / "head.py"
    script.write_text("import sys, ray\n"
                      "from streamswap.cluster.run import start_local_cluster\n"
                      "start_local_cluster(1)\n"
                      "print(ray.get_runtime_context().gcs_address, flush=True)\n"
                      "sys.stdin.read()\n"
                      "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path, preexec_fn=default_signals)
    address = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not re.fullmatch(r"127\.0\.0\.1:\d+", address):
        proc.kill()
        pytest.fail(f"the head did not start: {address!r}")
    return proc, address


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(240)  # two one-node clusters started and stopped, a job joining each
def test_workers_with_another_version_or_other_model_files_refuse_the_job(mark, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", frames=20)
    # a machine with another StreamSwap: the package with another version number
    other = tmp_path / "other-install"
    shutil.copytree(REPO / "streamswap", other / "streamswap", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "streamswap" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', '__version__ = "0.0.0+other"'))
    # a machine whose dlib landmark model is another file under the same name
    models = tmp_path / "other-models"
    fake = models / "face_recognition_models"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "shape_predictor_68_face_landmarks.dat").write_bytes(b"not the model you have")

    for pythonpath, expected in ((other, rf"runs streamswap 0\.0\.0\+other, the driver {re.escape(__version__)}"),
                                 (models, r"has another shape_predictor_68_face_landmarks\.dat")):
        head, address = _head(tmp_path, pythonpath)
        try:
            # --ray-address auto: RAY_ADDRESS is what names the cluster (Ray's convention; a named
            # cluster's token is used only with RAY_AUTH_MODE=token); the driver runs from a folder
            # without StreamSwap so its workers import their own install
            proc = start_cli("swap", "--source", mark, "--target", str(clip), "--output", str(tmp_path / "out.mp4"),
                             "--engine", "lite", "--workers", "1", "--ray-address", "auto", "--quiet",
                             env={"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}, cwd=tmp_path)
            _, stderr = proc.communicate(timeout=120)
        finally:
            _stop(head)
        lines = [ln for ln in stderr.splitlines() if ln.strip() and "Token authentication" not in ln]
        assert proc.returncode == 5, stderr[-3000:]
        assert len(lines) == 1 and re.match(rf"error: worker 0 on \S+ {expected}", lines[0]), lines
        assert not (tmp_path / "out.mp4").exists()


def test_a_second_job_on_the_same_output_is_refused_while_the_first_runs(cluster, mark, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", frames=60)
    out = tmp_path / "out.mp4"
    # both join the module's cluster (starting one per job is test_swap_with_workers_...'s)
    args = ("swap", "--source", mark, "--target", str(clip), "--output", str(out), "--engine", "lite",
            "--preset", "ultrafast", "--workers", "1", "--ray-address", cluster, "--chunk-seconds", "1", "--quiet")
    first = start_cli(*args)
    try:
        deadline = time.monotonic() + 60
        while not lock_path_for(out).exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first job never took its lock"
            time.sleep(0.05)
        second = start_cli(*args)
        _, stderr = second.communicate(timeout=60)
        assert first.poll() is None  # still running: the refusal was not a race with its end
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert second.returncode == 2 and len(lines) == 1, stderr
        assert re.fullmatch(rf"error: another streamswap job \(pid {first.pid}\) is working on {re.escape(str(out))};"
                            r" wait for it to finish or stop it \(lock: .*\)", lines[0]), lines
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr[-3000:]
    assert video_facts(out)["frames"] == 60
    assert not lock_path_for(out).exists() and not work_dir_for(out).exists()


def test_a_damaged_kept_chunk_is_run_again_not_stitched(cluster, mark, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", frames=60)
    options = SwapOptions(sources=(mark,), engine="lite", preset="ultrafast")
    settings = ClusterSettings(workers=2, chunk_s=1.0, warmup_s=0.5)
    out = tmp_path / "out.mp4"

    def stop_after_two_chunks(p):
        if p.chunks_done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        swap_cluster(options, str(clip), str(out), settings, progress=stop_after_two_chunks)
    kept = sorted(work_dir_for(out).glob("chunk-*.mp4"))
    assert 2 <= len(kept) < 3
    data = bytearray(kept[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, other content
    kept[0].write_bytes(bytes(data))
    report = swap_cluster(options, str(clip), str(out), settings)
    result = report.outputs[0]
    assert result.chunks == 3 and result.chunks_reused == len(kept) - 1
    assert result.chunks_run == 3 - result.chunks_reused
    assert int(kept[0].name[6:10]) in {c["chunk"] for c in report.chunk_log}  # the damaged one was redone
    facts = video_facts(out)
    assert facts["frames"] == 60


def test_a_worker_request_no_node_can_grant_fails_in_time_naming_it(cluster, mark, tmp_path):
    clip = _clip(tmp_path / "clip.mp4", frames=20)
    options = SwapOptions(sources=(mark,), engine="lite", preset="ultrafast")
    # more than any node has: refused at once
    with pytest.raises(PipelineError, match=r"request 4 CPU and no node of the cluster has that much"):
        swap_cluster(options, str(clip), str(tmp_path / "a.mp4"), ClusterSettings(workers=1, cpus_per_worker=4))

    @ray.remote(num_cpus=2)
    class Hog:  # another job holding every CPU of the node
        def ready(self) -> bool:
            return True

    hog = Hog.remote()
    ray.get(hog.ready.remote(), timeout=60)
    try:
        t0 = time.monotonic()
        with pytest.raises(PipelineError, match=r"1 of 1 worker\(s\) did not start within 3 s: no node could give "
                                                r"one 2 CPU .*free now: 0 CPU"):
            swap_cluster(options, str(clip), str(tmp_path / "b.mp4"),
                         ClusterSettings(workers=1, cpus_per_worker=2, start_timeout_s=3))
        assert time.monotonic() - t0 < 30
    finally:
        ray.kill(hog)
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2  # the refused job left nothing behind
    assert not lock_path_for(tmp_path / "b.mp4").exists()
