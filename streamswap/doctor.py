"""What this install can do and what is broken, with the fix for each (`streamswap doctor`).

Every probe is real (import, create, query) and guarded: a probe that fails is a finding,
never a crash. Which findings are fatal depends on the configuration asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Literal, TypeGuard, get_args

from streamswap.checks import Check
from streamswap.models.registry import Registry

Device = Literal["auto", "cpu", "cuda"]
ORT_CLASH_FIX = (
    "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (GPU) or pip install onnxruntime (CPU)"
)


@dataclass(frozen=True)
class DoctorConfig:
    """The configuration to check for: which device and engine (a name in
    `streamswap.engines.registry.engines()`, or auto) the user means to run."""

    device: Device = "auto"
    engine: str = "auto"


def is_device(name: str) -> TypeGuard[Device]:
    """Whether `name` is one of the `Device` names (auto, cpu, cuda)."""
    return name in get_args(Device)


def _dists(prefix: str) -> dict[str, str]:
    """Installed distributions whose normalised name starts with `prefix`: name -> version."""
    found: dict[str, str] = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(prefix):
            found[name] = dist.version
    return found


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check(
        "python",
        ok,
        f"{platform.python_version()} ({sys.executable})",
        "" if ok else "use Python 3.11 or newer",
        needed=True,
    )


def check_torch(cfg: DoctorConfig) -> list[Check]:
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding
        return [Check("torch", False, f"does not import: {exc}", "make install (or pip install torch)", True)]
    checks = [Check("torch", True, f"{torch.__version__}", needed=True)]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        checks.append(
            Check(
                "cuda",
                True,
                f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): {name}",
                needed=cfg.device == "cuda",
            )
        )
    else:
        why = (
            "CPU-only torch build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no GPU visible"
        )
        seen = unused_gpu(nvidia_smi_gpus(), torch.version.cuda)
        checks.append(
            Check(
                "cuda",
                False if seen and cfg.device != "cpu" else None,
                f"not available ({why}); running on CPU" + (f"; but {seen[0]}" if seen else ""),
                seen[1] if seen else "on a GPU machine: pip install torch (a CUDA build), then make install",
                needed=cfg.device == "cuda",
            )
        )
    return checks


# the oldest Linux driver each CUDA major runs on (NVIDIA's CUDA toolkit release notes, table 3)
MIN_DRIVER = {12: 525, 13: 580}


def nvidia_smi_gpus() -> list[tuple[str, str]]:
    """(name, driver version) of each GPU nvidia-smi lists; [] without nvidia-smi or a driver."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = [line.rsplit(",", 1) for line in out.stdout.splitlines() if "," in line]
    return [(name.strip(), driver.strip()) for name, driver in rows]


def unused_gpu(gpus: list[tuple[str, str]], torch_cuda: str | None) -> tuple[str, str] | None:
    """(what is wrong, the fix) when nvidia-smi sees a GPU that this torch cannot use; None otherwise."""
    if not gpus:
        return None
    name, driver = gpus[0]
    seen = f"nvidia-smi sees {name} (driver {driver})"
    if torch_cuda is None:
        return f"{seen}: this torch is a CPU build", "pip install 'torch==2.13.*' (a CUDA 13 build), then make install"
    major = int(torch_cuda.split(".")[0])
    try:
        driver_major = int(driver.split(".")[0])
    except ValueError:
        driver_major = 0
    need = MIN_DRIVER.get(major)
    if need is not None and driver_major < need:
        return (
            f"{seen}, too old for torch's CUDA {torch_cuda}",
            f"CUDA {major} needs NVIDIA driver {need} or newer: update the driver",
        )
    return f"{seen}, which torch's CUDA {torch_cuda} does not see", "check CUDA_VISIBLE_DEVICES and the driver"


