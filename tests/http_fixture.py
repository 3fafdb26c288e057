"""A real HTTP(S) server on 127.0.0.1 (a thread) that serves byte strings, honours Range, and can
misbehave the ways a mirror does, for the download tests: cut the connection mid-file, send a
body shorter than its Content-Length, answer a resume with the wrong Content-Range, stream an
endless body, omit the length, redirect, or go slowly."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class FileServer:
    """Serves `files[path] = bytes`. `log` records (path, Range header).

    Misbehaviour, per path: `cut_once[path] = n` sends n bytes of the first full response and
    then drops the connection; `short[path] = n` announces the whole Content-Length on every
    response but sends only n bytes, then closes; `wrong_range[path]` = "resume" answers a Range
    request with a 206 whose Content-Range starts at 0, "always" also answers a plain request with
    a 206 starting at byte 1; `endless[path] = head` streams `head` then zeros, chunked, forever;
    `no_length` paths get no Content-Length (the end is the connection closing); `redirects[path]
    = url` answers 302 to `url`; `slow[path] = s` sleeps s seconds between 1 MiB pieces, and
    `sending` is set when a body starts going out. `tls = (certfile, keyfile)` serves https."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)
    wrong_range: dict[str, str] = field(default_factory=dict)
    endless: dict[str, bytes] = field(default_factory=dict)
    no_length: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    log: list[tuple[str, str | None]] = field(default_factory=list)
    honour_range: bool = True
    tls: tuple[Path, Path] | None = None
    sending: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                try:
                    self._answer(rng)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: fine
                    self.close_connection = True

            def _answer(self, rng: str | None) -> None:
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path in server.endless:
                    self._endless(server.endless[self.path])
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                wrong = server.wrong_range.get(self.path)
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if wrong:
                        start = 0  # claims (and sends) the file from byte 0 whatever was asked
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                elif wrong == "always":
                    start = 1
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 1-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                if self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                server.sending.set()
                cut = server.cut_once.pop(self.path, None)
                cut = server.short.get(self.path) if cut is None else cut
                if cut is not None:
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                pause = server.slow.get(self.path)
                if pause is None:
                    self.wfile.write(chunk)
                else:
                    for i in range(0, len(chunk), 1 << 20):
                        self.wfile.write(chunk[i:i + (1 << 20)])
                        self.wfile.flush()
                        time.sleep(pause)
                self.close_connection = self.path in server.no_length or self.close_connection

            def _endless(self, head: bytes) -> None:
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                server.sending.set()
                block = head + bytes((1 << 20) - len(head))
                while True:  # until the client hangs up (BrokenPipe ends the handler)
                    self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                    block = bytes(1 << 20)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
