"""`streamswap doctor` in a subprocess: what it reports on this CPU machine, and the
onnxruntime / onnxruntime-gpu clash on fake package metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _doctor(cli, tmp_path: Path, *args: str, extra_path: Path | None = None):
    env = {"STREAMSWAP_HOME": str(tmp_path / "home")}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), os.environ.get("PYTHONPATH", "")])
    return cli("doctor", *args, env=env)


def _by_area(report: dict) -> dict[str, dict]:
    return {c["area"]: c for c in report["checks"]}


def test_doctor_reports_this_cpu_machine(cli, tmp_path):
    result = _doctor(cli, tmp_path, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    checks = _by_area(report)
    assert report["ok"] is True
    assert checks["torch"]["ok"] and checks["cuda"]["ok"] is None and "CPU" in checks["cuda"]["detail"]
    assert "CPUExecutionProvider" in checks["onnxruntime"]["detail"]
    assert checks["PyNvVideoCodec"]["ok"] is None or checks.get("NVDEC", {}).get("ok") is None
    assert checks["libx264"]["ok"] is True
    assert checks["ghost models"]["ok"] is None and "streamswap models fetch" in checks["ghost models"]["fix"]
    assert checks["engine"]["detail"].startswith("lite")


def test_doctor_table_is_one_screen_with_fixes(cli, tmp_path):
    result = _doctor(cli, tmp_path)
    assert result.returncode == 0
    for word in ("torch", "onnxruntime", "PyNvVideoCodec", "libx264", "ghost models", "streamswap models fetch"):
        assert word in result.stdout, word


def test_doctor_fails_when_the_chosen_configuration_is_broken(cli, tmp_path):
    cuda = _doctor(cli, tmp_path, "--device", "cuda", "--json")
    assert cuda.returncode == 1 and _by_area(json.loads(cuda.stdout))["cuda"]["fatal"] is True
    ghost = _doctor(cli, tmp_path, "--engine", "ghost", "--json")
    assert ghost.returncode == 1 and _by_area(json.loads(ghost.stdout))["ghost models"]["fatal"] is True


def _fake_dist(root: Path, name: str, version: str) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_doctor_reports_the_onnxruntime_clash(cli, tmp_path):
    fake = tmp_path / "site"
    _fake_dist(fake, "onnxruntime-gpu", "1.31.1")  # beside the real CPU onnxruntime
    result = _doctor(cli, tmp_path, "--json", extra_path=fake)
    assert result.returncode == 1
    clash = _by_area(json.loads(result.stdout))["onnxruntime packages"]
    assert clash["fatal"] and "both installed" in clash["detail"] and "pip uninstall -y onnxruntime" in clash["fix"]
    table = _doctor(cli, tmp_path, extra_path=fake)
    assert table.returncode == 1 and "BROKEN" in table.stdout and "both installed" in table.stdout
