"""`streamswap doctor` in a subprocess: what it reports on this CPU machine, and the
onnxruntime / onnxruntime-gpu clash on fake package metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


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


def test_the_nvdec_check_decodes_a_real_packet():
    """PyNvVideoCodec makes the hardware decoder at the first sequence header: the check must
    decode, not just construct (run here against the FFmpeg-backed stand-in of PyNvVideoCodec)."""
    from nvc_fakes import fake_nvc

    from streamswap.doctor import _probe_nvdec

    assert _probe_nvdec(fake_nvc()) == "decoded 4 H.264 frames on GPU 0 (surface 128x144)"

    class Refusing:
        def Decode(self, packet):
            return []

    silent = fake_nvc()
    silent.CreateDecoder = lambda **kw: Refusing()
    with pytest.raises(RuntimeError, match="NVDEC returned no frame"):
        _probe_nvdec(silent)


def test_doctor_says_when_nvidia_smi_sees_a_gpu_that_torch_cannot_use(cli, tmp_path):
    """A real `nvidia-smi` on PATH (a script answering as a driver would) beside this CPU torch."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 550.54.15'\n")
    smi.chmod(0o755)
    env = {"STREAMSWAP_HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = cli("doctor", "--json", env=env)
    cuda = _by_area(json.loads(result.stdout))["cuda"]
    assert cuda["ok"] is False and "CPU build" in cuda["detail"], cuda
    assert "nvidia-smi sees NVIDIA H100 80GB HBM3 (driver 550.54.15)" in cuda["detail"]
    assert "torch==2.13.*" in cuda["fix"]
    assert result.returncode == 0  # --device auto: a finding, not a failure (CPU still works)


def test_the_driver_cuda_13_needs_is_named():
    from streamswap.doctor import unused_gpu

    old = unused_gpu([("NVIDIA H200", "550.54.15")], "13.0")
    assert old == ("nvidia-smi sees NVIDIA H200 (driver 550.54.15), too old for torch's CUDA 13.0",
                   "CUDA 13 needs NVIDIA driver 580 or newer: update the driver")
    assert "does not see" in unused_gpu([("NVIDIA H200", "580.95.05")], "13.0")[0]
    assert unused_gpu([], "13.0") is None
