"""`streamswap serve` over HTTP: a real server process on 127.0.0.1 (lite engine, CPU), driven
with httpx: the token, a job end to end (upload, SSE progress, Range download, a valid video
with audio), a cancel's playable partial, traversal refused, caps, and a restart that keeps the
job list and resumes the job it interrupted. One server per module keeps it quick."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

import av
import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("aiortc", reason="the serve extra is not installed")

from serve_helpers import AUTH, TOKEN, Server, make_clip, wait_for  # noqa: E402

from streamswap.serve.auth import token_of  # noqa: E402
from streamswap.serve.ratelimit import RateLimit  # noqa: E402
from streamswap.serve.store import JobRecord, JobStore  # noqa: E402
from streamswap.serve.uploads import confine  # noqa: E402

pytestmark = pytest.mark.timeout(180)  # one server and a few tiny jobs, each wait bounded


@pytest.fixture(scope="module")
def media(tmp_path_factory, shared_data) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-media")
    video = shared_data / "videos" / "nggyup.mp4"
    return {
        "face": shared_data / "images" / "mark.jpg",
        "short": make_clip(video, root / "short.mp4", seconds=1.5),
        "long": make_clip(video, root / "long.mp4", seconds=2.5),
        "root": root,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, media):
    root = tmp_path_factory.mktemp("serve")
    srv = Server(root / "data", root / "server.log", "--jobs-per-minute", "40").start()
    yield srv
    srv.stop()


def _submit(client: httpx.Client, media: dict[str, Path], target: str = "short", **fields: str) -> dict:
    with open(media["face"], "rb") as face, open(media[target], "rb") as clip:
        r = client.post("/api/jobs", files={"source": ("mark.jpg", face), "target": (f"{target}.mp4", clip)},
                        data=fields)
    assert r.status_code == 201, r.text
    return r.json()


def _state(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/api/jobs/{job_id}").json()


def _final(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict:
    return wait_for(lambda: (j := _state(client, job_id))["state"] in ("done", "cancelled", "failed") and j,
                    timeout_s, f"job {job_id} to finish")


def _video(path: Path) -> tuple[int, int]:
    """(decoded video frames, audio packets) of a file: it must open and decode."""
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        audio = sum(1 for p in c.demux(audio=0) if p.size) if c.streams.audio else 0
    return frames, audio


def _size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return v.width, v.height


def test_every_endpoint_and_page_needs_the_token(server):
    for path in ("/api/jobs", "/api/info", "/api/jobs/0123456789ab", "/docs", "/openapi.json", "/", "/live"):
        assert httpx.get(server.url + path, timeout=10).status_code == 401, path
        assert httpx.get(server.url + path, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert httpx.post(server.url + "/api/jobs", timeout=10).status_code == 401
    assert httpx.delete(server.url + "/api/jobs/0123456789ab", timeout=10).status_code == 401
    assert httpx.get(server.url + "/api/jobs?token=" + TOKEN, timeout=10).status_code == 401  # API: header only
    assert httpx.get(server.url + "/api/jobs", headers={"X-StreamSwap-Token": TOKEN}, timeout=10).status_code == 200
    page = httpx.get(server.url + "/?token=" + TOKEN, timeout=10)
    assert page.status_code == 200 and "<form id=\"job-form\"" in page.text
    assert "nonce-" in page.headers["content-security-policy"] and page.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    with server.client() as c:
        assert "/api/jobs/{job_id}/events" in c.get("/openapi.json").json()["paths"]
        assert "/api/jobs/{job_id}/result" in httpx.get(server.url + "/docs?token=" + TOKEN, timeout=10).text


def test_lite_job_end_to_end(server, media):
    with server.client() as c:
        job = _submit(c, media, detect_every="5")
        events = []
        with c.stream("GET", f"/api/jobs/{job['id']}/events", timeout=90) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    if kind == "end":
                        break
        assert events and events[-1][0] == "end", events
        assert any(k == "progress" for k, _ in events)
        done = events[-1][1]
        assert done["state"] == "done", done
        assert done["frames"] == 45 and done["frames_expected"] == 45 and done["faces_swapped"] > 0
        assert "/" not in json.dumps(done["sources"]) and "data" not in done["options"]["sources"][0]

        part = c.get(f"/api/jobs/{job['id']}/result", headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and len(part.content) == 100
        assert part.headers["content-range"].startswith("bytes 0-99/")
        whole = c.get(f"/api/jobs/{job['id']}/result")
        assert whole.status_code == 200 and whole.content[:100] == part.content
        out = media["root"] / "downloaded.mp4"
        out.write_bytes(whole.content)
        frames, audio = _video(out)
        assert frames == 45 and audio > 0
        assert c.get(f"/api/jobs/{job['id']}/preview").headers["content-type"] == "image/jpeg"
        assert any(j["id"] == job["id"] for j in c.get("/api/jobs").json()["jobs"])


def test_cancel_leaves_a_playable_partial(server, media):
    with server.client() as c:
        job = _submit(c, media, target="long")
        waiting = _submit(c, media)  # --jobs 1: queued behind the first
        gone = c.delete(f"/api/jobs/{waiting['id']}").json()
        assert gone["state"] == "cancelled" and gone["result"] is None, gone  # it never runs
        wait_for(lambda: _state(c, job["id"])["frames"] >= 10, 60, "the job to write frames")
        running = c.get(f"/api/jobs/{job['id']}/preview")  # the frame it encoded last, before any result
        assert running.status_code == 200 and running.headers["content-type"] == "image/jpeg", running.text
        assert int(running.headers["x-frame-index"]) >= 9
        with av.open(io.BytesIO(running.content)) as still:
            frame = next(still.decode(video=0))
        assert (frame.width, frame.height) == _size(media["long"])
        r = c.delete(f"/api/jobs/{job['id']}")
        assert r.status_code in (200, 202), r.text
        final = _final(c, job["id"])
        assert final["state"] == "cancelled" and final["result"] == "result.partial.mp4", final
        out = media["root"] / "partial.mp4"
        out.write_bytes(c.get(f"/api/jobs/{job['id']}/result").content)
        frames, audio = _video(out)
        assert 0 < frames < 75 and audio > 0
        assert _state(c, waiting["id"])["frames"] == 0


def test_paths_outside_the_data_dir_are_refused(server, media, tmp_path):
    data = server.data_dir
    (data / "media").mkdir(exist_ok=True)
    shutil.copy(media["short"], data / "media" / "inside.mp4")
    shutil.copy(media["face"], data / "media" / "face.jpg")
    (data / "media" / "link.mp4").symlink_to(media["long"])  # a link that leads out
    with server.client() as c:
        for bad in ("../short.mp4", "media/../../short.mp4", str(media["long"]), "media/link.mp4", "/etc/passwd"):
            r = c.post("/api/jobs", data={"source_path": "media/face.jpg", "target_path": bad})
            assert r.status_code == 400, (bad, r.text)
            assert "data dir" in r.json()["error"], r.json()
        r = c.post("/api/jobs", data={"source_path": "media/face.jpg", "target_path": "media/inside.mp4"})
        assert r.status_code == 201, r.text  # a path inside is fine
        _final(c, r.json()["id"])
        bad = c.post("/api/jobs", files={"source": ("x.jpg", b"not an image")},
                     data={"target_path": "media/inside.mp4"})
        assert bad.status_code == 400 and "image" in bad.json()["error"]


def test_restart_keeps_the_jobs_and_resumes_the_interrupted_one(server, media):
    with server.client() as c:
        before = {j["id"]: j["state"] for j in c.get("/api/jobs").json()["jobs"]}
        # resumable, in 1-s segments: stopped in its second segment, the restart keeps the first
        job = _submit(c, media, target="long", resume="true", segment_seconds="1")
        wait_for(lambda: _state(c, job["id"])["frames"] >= 35, 60, "the job to pass its first segment")
    assert server.stop() is not None
    server.start()
    with server.client() as c:
        after = {j["id"]: j for j in c.get("/api/jobs").json()["jobs"]}
        assert {k: after[k]["state"] for k in before} == before  # finished jobs listed as they were
        assert c.get("/api/info").json()["resumed"] == 1
        final = _final(c, job["id"])
        assert final["state"] == "done" and final["resumed"] == 1 and final["frames"] == 75, final
        # 1 (or, on a slow stop, 2) of the 3 segments kept
        assert any(re.match(r"resuming: [12] of 3 segments kept", n) for n in final["notes"]), final["notes"]
    out = server.data_dir / "jobs" / job["id"] / "result.mp4"
    frames, audio = _video(out)
    assert frames == 75 and audio > 0


def test_caps_and_rate_limit(tmp_path):
    srv = Server(tmp_path / "data", tmp_path / "server.log", "--max-upload-mb", "1", "--jobs-per-minute", "3").start()
    try:
        with srv.client() as c:
            big = c.post("/api/jobs", files={"target": ("big.mp4", b"\0" * (2 * 1024 * 1024))})
            assert big.status_code == 413 and "limit" in big.json()["error"]
            codes = [c.post("/api/jobs", data={"target_path": "nope.mp4"}).status_code for _ in range(3)]
            assert codes == [400, 400, 429], codes  # the 413 counted too
            assert c.post("/api/jobs", data={}).headers["retry-after"]
    finally:
        srv.stop()


def test_records_are_redacted(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    rec = JobRecord("0123456789ab", time.time(), ("a.jpg",), "rtsp://admin:hunter2@cam/x?token=abc", "o.mp4",
                    {"sources": ["a.jpg"], "target_faces": []}, error="cannot open rtsp://u:secret@h/")
    store.put(rec)
    raw = (tmp_path / "jobs.db").read_bytes()
    assert b"hunter2" not in raw and b"secret" not in raw and b"abc" not in raw
    assert store.get(rec.id).error == "cannot open rtsp://***@h/"
    store.close()


def test_helpers(tmp_path):
    assert token_of({"authorization": "Bearer abc"}) == "abc"
    assert token_of({"x-streamswap-token": "def"}) == "def"
    assert token_of({}, {"token": "q"}) == "q" and token_of({}) is None
    limit = RateLimit(2, window_s=10)
    assert [limit.take(0), limit.take(1), limit.take(2) > 0, limit.take(11)] == [0, 0, True, 0]
    (tmp_path / "in.txt").write_text("x")
    assert confine(tmp_path, "in.txt") == (tmp_path / "in.txt").resolve()
    with pytest.raises(Exception, match="outside"):
        confine(tmp_path / "sub", str(tmp_path / "in.txt"))
    assert AUTH["Authorization"].endswith(TOKEN)


def test_a_live_job_takes_frames_from_memory(media):
    """What /live runs, without a browser: the live job reading a QueueSource, writing a QueueSink."""
    import threading

    from streamswap.api import Job, SwapOptions, run_job
    from streamswap.video.queues import QueueSink, QueueSource

    with av.open(str(media["short"])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    src, sink = QueueSource(320, 180, depth=len(frames)), QueueSink()
    options = SwapOptions(sources=(str(media["face"]),), engine="lite", device="cpu")
    job = Job(options, "webrtc", "webrtc", live=True, frames_from=src, frames_to=sink)
    out: list = []
    t = threading.Thread(target=lambda: out.append(run_job(job)))
    t.start()
    for i, rgb in enumerate(frames):
        src.put(rgb, i * 3000)
    src.end()
    t.join(60)
    assert not t.is_alive()
    report = out[0]
    assert report.status == "done" and report.frames + report.dropped == len(frames) and report.frames > 0
    got = sink.get(timeout=1)
    assert got is not None and got[0].shape == (180, 320, 3) and got[1] % 3000 == 0
    with pytest.raises(ValueError, match="does not match"):
        src.put(frames[0][:10], 0)
