"""The model registry: download, resume, verify, pin on first use, offline, errors; and the
`streamswap models` CLI. Files come from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from streamswap.errors import ModelError
from streamswap.models import catalog
from streamswap.models.catalog import find_model
from streamswap.models.download import DownloadSettings
from streamswap.models.registry import Registry, RegistryConfig, Status

from http_fixture import FileServer

FAST = DownloadSettings(attempts=3, backoff_s=0.01, timeout_s=5)
# ~10 MB with an ONNX ModelProto start (ir_version 7): several chunks, so a cut lands mid-file, and
# within scrfd_10g_bnkps's catalogue size range, so the trust checks accept it
PAYLOAD = b"\x08\x07\x12\x07pytorch" + bytes(range(256)) * 40_000


@pytest.fixture
def server():
    srv = FileServer()
    srv.files["/antelope/scrfd_10g_bnkps.onnx"] = PAYLOAD
    yield srv
    srv.close()


def registry(tmp_path: Path, server: FileServer, **kw) -> Registry:
    return Registry(RegistryConfig(home=tmp_path / "home", mirror=server.url, download=FAST, **kw))


def test_fetch_downloads_verifies_and_pins_on_first_use(tmp_path, server):
    reg = registry(tmp_path, server)
    path = reg.fetch("scrfd_10g_bnkps")
    assert path == tmp_path / "home" / "models" / "scrfd_10g_bnkps.onnx"
    assert path.read_bytes() == PAYLOAD
    lock = json.loads(reg.lock_path.read_text())
    assert lock["scrfd_10g_bnkps.onnx"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert reg.state(find_model("scrfd_10g_bnkps")).status is Status.VERIFIED
    assert not list(path.parent.glob("*.part"))


def test_fetch_resumes_after_the_server_cuts_the_connection(tmp_path, server):
    cut = 3_000_000
    server.cut_once["/antelope/scrfd_10g_bnkps.onnx"] = cut
    path = registry(tmp_path, server).fetch("scrfd_10g_bnkps")
    assert path.read_bytes() == PAYLOAD
    ranges = [r for p, r in server.log if p == "/antelope/scrfd_10g_bnkps.onnx"]
    assert ranges[0] is None and ranges[1] == f"bytes={cut}-", ranges


def test_fetch_resumes_a_part_file_left_by_an_earlier_run(tmp_path, server):
    reg = registry(tmp_path, server)
    part = reg.cache_dir / "scrfd_10g_bnkps.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1234567])
    assert reg.fetch("scrfd_10g_bnkps").read_bytes() == PAYLOAD
    assert server.log == [("/antelope/scrfd_10g_bnkps.onnx", "bytes=1234567-")]


def test_server_without_range_support_restarts_cleanly(tmp_path, server):
    server.honour_range = False
    reg = registry(tmp_path, server)
    (reg.cache_dir).mkdir(parents=True)
    (reg.cache_dir / "scrfd_10g_bnkps.onnx.part").write_bytes(b"stale bytes")
    assert reg.fetch("scrfd_10g_bnkps").read_bytes() == PAYLOAD


def test_hash_mismatch_is_rejected_and_the_bad_file_not_kept(tmp_path, server):
    reg = registry(tmp_path, server)
    reg.fetch("scrfd_10g_bnkps")  # pins the hash
    (reg.cache_dir / "scrfd_10g_bnkps.onnx").unlink()
    server.files["/antelope/scrfd_10g_bnkps.onnx"] = PAYLOAD[:-8] + b"tampered"
    with pytest.raises(ModelError, match="SHA-256 mismatch for scrfd_10g_bnkps.onnx"):
        reg.fetch("scrfd_10g_bnkps")
    kept = [p for p in reg.cache_dir.iterdir() if p.suffix != ".lock"]  # lock files stay: unlinking one races
    assert not kept, kept


def test_offline_mode_refuses_and_names_file_and_url(tmp_path, server):
    reg = registry(tmp_path, server, offline=True)
    with pytest.raises(ModelError, match=r"offline.*scrfd_10g_bnkps\.onnx.*antelope/scrfd_10g_bnkps\.onnx"):
        reg.fetch("scrfd_10g_bnkps")
    assert server.log == []


def test_unreachable_url_is_one_clear_error(tmp_path):
    reg = Registry(RegistryConfig(home=tmp_path / "home", mirror="http://127.0.0.1:9", download=FAST))
    with pytest.raises(ModelError, match="cannot download http://127.0.0.1:9/antelope/scrfd_10g_bnkps.onnx"):
        reg.fetch("scrfd_10g_bnkps")
    assert not (reg.cache_dir / "scrfd_10g_bnkps.onnx").exists()


def test_unwritable_cache_is_one_clear_error(tmp_path, server):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    reg = Registry(RegistryConfig(home=blocker / "home", mirror=server.url, download=FAST))
    with pytest.raises(ModelError, match="not writable"):
        reg.fetch("scrfd_10g_bnkps")


def test_full_disk_is_one_clear_error_and_leaves_no_final_file(tmp_path, server):
    home = tmp_path / "small"
    home.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(home)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        reg = Registry(RegistryConfig(home=home, mirror=server.url, download=FAST))
        with pytest.raises(ModelError, match="disk full"):
            reg.fetch("scrfd_10g_bnkps")
        assert not (reg.cache_dir / "scrfd_10g_bnkps.onnx").exists()
    finally:
        subprocess.run(["umount", str(home)], check=True)


def test_pack_member_fetch_extracts_the_archive_flat_and_pins_members(tmp_path, server, monkeypatch):
    # the real buffalo_l.zip is ~288 MB: a test-sized pack needs a test-sized catalogue range
    monkeypatch.setattr(catalog, "PACKS", tuple(replace(p, min_bytes=0) for p in catalog.PACKS))
    landmarks = b"\x08\x07\x12\x07landmarks-network"  # ONNX-looking members (checked before pinning)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # insightface packs nest a folder; one entry tries to escape
        zf.writestr("buffalo_l/2d106det.onnx", landmarks)
        zf.writestr("buffalo_l/det_10g.onnx", b"\x08\x07\x12\x08detector-network")
        zf.writestr("../../evil.onnx", b"x")
    server.files["/v0.7/buffalo_l.zip"] = buf.getvalue()
    reg = registry(tmp_path, server)
    path = reg.fetch("2d106det")
    assert path == reg.cache_dir / "buffalo_l" / "2d106det.onnx" and path.read_bytes() == landmarks
    assert not (tmp_path / "evil.onnx").exists() and not (reg.cache_dir / "buffalo_l.zip").exists()
    assert reg.state(find_model("det_10g")).status is Status.VERIFIED  # pinned at extraction
    path.write_bytes(b"changed")
    assert reg.state(find_model("2d106det")).status is Status.MISMATCH


def test_models_dir_is_searched_and_pinned_on_first_use(tmp_path):
    mdir = tmp_path / "offline-models"
    mdir.mkdir()
    (mdir / "scrfd_10g_bnkps.onnx").write_bytes(b"onnx bytes")
    reg = Registry(RegistryConfig(home=tmp_path / "home", models_dir=mdir, offline=True))
    assert reg.path("scrfd_10g_bnkps") == mdir / "scrfd_10g_bnkps.onnx"
    assert reg.state(find_model("scrfd_10g_bnkps")).status is Status.PINNED_NOW
    assert reg.state(find_model("scrfd_10g_bnkps")).status is Status.VERIFIED


# ---- the real CLI in a subprocess ----------------------------------------------------------

def env_for(tmp_path: Path, server: FileServer | None = None, **extra: str) -> dict[str, str]:
    env = {"STREAMSWAP_HOME": str(tmp_path / "home"), **extra}
    if server is not None:
        env["STREAMSWAP_MIRROR"] = server.url
    return env


def test_cli_fetch_list_verify_path(tmp_path, server, cli):
    env = env_for(tmp_path, server)
    fetched = cli("models", "fetch", "scrfd_10g_bnkps", "--quiet", env=env)
    assert fetched.returncode == 0, fetched.stderr
    listed = json.loads(cli("models", "list", "--json", env=env).stdout)
    row = next(r for r in listed if r["name"] == "scrfd_10g_bnkps")
    assert row["status"] == "verified" and row["hash"].startswith("pinned on first use")
    assert row["size"] == len(PAYLOAD) and "non-commercial" in row["licence"]
    assert next(r for r in listed if r["name"] == "glintr100")["status"] == "missing"
    table = cli("models", "list", env=env).stdout
    assert "scrfd_10g_bnkps.onnx" in table and "non-commercial" in table
    verified = cli("models", "verify", env=env)
    assert verified.returncode == 0 and "1 model file(s) checked, 0 mismatch(es)" in verified.stdout
    where = cli("models", "path", "scrfd_10g_bnkps", env=env)
    assert where.returncode == 0 and Path(where.stdout.strip()).read_bytes() == PAYLOAD


def test_cli_verify_reports_a_tampered_file(tmp_path, server, cli):
    env = env_for(tmp_path, server)
    assert cli("models", "fetch", "scrfd_10g_bnkps", "--quiet", env=env).returncode == 0
    (tmp_path / "home" / "models" / "scrfd_10g_bnkps.onnx").write_bytes(b"tampered")
    verified = cli("models", "verify", env=env)
    assert verified.returncode == 1 and "MISMATCH" in verified.stdout


def test_cli_errors_are_one_line_without_traceback(tmp_path, server, cli):
    cases = [
        (("models", "path", "backbone"), env_for(tmp_path), "streamswap models fetch backbone"),
        (("models", "fetch", "backbone"), env_for(tmp_path, server, STREAMSWAP_OFFLINE="1"), "offline"),
        (("models", "fetch", "no-such-model"), env_for(tmp_path, server), "unknown model 'no-such-model'"),
        (("models", "fetch", "backbone"), {"STREAMSWAP_HOME": str(tmp_path / "h2"),
                                           "STREAMSWAP_MIRROR": "http://127.0.0.1:9",
                                           "STREAMSWAP_DOWNLOAD_ATTEMPTS": "2"}, "cannot download"),
    ]
    for args, env, expected in cases:
        result = cli(*args, env=env)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_cli_version_and_help(cli):
    from streamswap import __version__

    assert cli("--version").stdout.strip() == f"streamswap {__version__}"
    helped = cli("--help")
    assert helped.returncode == 0 and "models" in helped.stdout and "doctor" in helped.stdout


def test_cli_models_info_prints_parameter_counts(cli):
    # the CLI's path (describe_model, then JSON out) once: every network's count and shapes are
    # pinned in-process by test_models_golden (test_parameter_counts_match_the_published_networks)
    result = cli("models", "info", "G_unet_2blocks", "--json")
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    assert abs(described["parameters_millions"] - 184) < 1.5, described["parameters_millions"]
    assert described["outputs"][0] == ["B", 3, 256, 256]
    refused = cli("models", "info", "scrfd_10g_bnkps")
    assert refused.returncode != 0 and "no network description" in refused.stderr
