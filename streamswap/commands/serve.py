"""`streamswap serve`: swap jobs over HTTP, a page in the browser and a live webcam swap over
WebRTC, behind a token (needs the `serve` extra)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from streamswap.app import app
from streamswap.errors import InputError

TOKEN_ENV = "STREAMSWAP_TOKEN"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (this machine only by default)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on."),
    token: str = typer.Option(
        None, "--token", help=f"The access token (default: ${TOKEN_ENV}, else a random one, printed at start)."
    ),
    data_dir: Path = typer.Option(
        Path("streamswap-data"), "--data-dir", file_okay=False, help="Uploads, results and the job database."
    ),
    jobs: int = typer.Option(1, "--jobs", min=1, max=64, help="Swap jobs run at once."),
    certfile: Path = typer.Option(None, "--certfile", dir_okay=False, help="TLS certificate (PEM), with --keyfile."),
    keyfile: Path = typer.Option(None, "--keyfile", dir_okay=False, help="TLS private key (PEM), with --certfile."),
    ray_address: str = typer.Option(
        None, "--ray-address", help="Run video jobs on this Ray cluster (HOST:6379 or auto; the `cluster` extra)."
    ),
    engine: str = typer.Option("auto", help="Default engine of a job: auto, ghost, lite or a plugin's name."),
    device: str = typer.Option("auto", help="Where jobs run: auto, cpu, cuda or cuda:N."),
    max_upload_mb: float = typer.Option(2048, "--max-upload-mb", min=1, help="The largest upload accepted, MB."),
    jobs_per_minute: int = typer.Option(30, "--jobs-per-minute", min=1, help="Job creations allowed per minute."),
) -> None:
    """Serve swap jobs over HTTP: a REST API, a page, and a live webcam swap over WebRTC.

    The API's schema is at /docs; /live swaps the browser's camera. Every request needs the
    token; Ctrl-C stops, leaving interrupted jobs to resume at the next start."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "aiortc", "python_multipart") if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(
            f"`streamswap serve` needs the serve extra ({', '.join(missing)} missing): pip install 'streamswap[serve]'"
        )
    if (certfile is None) != (keyfile is None):
        raise InputError("give both --certfile and --keyfile (or neither)")
    for f in (certfile, keyfile):
        if f is not None and not f.is_file():
            raise InputError(f"TLS file not found: {f}")
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(f"--data-dir {data_dir} is not a folder")
    data_dir.mkdir(parents=True, exist_ok=True)

    from streamswap.serve.auth import new_token
    from streamswap.serve.settings import ServeSettings

    settings = ServeSettings(
        data_dir=data_dir.resolve(),
        token=token or os.environ.get(TOKEN_ENV) or new_token(),
        host=host,
        port=port,
        jobs=jobs,
        certfile=certfile,
        keyfile=keyfile,
        ray_address=ray_address,
        max_upload_bytes=int(max_upload_mb * 1024**2),
        jobs_per_minute=jobs_per_minute,
        engine=engine,
        device=device,
    )
    _serve(settings)


def _serve(settings: object) -> None:
    import socket

    import uvicorn
    from rich.console import Console

    from streamswap.serve.app import create_app
    from streamswap.serve.settings import ServeSettings

    assert isinstance(settings, ServeSettings)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not settings.loopback and not settings.tls:
        console.print(
            f"[yellow]warning:[/] --host {settings.host} without --certfile/--keyfile: the token and your "
            "media cross the network unencrypted, and browsers allow the camera (/live) only on localhost "
            "or HTTPS. Prefer an SSH tunnel (ssh -L 8765:127.0.0.1:8765 HOST) or TLS."
        )
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})") from None
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    from dataclasses import replace

    settings = replace(settings, port=port)
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,  # an access log would record page addresses, which carry the token
        ssl_certfile=str(settings.certfile) if settings.certfile else None,
        ssl_keyfile=str(settings.keyfile) if settings.keyfile else None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # the one place the token is shown (as Jupyter does): the address to open
    console.print(
        f"StreamSwap serving {settings.data_dir}\n  jobs: {settings.url('/')}\n  live: {settings.url('/live')}"
    )
    console.print(f"listening on {settings.host}:{port}", style="dim")
    server.run(sockets=[sock])
