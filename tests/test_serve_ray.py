"""`streamswap serve --ray-address` against a cluster that `ray start --head` started, as a user
starts one: a job goes through the cluster (swap_cluster), and the driver joins with the token
`ray start` requires by default (Ray 2.59+) although RAY_AUTH_MODE is not set. The cluster runs
in its own process group, with its own token and temp dir, so nothing else on the machine (the
other Ray tests' clusters) is touched when it ends."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import av
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("ray", reason="the cluster extra is not installed")

from serve_helpers import Server, free_port, make_clip, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def ray_head(tmp_path):
    """`ray start --head --block` (1 CPU, no dashboard) on a free port: (address, the env that
    names its token). Stopped with SIGTERM to its process group (never `ray stop`: that would
    end every Ray cluster on the machine)."""
    token = tmp_path / "ray-token"
    token.write_text(secrets.token_hex(32))
    temp = tempfile.mkdtemp(prefix="ssray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env |= {"RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(tmp_path / "ray.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--port", str(port), "--num-cpus", "1", "--include-dashboard=false",
                             "--temp-dir", temp, "--disable-usage-stats"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(lambda: b"Ray runtime started" in (tmp_path / "ray.log").read_bytes() or proc.poll() is not None,
                 90, "ray start")
        assert proc.poll() is None, (tmp_path / "ray.log").read_text()
        yield f"127.0.0.1:{port}", {"RAY_AUTH_TOKEN_PATH": str(token)}
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(20)
                break
            except subprocess.TimeoutExpired:
                continue
        time.sleep(0.5)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still there
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_serve_job_runs_on_a_ray_start_cluster(ray_head, shared_data, tmp_path):
    address, env = ray_head
    clip = make_clip(shared_data / "videos" / "nggyup.mp4", tmp_path / "clip.mp4", seconds=1.0)
    server = Server(tmp_path / "data", tmp_path / "server.log", "--ray-address", address, env=env).start()
    try:
        with server.client() as c:
            assert c.get("/api/info").json()["ray"] is True
            with open(shared_data / "images" / "mark.jpg", "rb") as face, open(clip, "rb") as target:
                r = c.post("/api/jobs", files={"source": ("mark.jpg", face), "target": ("clip.mp4", target)})
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            job = wait_for(lambda: (j := c.get(f"/api/jobs/{job_id}").json())["state"] in ("done", "failed") and j,
                           150, "the job on the cluster")
            assert job["state"] == "done", (job, (tmp_path / "server.log").read_text()[-3000:])
            out = tmp_path / "result.mp4"
            out.write_bytes(c.get(f"/api/jobs/{job_id}/result").content)
    finally:
        server.stop()
    with av.open(str(out)) as f:
        frames = sum(1 for _ in f.decode(video=0))
    with av.open(str(clip)) as f:
        expected = sum(1 for _ in f.decode(video=0))
    assert frames == expected == job["frames"]
    # (with --ray-address a job joins that cluster or fails with "cannot join": it never starts one of its own)