def check_onnxruntime(cfg: DoctorConfig) -> list[Check]:
    dists = {n: v for n, v in _dists("onnxruntime").items() if n in ("onnxruntime", "onnxruntime-gpu")}
    checks: list[Check] = []
    if len(dists) > 1:
        listed = ", ".join(f"{n} {v}" for n, v in sorted(dists.items()))
        checks.append(
            Check(
                "onnxruntime packages",
                False,
                f"both installed ({listed}): they overwrite one module and break each other",
                ORT_CLASH_FIX,
                needed=True,
            )
        )
    try:
        ort = importlib.import_module("onnxruntime")
        providers = list(ort.get_available_providers())
        if not hasattr(ort, "InferenceSession"):
            raise ImportError("module has no InferenceSession (half-uninstalled)")
    except Exception as exc:  # noqa: BLE001
        checks.append(
            Check(
                "onnxruntime",
                False if dists else None,
                f"unusable: {exc}",
                ORT_CLASH_FIX
                if dists
                else "pip install onnxruntime (optional: the torch runtime runs the ONNX models too)",
                needed=bool(dists),
            )
        )
        return checks
    pkg = ", ".join(f"{n} {v}" for n, v in sorted(dists.items())) or "unknown package"
    checks.append(Check("onnxruntime", True, f"{pkg}; providers: {', '.join(providers)}"))
    if "CUDAExecutionProvider" in providers:
        checks.append(_ort_cuda_match(dists.get("onnxruntime-gpu")))
    elif cfg.device == "cuda":
        checks.append(
            Check(
                "onnxruntime CUDA",
                None,
                "no CUDA provider: ONNX models run through the torch runtime",
                "optional: " + ORT_CLASH_FIX.split(" (GPU)")[0],
            )
        )
    return checks


def _ort_cuda_match(ort_gpu_version: str | None) -> Check:
    """onnxruntime-gpu >= 1.27 is built for CUDA 13, older for CUDA 12: it must match torch's."""
    try:
        import torch

        torch_major = int((torch.version.cuda or "0").split(".")[0])
        ort_major = 13 if ort_gpu_version and tuple(int(x) for x in ort_gpu_version.split(".")[:2]) >= (1, 27) else 12
    except Exception:  # noqa: BLE001
        return Check("onnxruntime CUDA", None, "could not compare CUDA versions")
    if torch_major and torch_major != ort_major:
        return Check(
            "onnxruntime CUDA",
            False,
            f"onnxruntime-gpu {ort_gpu_version} needs CUDA {ort_major}, torch uses CUDA {torch_major}",
            f"install an onnxruntime-gpu built for CUDA {torch_major}",
        )
    return Check("onnxruntime CUDA", True, f"CUDA provider present (CUDA {ort_major})")


def check_onnx2torch() -> Check:
    spec = importlib.util.find_spec("onnx2torch")
    if spec is None:
        return Check(
            "onnx2torch",
            False,
            "not installed: the GPU path runs ONNX face models through it",
            "pip install --no-deps onnx2torch==1.5.15",
            needed=False,
        )
    return Check("onnx2torch", True, md.version("onnx2torch"))


def check_nvcodec(probe_cuda: bool) -> list[Check]:
    try:
        nvc = importlib.import_module("PyNvVideoCodec")
    except ModuleNotFoundError:
        return [
            Check(
                "PyNvVideoCodec",
                None,
                "not installed: decode/encode on the CPU with PyAV",
                "GPU machines: pip install 'streamswap[gpu]'",
            )
        ]
    except Exception as exc:  # noqa: BLE001 - it raises RuntimeError without an NVIDIA driver
        return [Check("PyNvVideoCodec", None, f"installed but unusable here ({exc}); PyAV is used")]
    checks = [Check("PyNvVideoCodec", True, getattr(nvc, "__version__", "installed"))]
    if not probe_cuda:
        return checks + [Check("NVDEC", None, "no CUDA device"), Check("NVENC", None, "no CUDA device")]
    for label, probe in (("NVDEC", _probe_nvdec), ("NVENC", _probe_nvenc)):
        try:
            checks.append(Check(label, True, probe(nvc)))
        except Exception as exc:  # noqa: BLE001
            checks.append(Check(label, None, f"not available ({exc}); CPU fallback (PyAV)"))
    return checks


