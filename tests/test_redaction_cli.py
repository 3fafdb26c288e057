"""Credentials in URLs never reach a person or a file: a camera URL with a password and a token
goes through the real CLI's error line, its --debug logs, the RTSP sink's errors, and the --json
summaries of `live` and `transcode` (a stream served on 127.0.0.1), and SECRET appears nowhere
in what comes out; the server still gets the real URL."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest
from streamswap.bench.media import make_video
from http_fixture import FileServer

from conftest import start_cli
from streamswap.redact import install_log_redaction, redact_data, redact_url

SECRET = "S3cr3tXYZ"  # what must never be shown


def _closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_all(*commands: tuple[str, ...], timeout: float = 100) -> list[tuple[int, str, str]]:
    """Run several real CLI commands at once (each waits out its own reconnect back-off)."""
    procs = [start_cli(*args) for args in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def test_redact_url_takes_out_user_info_and_token_like_parameters():
    assert redact_url(f"cannot open rtsp://admin:{SECRET}@cam.local:554/live?token={SECRET}: refused") == \
        "cannot open rtsp://***@cam.local:554/live?token=***: refused"
    assert redact_url(f"rtsp://admin:p@ss{SECRET}@10.0.0.2/x") == "rtsp://***@10.0.0.2/x"  # '@' in the password
    s3 = (f"https://b.s3.amazonaws.com/f.mp4?X-Amz-Algorithm=AWS4&X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}"
          f"&X-Amz-Security-Token={SECRET}")
    assert SECRET not in redact_url(s3) and "X-Amz-Algorithm=AWS4" in redact_url(s3)
    for name in ("ACCESS_TOKEN", "apikey", "api_key", "Password", "passwd", "pwd", "secret", "sig", "auth",
                 "session_token", "client-secret", "key"):
        assert redact_url(f"http://h/p?a=1&{name}={SECRET}&b=2") == f"http://h/p?a=1&{name}=***&b=2", name
    for kept in ("see https://example.com/path and me@example.com", "/media/a@b/clip.mp4",
                 "http://h/p?monkey=1&pkey=2", "plain text = and @"):
        assert redact_url(kept) == kept
    assert redact_data({"input": f"rtsp://u:{SECRET}@h/", "n": 3, "notes": [f"?token={SECRET}"]}) == \
        {"input": "rtsp://***@h/", "n": 3, "notes": ["?token=***"]}


def test_log_records_are_redacted_whatever_logger_and_handler_they_go_to():
    before = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        install_log_redaction()
        install_log_redaction()  # idempotent
        logger.warning("lost %s; reconnecting", f"rtsp://admin:{SECRET}@127.0.0.1/cam?token={SECRET}")
        try:
            raise OSError(f"refused: http://u:{SECRET}@127.0.0.1/x")
        except OSError:
            logger.exception("failed")
    finally:
        logging.setLogRecordFactory(before)
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "lost rtsp://***@127.0.0.1/cam?token=***; reconnecting" in text
    assert "OSError: refused: http://***@127.0.0.1/x" in text and SECRET not in text


def test_a_camera_url_with_a_password_never_shows_it_in_the_error_line_or_debug_logs(shared_data, tmp_path):
    port = _closed_port()
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{port}/cam?token={SECRET}"
    mark = str(shared_data / "images" / "mark.jpg")
    plain, debug = _run_all(
        ("live", "-s", mark, "-i", url, "-o", str(tmp_path / "a.mp4"), "--engine", "lite", "--json"),
        ("live", "-s", mark, "-i", url, "-o", str(tmp_path / "b.mp4"), "--engine", "lite", "--json", "--debug"))
    for rc, stdout, stderr in (plain, debug):
        assert rc != 0
        assert SECRET not in stdout + stderr
    rc, _, stderr = plain
    (line,) = [ln for ln in stderr.splitlines() if ln.strip()]  # one line
    assert line == (f"error: cannot open rtsp://***@127.0.0.1:{port}/cam?token=*** after 6 attempt(s): "
                    "Connection refused")
    _, _, stderr = debug  # the reconnect back-off logs and the traceback's message
    assert f"reconnecting to rtsp://***@127.0.0.1:{port}/cam?token=***" in stderr
    assert "InputError: cannot open rtsp://***@" in stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_stream_outputs_and_json_summaries_never_show_credentials(shared_data, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=30, size=(160, 96), fps=25)
    stream = make_video(tmp_path / "clip.ts", frames=30, size=(160, 96), fps=25)  # MPEG-TS: what HTTP live is
    server = FileServer(files={f"/clip.ts?token={SECRET}": stream.read_bytes()})
    port = _closed_port()
    mark = str(shared_data / "images" / "mark.jpg")
    try:
        source = server.url.replace("http://", f"http://viewer:{SECRET}@") + f"/clip.ts?token={SECRET}"
        sink = f"rtsp://publisher:{SECRET}@127.0.0.1:{port}/out?token={SECRET}"
        results = _run_all(
            ("transcode", str(clip), sink, "--json", "--debug"),  # the RTSP sink: server unreachable
            ("live", "-s", mark, "-i", str(clip), "-o", sink, "--engine", "lite", "--json"),
            ("transcode", source, str(tmp_path / "t.mp4"), "--json", "--debug", "--max-frames", "10"),
            ("live", "-s", mark, "-i", source, "-o", str(tmp_path / "l.mp4"), "--engine", "lite", "--json", "--debug",
             "--max-frames", "10"))
    finally:
        server.close()
    for rc, stdout, stderr in results:
        assert SECRET not in stdout + stderr
    for rc, _, stderr in results[:2]:  # one line (the traceback's last with --debug)
        assert rc != 0 and f"cannot reach the RTSP server at 127.0.0.1:{port}" in stderr.strip().splitlines()[-1]
    (rc, t_out, t_err), (rc2, l_out, l_err) = results[2:]
    assert rc == 0, t_err[-2000:]
    assert rc2 == 0, l_err[-2000:]
    shown = f"http://***@127.0.0.1:{server.httpd.server_address[1]}/clip.ts?token=***"
    transcoded, lived = json.loads(t_out), json.loads(l_out)
    assert transcoded["input"] == shown and transcoded["frames_out"] == 10
    assert lived["input"] == shown and lived["frames"] + lived["dropped"] == lived["frames_in"] == 10
    for name in ("t.mp4", "l.mp4"):  # nor in the files written
        assert SECRET.encode() not in (tmp_path / name).read_bytes()
    # and the job itself used the real URL: the server was asked for the real token
    assert any(path == f"/clip.ts?token={SECRET}" for path, _ in server.log)


@pytest.mark.parametrize("text", ["rtsp://cam/stream", "no url at all", ""])
def test_text_without_credentials_is_left_alone(text):
    assert redact_url(text) == text
