"""Downloads are checked before they are trusted: a mirror that answers 200 with an HTML page,
sends less than its Content-Length, resumes from the wrong offset, streams forever, or
redirects https to http leaves nothing pinned and one line saying what to do, and the same
fetch works once the server behaves. Two fetchers of one file download it once. Every server
here is a real one on 127.0.0.1 (tests/http_fixture.py); nothing reaches the internet."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from dataclasses import replace
from pathlib import Path

import pytest

from streamswap.errors import ModelError
from streamswap.models import catalog
from streamswap.models.catalog import MB, MIB, find_model
from streamswap.models.download import DownloadSettings
from streamswap.files import umask
from streamswap.models.registry import Registry, RegistryConfig, Status
from streamswap.models.trust import (
    Expect,
    Untrusted,
    check_redirect,
    format_problem,
    parse_content_range,
    range_problem,
)

from http_fixture import FileServer

FAST = DownloadSettings(attempts=2, backoff_s=0.01, timeout_s=5)
NAME = "scrfd_10g_bnkps"  # 17 MB in the catalogue: accepted range 8.5 MB .. 35.7 MB
FILE = "scrfd_10g_bnkps.onnx"
PATH = "/antelope/scrfd_10g_bnkps.onnx"
ONNX_HEAD = b"\x08\x07\x12\x07pytorch\x1a\x052.1.0"
PAYLOAD = ONNX_HEAD + bytes(range(256)) * 40_000  # ~10.2 MB, an ONNX ModelProto start
HTML = b"<!DOCTYPE html><html><head><title>Rate limit</title></head><body>Try later</body></html>\n"


@pytest.fixture
def server():
    srv = FileServer()
    srv.files[PATH] = PAYLOAD
    yield srv
    srv.close()


def registry(tmp_path: Path, server: FileServer, settings: DownloadSettings = FAST) -> Registry:
    return Registry(RegistryConfig(home=tmp_path / "home", mirror=server.url, download=settings))


def assert_refused(reg: Registry, exc: pytest.ExceptionInfo[ModelError], *, part_kept: bool = False) -> str:
    """Nothing pinned, no final file, one line that says what to do; the message."""
    message = str(exc.value)
    assert "\n" not in message and ("retry" in message or "fetch" in message), message
    assert FILE not in reg.read_lock(), reg.read_lock()
    assert not (reg.cache_dir / FILE).exists()
    assert (reg.cache_dir / (FILE + ".part")).exists() is part_kept
    return message


def assert_retry_works(reg: Registry, server: FileServer) -> None:
    """The server now behaves: the same fetch succeeds and pins the right hash."""
    for misbehaviour in (server.short, server.wrong_range, server.endless, server.redirects, server.cut_once):
        misbehaviour.pop(PATH, None)
    server.no_length.discard(PATH)
    server.files[PATH] = PAYLOAD
    path = reg.fetch(NAME)
    assert path.read_bytes() == PAYLOAD
    assert reg.read_lock()[FILE]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert reg.state(find_model(NAME)).status is Status.VERIFIED
    assert not (reg.cache_dir / (FILE + ".part")).exists()


# ---- what a misbehaving mirror sends -------------------------------------------------------

def test_a_small_html_page_with_status_200_is_refused_by_its_size(tmp_path, server):
    server.files[PATH] = HTML
    reg = registry(tmp_path, server)
    with pytest.raises(Untrusted) as exc:
        reg.fetch(NAME)
    message = assert_refused(reg, exc)
    assert f"announces {len(HTML)} bytes, but {FILE} is 8.5 MB to 35.7 MB" in message
    assert_retry_works(reg, server)


def test_an_html_page_of_a_plausible_size_is_refused_by_its_first_bytes(tmp_path, server):
    server.files[PATH] = HTML * (len(PAYLOAD) // len(HTML))
    reg = registry(tmp_path, server)
    with pytest.raises(Untrusted) as exc:
        reg.fetch(NAME)
    assert "not an ONNX protobuf: it starts with '<': an HTML or XML page" in assert_refused(reg, exc)
    assert_retry_works(reg, server)


def test_a_body_shorter_than_its_content_length_is_not_accepted(tmp_path, server):
    server.short[PATH] = 1_000_000  # announces every byte, sends 1 MB, closes; on every request
    reg = registry(tmp_path, server)
    with pytest.raises(ModelError) as exc:
        reg.fetch(NAME)
    message = assert_refused(reg, exc, part_kept=True)  # good bytes so far: kept for resuming
    assert f"connection closed before the end of the file: 2000000 of {len(PAYLOAD)} bytes" in message
    assert [r for _, r in server.log] == [None, "bytes=1000000-"]
    assert_retry_works(reg, server)
    assert server.log[-1] == (PATH, "bytes=2000000-")  # the retry resumed


def test_a_body_without_any_length_is_refused(tmp_path, server):
    server.no_length.add(PATH)  # the end is the connection closing: a cut looks like the end
    reg = registry(tmp_path, server)
    with pytest.raises(Untrusted) as exc:
        reg.fetch(NAME)
    assert "neither Content-Length nor chunked encoding" in assert_refused(reg, exc)
    assert_retry_works(reg, server)


def test_a_resume_answered_with_the_wrong_content_range_restarts_from_zero(tmp_path, server):
    server.wrong_range[PATH] = "resume"
    reg = registry(tmp_path, server)
    part = reg.cache_dir / (FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:3_000_000])
    assert reg.fetch(NAME).read_bytes() == PAYLOAD  # the bytes from 0 were not appended at 3 MB
    assert server.log == [(PATH, "bytes=3000000-"), (PATH, None)]
    assert reg.read_lock()[FILE]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()


def test_a_206_that_does_not_start_where_asked_is_refused(tmp_path, server):
    server.wrong_range[PATH] = "always"  # even a plain request gets a 206 from byte 1
    reg = registry(tmp_path, server)
    part = reg.cache_dir / (FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:3_000_000])
    with pytest.raises(Untrusted) as exc:
        reg.fetch(NAME)
    message = assert_refused(reg, exc)
    assert f"answered a plain request with bytes 1-{len(PAYLOAD) - 1}/{len(PAYLOAD)} when asked from byte 0" in message
    assert server.log == [(PATH, "bytes=3000000-"), (PATH, None)]  # the resume was restarted, once
    assert_retry_works(reg, server)


def test_a_whole_part_file_is_accepted_only_when_the_416_states_its_size(tmp_path, server):
    reg = registry(tmp_path, server)
    part = reg.cache_dir / (FILE + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)  # a crash after the last byte, before the rename
    assert reg.fetch(NAME).read_bytes() == PAYLOAD
    assert server.log == [(PATH, f"bytes={len(PAYLOAD)}-")]  # 416 "bytes */N": nothing re-sent
    (reg.cache_dir / FILE).unlink()
    part.write_bytes(PAYLOAD + b"extra")  # longer than the server's file: not whole, start again
    assert reg.fetch(NAME).read_bytes() == PAYLOAD
    assert server.log[1:] == [(PATH, f"bytes={len(PAYLOAD) + 5}-"), (PATH, None)]


def test_an_endless_body_stops_at_the_catalogue_cap(tmp_path, server):
    server.endless[PATH] = ONNX_HEAD  # plausible start, chunked, never ends
    reg = registry(tmp_path, server)
    with pytest.raises(Untrusted) as exc:
        reg.fetch(NAME)
    message = assert_refused(reg, exc)  # the partial is discarded
    assert f"sent more than {17 * 2 * MIB / 1e6:.1f} MB, the most {FILE} can be" in message
    assert_retry_works(reg, server)


def test_an_announced_size_over_the_range_is_refused_before_the_body(tmp_path, server, monkeypatch):
    small = tuple(replace(m, max_bytes=9 * MB) if m.name == NAME else m for m in catalog.MODELS)
    monkeypatch.setattr(catalog, "MODELS", small)
    reg = registry(tmp_path, server)
    with pytest.raises(Untrusted) as exc:
        reg.fetch(NAME)
    assert f"announces {len(PAYLOAD) / 1e6:.1f} MB" in assert_refused(reg, exc)
    monkeypatch.undo()
    assert_retry_works(reg, server)


# ---- redirects -------------------------------------------------------------------------------

def test_the_redirect_policy_refuses_leaving_https():
    check_redirect("https://mirror/a.onnx", "https://cdn/a.onnx")
    check_redirect("http://mirror/a.onnx", "http://cdn/a.onnx")  # an http mirror was the user's choice
    check_redirect("http://mirror/a.onnx", "https://cdn/a.onnx")
    for target in ("http://cdn/a.onnx", "ftp://cdn/a.onnx", "HTTP://cdn/a.onnx"):
        with pytest.raises(Untrusted, match="an https download is only followed to https"):
            check_redirect("https://mirror/a.onnx", target)


def test_an_http_to_http_redirect_is_followed(tmp_path, server):
    server.redirects[PATH] = server.url + "/cdn/" + FILE
    server.files["/cdn/" + FILE] = PAYLOAD
    reg = registry(tmp_path, server)
    assert reg.fetch(NAME).read_bytes() == PAYLOAD
    assert [p for p, _ in server.log] == [PATH, "/cdn/" + FILE]


def test_a_redirect_loop_is_one_line_after_a_few_hops(tmp_path, server):
    server.redirects[PATH] = server.url + PATH
    reg = registry(tmp_path, server)
    with pytest.raises(ModelError) as exc:
        reg.fetch(NAME)
    assert "HTTP 302" in assert_refused(reg, exc, part_kept=False)
    assert len(server.log) <= 7
    assert_retry_works(reg, server)


@pytest.fixture
def tls_files(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                           "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {made.stderr.decode().strip()[-200:]}")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default verify paths read it
    return cert, key


def test_an_https_to_http_redirect_is_refused_end_to_end(tmp_path, server, tls_files):
    tls = FileServer(tls=tls_files)
    try:
        tls.redirects[PATH] = server.url + PATH  # the http server holds a good copy: never asked
        reg = Registry(RegistryConfig(home=tmp_path / "home", mirror=tls.url, download=FAST))
        with pytest.raises(Untrusted) as exc:
            reg.fetch(NAME)
        message = assert_refused(reg, exc)
        assert f"refused the redirect from {tls.url}{PATH} to {server.url}{PATH}" in message
        assert server.log == [] and tls.log == [(PATH, None)]
        tls.redirects.clear()
        tls.files[PATH] = PAYLOAD  # the same https mirror, now serving the file itself
        assert reg.fetch(NAME).read_bytes() == PAYLOAD
    finally:
        tls.close()


# ---- concurrent fetchers, files on disk -------------------------------------------------------

def test_two_threads_fetching_one_file_download_it_once(tmp_path, server):
    server.slow[PATH] = 0.05  # ~0.5 s of body: the second fetcher arrives while the first runs
    results: dict[str, Path | BaseException] = {}

    def fetch(who: str) -> None:
        try:
            results[who] = registry(tmp_path, server).fetch(NAME)  # a Registry each, like two processes
        except BaseException as exc:  # noqa: BLE001 - reported by the asserts below
            results[who] = exc

    first = threading.Thread(target=fetch, args=("first",))
    first.start()
    assert server.sending.wait(10)
    second = threading.Thread(target=fetch, args=("second",))
    second.start()
    first.join(20)
    second.join(20)
    reg = registry(tmp_path, server)
    assert results == {"first": reg.cache_dir / FILE, "second": reg.cache_dir / FILE}
    assert server.log == [(PATH, None)]  # one download, never two appending to one .part
    assert (reg.cache_dir / FILE).read_bytes() == PAYLOAD
    assert reg.state(find_model(NAME)).status is Status.VERIFIED
    assert not (reg.cache_dir / (FILE + ".part")).exists()


CHILD = """
import sys
from pathlib import Path
from streamswap.models.download import DownloadSettings
from streamswap.models.registry import Registry, RegistryConfig
reg = Registry(RegistryConfig(home=Path(sys.argv[1]), mirror=sys.argv[2], download=DownloadSettings(2, 0.01, 5)))
print(reg.fetch(sys.argv[3]))
"""


def test_two_processes_fetching_one_file_download_it_once(tmp_path, server):
    server.slow[PATH] = 0.05
    args = [sys.executable, "-c", CHILD, str(tmp_path / "home"), server.url, NAME]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.sending.wait(20)
        second = subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)
        out, err = first.communicate(timeout=30)
    finally:
        first.kill()
    reg = registry(tmp_path, server)
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    assert out.strip() == second.stdout.strip() == str(reg.cache_dir / FILE)
    assert server.log == [(PATH, None)]
    assert reg.state(find_model(NAME)).status is Status.VERIFIED


def test_a_planted_symlink_at_the_part_name_is_not_written_through(tmp_path, server):
    reg = registry(tmp_path, server)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    reg.cache_dir.mkdir(parents=True)
    (reg.cache_dir / (FILE + ".part")).symlink_to(victim)
    assert reg.fetch(NAME).read_bytes() == PAYLOAD
    assert victim.read_bytes() == b"precious"
    assert not (reg.cache_dir / FILE).is_symlink()


def test_a_planted_symlink_at_the_lock_name_is_one_line_and_nothing_pinned(tmp_path, server):
    reg = registry(tmp_path, server)
    reg.cache_dir.mkdir(parents=True)
    lock = reg.cache_dir / (FILE + ".lock")
    lock.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ModelError) as exc:
        reg.fetch(NAME)
    assert "is a symbolic link" in assert_refused(reg, exc) and not (tmp_path / "elsewhere").exists()
    lock.unlink()
    assert_retry_works(reg, server)


def test_kept_files_get_ordinary_permissions(tmp_path, server):
    reg = registry(tmp_path, server)
    path = reg.fetch(NAME)
    ordinary = 0o666 & ~umask()
    assert path.stat().st_mode & 0o777 == ordinary
    assert reg.lock_path.stat().st_mode & 0o777 == ordinary  # not mkstemp's 0o600
    assert json.loads(reg.lock_path.read_text())[FILE]["size"] == len(PAYLOAD)


# ---- the checks themselves ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "head", "ok"), [
    ("a.pth", b"PK\x03\x04" + bytes(12), True),
    ("a.pth", b"\x80\x02\x8a\x0a" + bytes(12), True),  # torch's legacy (pre-zip) format
    ("a.pth", b"<html><body>404</body></html>", False),
    ("a.zip", b"PK\x03\x04" + bytes(12), True),
    ("a.zip", b"\x80\x02\x8a\x0a" + bytes(12), False),
    ("a.onnx", ONNX_HEAD, True),
    ("a.onnx", b"\x08\x00" + bytes(14), False),  # ir_version 0 is no ONNX file
    ("a.onnx", b'{"error": "not found"}', False),
    ("a.onnx", b"\n\n<!DOCTYPE html>", False),
    ("a.safetensors", (20).to_bytes(8, "little") + b'{"a":{"dtype"', True),
    ("a.safetensors", b"PK\x03\x04" + bytes(12), False),
    ("a.onnx", b"\x08\x07", False),  # too short to be anything
    ("a.bin", b"<html>", True),  # no format known for the suffix: not checked
])
def test_format_magic(name, head, ok):
    problem = format_problem(head, Expect.for_file(name))
    assert (problem is None) is ok, problem


def test_content_range_checks():
    assert range_problem(parse_content_range("bytes 100-199/200"), 100, 100) is None
    assert "asked from byte 100" in range_problem(parse_content_range("bytes 0-199/200"), 100, 200)
    assert "inconsistent" in range_problem(parse_content_range("bytes 100-149/200"), 100, 50)
    assert "inconsistent" in range_problem(parse_content_range("bytes 100-199/*"), 100, 100)
    assert "Content-Length 7" in range_problem(parse_content_range("bytes 100-199/200"), 100, 7)
    assert "without a valid Content-Range" in range_problem(parse_content_range("chunks 1-2/3"), 1, None)


def test_every_catalogue_entry_has_a_size_range_around_its_stated_size():
    for item in (*catalog.MODELS, *catalog.PACKS):
        low, high = item.size_range
        assert 0 < low < item.approx_mb * MB < item.approx_mb * MIB < high, item.name


# ---- the cluster driver fetches before it starts actors ---------------------------------------

def test_the_cluster_driver_fetches_the_engine_models_before_connecting(monkeypatch):
    from streamswap.api import SwapOptions
    from streamswap.cluster import run
    from streamswap.cluster.run import ClusterReport, ClusterSettings

    calls: list[str] = []
    monkeypatch.setattr(Registry, "require", lambda self, name: calls.append(name))

    def connect(settings):
        calls.append("connect")
        raise RuntimeError("stop here: no Ray in this test")

    monkeypatch.setattr(run, "_connect", connect)
    options = SwapOptions(sources=("face.jpg",), engine="ghost", blocks=3, sr=True)
    with pytest.raises(RuntimeError, match="stop here"):
        run._schedule(options, "ghost", ClusterSettings(), [], deque(), ClusterReport("ghost"), None, None)
    assert calls == ["scrfd_10g_bnkps", "2d106det", "backbone", "G_unet_3blocks", "10_net_G", "connect"]
    calls.clear()
    with pytest.raises(RuntimeError, match="stop here"):
        run._schedule(replace(options, engine="lite"), "lite", ClusterSettings(), [], deque(),
                      ClusterReport("lite"), None, None)
    assert calls == ["connect"]  # the lite engine's models come with its packages


@pytest.mark.parametrize(("blocks", "sr", "own"), [(1, False, False), (2, True, False), (3, True, True)])
def test_the_driver_list_is_what_the_ghost_engine_requires(monkeypatch, blocks, sr, own):
    import torch

    from streamswap.engines import ghost
    from streamswap.models import weights

    asked: list[str] = []

    class FakeRegistry:
        def require(self, name: str) -> str:
            asked.append(name)
            return name

    stub = type("Stub", (), {"load": staticmethod(lambda *a, **k: None)})
    monkeypatch.setattr(ghost, "SCRFDDetector", stub)
    monkeypatch.setattr(ghost, "Landmark106", stub)
    monkeypatch.setattr(weights, "build_model", lambda name, path: None)
    monkeypatch.setattr(ghost, "assemble_ghost_parts", lambda *a, **k: None)
    ghost.load_ghost_parts(FakeRegistry(), torch.device("cpu"), blocks=blocks, sr=sr,  # type: ignore[arg-type]
                           generator="mine.pth" if own else None)
    assert sorted(asked) == sorted(catalog.ghost_model_names(blocks, sr, own))
