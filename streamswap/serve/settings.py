"""What `streamswap serve` was given: one frozen record the app's parts read."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServeSettings:
    """host/port: where to listen (127.0.0.1 by default); token: the access token every request
    needs; data_dir: uploads, results and the job database (server paths are confined to it);
    jobs: how many swap jobs run at once; certfile/keyfile: TLS; ray_address: run video jobs on
    that Ray cluster; max_upload_bytes: the largest request body accepted; jobs_per_minute: job
    creations allowed per minute (a sliding window); engine: the default engine of a job; device:
    where jobs and the live swap run."""

    data_dir: Path
    token: str
    host: str = "127.0.0.1"
    port: int = 8765
    jobs: int = 1
    certfile: Path | None = None
    keyfile: Path | None = None
    ray_address: str | None = None
    max_upload_bytes: int = 2 * 1024**3
    jobs_per_minute: int = 30
    engine: str = "auto"
    device: str = "auto"

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.certfile is not None and self.keyfile is not None

    @property
    def loopback(self) -> bool:
        """Whether the server listens on this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, path: str = "/") -> str:
        """The address to open, with the token (what the command prints once at start)."""
        import socket

        scheme = "https" if self.tls else "http"
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host  # every interface
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}{path}?token={self.token}"
