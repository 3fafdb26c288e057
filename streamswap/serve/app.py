"""The FastAPI app of `streamswap serve`: the REST jobs, the pages and the live endpoints, every one
behind the token (`auth`), wired to the runner (`jobs`), the records (`store`) and WebRTC (`live`).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from streamswap import __version__
from streamswap.errors import InputError
from streamswap.serve.auth import allowed, token_of
from streamswap.serve.jobs import JobRunner, new_id, options_from_form, record_options
from streamswap.serve.live import LiveSessions, session_folder
from streamswap.serve.ratelimit import RateLimit
from streamswap.serve.settings import ServeSettings
from streamswap.serve.store import FINAL_STATES, JobRecord, JobStore
from streamswap.serve.uploads import Form, TooLarge, confine, read_form

PAGES = {"/": "index.html", "/live": "live.html"}
SSE_POLL_S = 0.25
SSE_KEEPALIVE_S = 10.0
_MULTIPART_FIELDS = {
    "source": "face photo(s) to put in (files; or source_path)",
    "target": "the image or video to change (a file; or target_path)",
    "source_path": "a server path inside --data-dir instead of an uploaded source",
    "target_path": "a server path inside --data-dir instead of an uploaded target",
    "target_face": "reference photo(s) of the people to replace (files, optional)",
}


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _page(name: str, nonce: str) -> str:
    """A page from static/, its scripts and style sheet put inline (so that, like the page, they
    need the token; there is still no build step: the files are served as written)."""
    static = resources.files("streamswap.serve") / "static"
    text = (static / name).read_text(encoding="utf-8")

    def script(m: re.Match[str]) -> str:
        body = (static / m.group(2)).read_text(encoding="utf-8")
        return f'<script nonce="{nonce}"{m.group(1) or ""}>\n{body}</script>'

    def style(m: re.Match[str]) -> str:
        return f"<style>\n{(static / m.group(1)).read_text(encoding='utf-8')}</style>"

    text = re.sub(r'<script( type="module")? src="([\w-]+\.js)"></script>', script, text)
    return re.sub(r'<link rel="stylesheet" href="([\w-]+\.css)">', style, text)


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for `settings` (the data dir must exist)."""
    data_dir = settings.data_dir.resolve()
    store = JobStore(data_dir / "jobs.db")
    runner = JobRunner(settings, store)
    live = LiveSessions(settings)
    limit = RateLimit(settings.jobs_per_minute)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.resumed = runner.start()
        try:
            yield
        finally:
            await live.close_all()
            await asyncio.to_thread(runner.shutdown)
            store.close()

    app = FastAPI(
        title="StreamSwap",
        version=__version__,
        description="Face swap jobs over HTTP. Every request needs the token: "
        "`Authorization: Bearer T` or `X-StreamSwap-Token: T`.",
        docs_url=None,  # the default pages load their scripts from a CDN: ours works offline
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.runner, app.state.store, app.state.live = runner, store, live

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        page = request.method == "GET" and (request.url.path in PAGES or request.url.path == "/docs")
        given = token_of(request.headers, request.query_params if page else None)
        if not allowed(given, settings.token):
            if page:
                return HTMLResponse(
                    "<!doctype html><title>StreamSwap</title><p>401: open the address with the token that "
                    "<code>streamswap serve</code> printed when it started.</p>",
                    status_code=401,
                )
            return _error(401, "missing or wrong token (send Authorization: Bearer TOKEN)")
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the page's address holds the token
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        # the reason without the data dir's location (the client knows its files by name)
        message = str(exc).splitlines()[0].replace(f"{data_dir}/", "")
        return _error(413 if isinstance(exc, TooLarge) else 400, message)

    # --- pages -----------------------------------------------------------------------------------
    def page(name: str) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'"
        )
        return HTMLResponse(_page(name, nonce), headers={"Content-Security-Policy": csp})

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return page("index.html")

    @app.get("/live", include_in_schema=False)
    async def live_page() -> HTMLResponse:
        return page("live.html")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        rows = []
        for path, ops in app.openapi()["paths"].items():
            for method, op in ops.items():
                rows.append(
                    f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                    f"<td>{html.escape(op.get('description') or op.get('summary', ''))}</td></tr>"
                )
        body = (
            "<!doctype html><meta charset=utf-8><title>StreamSwap API</title>"
            "<style>body{font:14px system-ui;margin:2em}td{padding:4px 10px;vertical-align:top}</style>"
            f"<h1>StreamSwap API {__version__}</h1><p>Every request needs the token "
            "(<code>Authorization: Bearer TOKEN</code>). The OpenAPI schema: <code>GET /openapi.json</code>.</p>"
            f"<table>{''.join(rows)}</table>"
        )
        return HTMLResponse(body)

    # --- jobs -------------------------------------------------------------------------------------
    def job_or_404(job_id: str) -> JobRecord | JSONResponse:
        rec = store.get(job_id) if re.fullmatch(r"[0-9a-f]{12}", job_id) else None
        return rec if rec is not None else _error(404, f"no job {job_id!r}")

    multipart_schema = {
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            **{k: {"type": "string", "description": v} for k, v in _MULTIPART_FIELDS.items()},
                            **{k: {"type": t.__name__} for k, (t, _) in _option_types().items()},
                        },
                    }
                }
            },
            "required": True,
        }
    }

    @app.post("/api/jobs", status_code=201, openapi_extra=multipart_schema)
    async def create_job(request: Request) -> Response:
        """Create a job: multipart upload of source photo(s) and a target (or server paths inside
        --data-dir) plus swap options; returns the job record with its id."""
        wait = limit.take()
        if wait:
            return _error(
                429, f"too many jobs: at most {settings.jobs_per_minute} a minute", **{"Retry-After": f"{wait:.0f}"}
            )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes:
            raise TooLarge(f"upload is over the server's limit of {settings.max_upload_bytes / 1e6:.0f} MB")
        job_id = new_id()
        folder = data_dir / "jobs" / job_id
        (folder / "inputs").mkdir(parents=True)
        try:
            form = await read_form(
                request.headers.get("content-type", ""),
                request.stream(),
                folder / "inputs",
                max_bytes=settings.max_upload_bytes,
            )
            record = await asyncio.to_thread(_new_record, job_id, form, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return JSONResponse(runner.submit(record).public(), status_code=201)

    def _new_record(job_id: str, form: Form, folder: Path) -> JobRecord:
        from streamswap.limits import require_image
        from streamswap.options import check_job_paths
        from streamswap.video.probe import classify

        sources = form.files.get("source", [])
        if form.fields.get("source_path"):
            sources = [*sources, confine(data_dir, form.fields["source_path"])]
        targets = form.files.get("target", [])
        if form.fields.get("target_path"):
            targets = [*targets, confine(data_dir, form.fields["target_path"])]
        if not sources:
            raise InputError("give a source face photo (field 'source', or 'source_path')")
        if len(targets) != 1:
            raise InputError("give one target image or video (field 'target', or 'target_path')")
        target = targets[0]
        kind = classify(str(target))
        if kind not in ("file", "image"):
            raise InputError("the target must be an image or a video file")
        for p in sources:
            require_image(p)  # the project's pixel cap, from the header
        options = options_from_form(form.fields, sources, form.files.get("target_face", []), settings)
        output = folder / (f"result{target.suffix.lower()}" if kind == "image" else "result.mp4")
        check_job_paths(options, str(target), str(output))  # frame-size caps, readable inputs
        return JobRecord(
            id=job_id,
            created=time.time(),
            sources=tuple(str(p) for p in sources),
            target=str(target),
            output=str(output),
            options=record_options(options),
            kind="image" if kind == "image" else "video",
        )

    @app.get("/api/jobs")
    async def list_jobs() -> JSONResponse:
        """Every job, the newest first: state, frames, fps, ETA, error."""
        return JSONResponse({"jobs": [r.public() for r in store.all()]})

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str) -> Response:
        """One job's record: state, frames, fps, ETA, error."""
        rec = job_or_404(job_id)
        return rec if isinstance(rec, Response) else JSONResponse(rec.public())

    @app.delete("/api/jobs/{job_id}")
    async def cancel_job(job_id: str) -> Response:
        """Stop a job cleanly: a queued one never runs; a running one leaves a playable partial."""
        rec = job_or_404(job_id)
        if isinstance(rec, Response):
            return rec
        try:
            after = await asyncio.to_thread(runner.cancel, job_id)
        except InputError as exc:
            return _error(409, str(exc))
        assert after is not None
        return JSONResponse(after.public(), status_code=202 if after.state not in FINAL_STATES else 200)

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str, request: Request) -> Response:
        """Progress as Server-Sent Events: a `progress` event per change, `end` when it finishes."""
        rec = job_or_404(job_id)
        if isinstance(rec, Response):
            return rec

        async def events() -> AsyncIterator[str]:
            seen, quiet = None, time.monotonic()
            while not await request.is_disconnected():
                now = store.get(job_id)
                if now is None:
                    return
                if now.updated != seen:
                    seen, quiet = now.updated, time.monotonic()
                    yield f"event: progress\ndata: {json.dumps(now.public())}\n\n"
                if now.state in FINAL_STATES:
                    yield f"event: end\ndata: {json.dumps(now.public())}\n\n"
                    return
                if time.monotonic() - quiet > SSE_KEEPALIVE_S:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(SSE_POLL_S)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @app.get("/api/jobs/{job_id}/result")
    async def job_result(job_id: str) -> Response:
        """Download the result (Range requests supported): the output, or a cancelled job's partial."""
        rec = job_or_404(job_id)
        if isinstance(rec, Response):
            return rec
        if not rec.result or not Path(rec.result).is_file():
            return _error(404, f"job {job_id} has no result yet (state {rec.state})")
        path = Path(rec.result).resolve()
        if not path.is_relative_to(data_dir):
            return _error(403, "the result is outside the data dir")
        return FileResponse(path, filename=f"streamswap-{job_id}{path.suffix}")

    @app.get("/api/jobs/{job_id}/preview")
    async def job_preview(job_id: str, t: float = 0.0) -> Response:
        """A JPEG: while the job runs, the frame it encoded last; after, the result at `t` seconds
        (a still: the image itself)."""
        rec = job_or_404(job_id)
        if isinstance(rec, Response):
            return rec
        frame = runner.latest_frame(job_id)
        if frame is not None:
            data = await asyncio.to_thread(_jpeg, frame.image)
            return Response(data, media_type="image/jpeg", headers={"X-Frame-Index": str(frame.index)})
        if not rec.result or not Path(rec.result).is_file():
            return _error(404, f"job {job_id} has no result yet (state {rec.state})")
        data = await asyncio.to_thread(_preview_jpeg, Path(rec.result), t)
        return Response(data, media_type="image/jpeg")

    # --- live -------------------------------------------------------------------------------------
    @app.post("/api/live/offer")
    async def live_offer(request: Request) -> Response:
        """Start a live session: multipart with the page's WebRTC offer (`sdp`, `type`) and the
        `source` face photo; returns the answer. The camera track in, the swapped track back."""
        from streamswap.limits import require_image

        session_id = new_id()
        folder = session_folder(data_dir, session_id)
        try:
            form = await read_form(
                request.headers.get("content-type", ""), request.stream(), folder, max_bytes=50 * 1024**2
            )
            photos = form.files.get("source", [])
            if len(photos) != 1:
                raise InputError("give one source face photo (field 'source')")
            require_image(photos[0])
            options = replace(options_from_form(form.fields, photos, [], settings), preset="veryfast")
            sdp, kind = form.fields.get("sdp", ""), form.fields.get("type", "")
            answer = await live.offer(session_id, sdp, kind, options, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return JSONResponse(answer)

    @app.get("/api/live/{session_id}")
    async def live_stats(session_id: str) -> Response:
        """A live session's server-side numbers: fps, latency (p50/p95 through the graph), drops."""
        session = live.sessions.get(session_id)
        return JSONResponse(session.public()) if session else _error(404, f"no live session {session_id!r}")

    @app.delete("/api/live/{session_id}")
    async def live_close(session_id: str) -> Response:
        """End a live session."""
        closed = await live.close(session_id)  # removes the session's folder too
        return JSONResponse({"closed": closed}, status_code=200 if closed else 404)

    @app.get("/api/info")
    async def info() -> JSONResponse:
        """The server: version, default engine, concurrent jobs, whether it runs on a Ray cluster."""
        return JSONResponse(
            {
                "version": __version__,
                "engine": settings.engine,
                "jobs": settings.jobs,
                "ray": bool(settings.ray_address),
                "resumed": getattr(app.state, "resumed", 0),
            }
        )

    return app


def _option_types() -> dict[str, tuple[type, str]]:
    from streamswap.serve.jobs import OPTION_FIELDS

    return OPTION_FIELDS


def _preview_jpeg(path: Path, t: float) -> bytes:
    """A JPEG of `path` (image or video) at `t` seconds."""
    import av

    from streamswap.video.probe import classify

    frame: av.VideoFrame | None = None
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            frame = f
            if classify(str(path)) == "image" or (f.time is not None and f.time >= t):
                break
    if frame is None:
        raise InputError(f"{path.name} has no frame")
    return _jpeg(frame.to_ndarray(format="rgb24"))


def _jpeg(rgb: Any) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image (a NumPy array, or a tensor on any device)."""
    import io

    from PIL import Image

    if hasattr(rgb, "detach"):
        rgb = rgb.detach().cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=85)
    return buf.getvalue()