def _probe_nvdec(nvc: ModuleType) -> str:
    """Decode a real packet: PyNvVideoCodec creates the hardware decoder only at the first
    sequence header, so constructing one proves nothing where the driver refuses NVDEC."""
    import tempfile
    from pathlib import Path

    import torch

    from streamswap.bench.media import make_video

    with tempfile.TemporaryDirectory(prefix="streamswap-doctor-") as tmp:
        clip = make_video(Path(tmp) / "probe.mp4", frames=4, size=(128, 96), distinct=2)
        demuxer = nvc.CreateDemuxer(filename=str(clip))
        decoder = nvc.CreateDecoder(
            gpuid=0, codec=demuxer.GetNvCodecId(), cudacontext=0, cudastream=0, usedevicememory=True
        )
        frames = [f for packet in demuxer for f in decoder.Decode(packet)]
        if not frames:
            raise RuntimeError("NVDEC returned no frame for a 4-frame H.264 clip")
        shape = tuple(torch.from_dlpack(frames[0]).shape)
    return f"decoded {len(frames)} H.264 frames on GPU 0 (surface {shape[1]}x{shape[0]})"


def _probe_nvenc(nvc: ModuleType) -> str:
    caps = nvc.GetEncoderCaps(codec="h264")
    if not caps:
        raise RuntimeError("no H.264 encoder on this GPU")
    return "H.264 encoder present"


def check_dali() -> Check:
    try:
        dali = importlib.import_module("nvidia.dali")
        return Check("DALI", True, getattr(dali, "__version__", "installed"))
    except ModuleNotFoundError:
        return Check(
            "DALI", None, "not installed (training loader falls back to torch)", "pip install 'streamswap[train]'"
        )
    except Exception as exc:  # noqa: BLE001
        return Check("DALI", False, f"installed but broken: {exc}", "pip install --force-reinstall nvidia-dali-cuda130")


def check_pyav() -> list[Check]:
    try:
        import av
    except Exception as exc:  # noqa: BLE001
        return [Check("PyAV", False, f"does not import: {exc}", "pip install av", True)]
    codecs = av.codecs_available
    has_x264 = "libx264" in codecs
    hw = [c for c in ("h264_nvenc", "hevc_nvenc", "h264_cuvid") if c in codecs]
    return [
        Check("PyAV", True, f"{av.__version__} (FFmpeg {av.ffmpeg_version_info})", needed=True),
        Check(
            "libx264",
            has_x264,
            "present" if has_x264 else "missing: cannot encode H.264 on the CPU",
            "" if has_x264 else "pip install --force-reinstall av (PyPI wheels bundle libx264)",
            True,
        ),
        Check("FFmpeg GPU codecs", bool(hw) or None, ", ".join(hw) or "none in this build"),
    ]


def check_engines(registry: Registry, cfg: DoctorConfig) -> list[Check]:
    """Every engine's own findings (`Engine.checks`); the one asked for is needed. With auto, at
    least one of the engines auto can choose must be usable."""
    from streamswap.engines.registry import engines

    checks: list[Check] = []
    usable = []
    for engine in engines().values():
        found = engine.checks(registry, needed=cfg.engine == engine.name)
        checks.extend(found)
        if engine.auto_rank is not None and all(c.ok for c in found):
            usable.append(engine)
    if cfg.engine == "auto":
        best = min(usable, key=lambda e: e.auto_rank or 0) if usable else None
        detail = (
            "none usable" if best is None else (best.name if best.auto_rank == 0 else f"{best.name} ({best.summary})")
        )
        fix = "" if best else "install an engine's packages or models (see the findings above)"
        checks.append(Check("engine", best is not None, detail, fix, True))
    return checks


def run_checks(cfg: DoctorConfig, registry: Registry) -> list[Check]:
    """Probe everything; mark as `needed` what `cfg` requires. Never raises."""
    checks = [check_python(), *check_torch(cfg)]
    cuda = any(c.area == "cuda" and c.ok for c in checks)
    probes: list[Callable[[], Check | list[Check]]] = [
        lambda: check_onnxruntime(cfg),
        check_onnx2torch,
        lambda: check_nvcodec(cuda),
        check_dali,
        check_pyav,
        lambda: check_engines(registry, cfg),
    ]
    for probe in probes:
        try:
            found = probe()
        except Exception as exc:  # noqa: BLE001 - the doctor itself must not crash
            found = Check(getattr(probe, "__name__", "probe"), False, f"probe crashed: {exc}")
        checks.extend(found if isinstance(found, list) else [found])
    if cfg.device == "auto":
        checks = [replace(c, needed=False) if c.area == "cuda" else c for c in checks]
    return checks
