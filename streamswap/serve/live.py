"""The live swap over WebRTC: the page's camera track in, the swapped track back (aiortc).

Each session is one live job (`streamswap.api.run_job` with `Job(live=True)`): the same stages,
engine, causal tracking and bounded latency as `streamswap live`. Frames cross in memory
(`video.queues`): the track's frames go into a `QueueSource` (drop-oldest), the job's results
into a `QueueSink`, and the outgoing track sends the newest result. Timestamps travel with the
frames, so the page measures glass-to-glass latency from the stamp it drew into each frame.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamswap.errors import InputError
from streamswap.options import SwapOptions
from streamswap.serve.settings import ServeSettings

log = logging.getLogger(__name__)

MAX_SESSIONS = 2  # a live swap holds a CPU core or a GPU's worth of work: a few at most
FIRST_FRAME_S = 20.0  # how long a session waits for the camera's first frame


@dataclass
class LiveSession:
    """One peer connection and its live job. stats: the job's latest graph statistics."""

    id: str
    options: SwapOptions
    pc: Any
    folder: Path | None = None
    source: Any = None
    sink: Any = None
    graph: Any = None
    thread: threading.Thread | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    frames_in: int = 0
    started: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def public(self) -> dict[str, Any]:
        """What GET /api/live/{id} shows."""
        return {"id": self.id, "frames_in": self.frames_in, "error": self.error, **self.stats}


def _swapped_track(session: LiveSession) -> Any:
    """The outgoing track: each `recv` returns the newest swapped frame with its input's pts."""
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class SwappedTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._last_pts = -1

        async def recv(self) -> av.VideoFrame:
            await session.ready.wait()
            while True:
                if self.readyState != "live" or session.sink is None:
                    raise MediaStreamError
                got = await asyncio.to_thread(session.sink.get, 0.5)
                if got is not None:
                    break
                if session.sink.closed:
                    raise MediaStreamError
            rgb, pts = got
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = max(pts, self._last_pts + 1)  # RTP timestamps must grow
            self._last_pts = frame.pts
            frame.time_base = fractions.Fraction(1, 90_000)
            return frame

    return SwappedTrack()


class LiveSessions:
    """The live sessions of one server (see the module docstring)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, LiveSession] = {}

    async def offer(
        self, session_id: str, sdp: str, kind: str, options: SwapOptions, folder: Path | None = None
    ) -> dict[str, str]:
        """Answer the page's offer: receive its video track, send the swapped one back. `folder`:
        the session's files (its source photo), removed when it closes."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        if kind != "offer":
            raise InputError("send a WebRTC offer (type 'offer')")
        if len([s for s in self.sessions.values() if s.thread is None or s.thread.is_alive()]) >= MAX_SESSIONS:
            raise InputError(f"{MAX_SESSIONS} live sessions are running already; close one first")
        pc = RTCPeerConnection()
        session = LiveSession(session_id, options, pc, folder)
        self.sessions[session_id] = session

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                asyncio.ensure_future(self._pump(session, track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session_id)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        pc.addTrack(_swapped_track(session))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type, "id": session_id}

    async def _pump(self, session: LiveSession, track: Any) -> None:
        """Camera frames into the job's source; the job starts with the first frame (its size)."""
        from aiortc.mediastreams import MediaStreamError

        from streamswap.limits import check_video_size
        from streamswap.video.queues import QueueSink, QueueSource

        try:
            first = await asyncio.wait_for(track.recv(), FIRST_FRAME_S)
            w, h = first.width - first.width % 2, first.height - first.height % 2
            check_video_size(w, h, "the camera")  # the project's frame-size cap, as for any input
            session.source = QueueSource(w, h, device=_device(session.options.device))
            session.sink = QueueSink()
            session.thread = threading.Thread(target=self._run, args=(session,), name="serve-live", daemon=True)
            session.thread.start()
            session.ready.set()
            frame = first
            while True:
                rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
                session.source.put(rgb, int(frame.pts or 0))
                session.frames_in += 1
                frame = await track.recv()
        except (TimeoutError, MediaStreamError):
            pass
        except InputError as exc:
            session.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one session's failure must not stop the server
            session.error = f"{type(exc).__name__}: {exc}"
            log.debug("live session %s", session.id, exc_info=True)
        finally:
            if session.source is not None:
                session.source.end()

    def _run(self, session: LiveSession) -> None:
        """The live job, in its own thread, until the track ends or the session closes."""
        from streamswap.api import Job, run_job
        from streamswap.errors import StreamSwapError

        def progress(stats: Any, report: Any) -> None:
            session.stats = {
                "fps": round(stats.frames_per_s, 2),
                "frames_out": stats.frames_out,
                "dropped": stats.dropped + (session.source.dropped if session.source else 0),
                "latency_p50_ms": None if stats.latency_p50_s is None else round(stats.latency_p50_s * 1000, 1),
                "latency_p95_ms": None if stats.latency_p95_s is None else round(stats.latency_p95_s * 1000, 1),
                "faces_swapped": report.faces_swapped,
                "engine": report.engine,
            }

        def attach(graph: Any) -> None:
            session.graph = graph

        job = Job(session.options, "webrtc", "webrtc", live=True, frames_from=session.source, frames_to=session.sink)
        try:
            run_job(job, progress=progress, on_graph=attach)
        except StreamSwapError as exc:
            session.error = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - reported on the page, not a crash of the server
            session.error = f"unexpected {type(exc).__name__}: {exc}"
            log.debug("live job %s", session.id, exc_info=True)
        finally:
            if session.sink is not None:
                session.sink.close()

    async def close(self, session_id: str) -> bool:
        """End a session: the job finishes, the connection closes. False: no such session."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        if session.source is not None:
            session.source.end()
        if session.graph is not None:
            session.graph.stop()
        session.ready.set()
        await session.pc.close()
        if session.thread is not None:
            await asyncio.to_thread(session.thread.join, 10.0)
        if session.folder is not None:
            shutil.rmtree(session.folder, ignore_errors=True)
        return True

    async def close_all(self) -> None:
        """End every session (the server is stopping)."""
        for sid in list(self.sessions):
            await self.close(sid)


def _device(device: str) -> str:
    from streamswap.devices import resolve_device

    return str(resolve_device(device))


def session_folder(data_dir: Path, session_id: str) -> Path:
    """Where a live session's source photo is kept."""
    folder = data_dir / "live" / session_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder
