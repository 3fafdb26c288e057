"""A third engine is one file: `tests/plugin_engine/streamswap_pixelate.py`, registered from the
tests through the `streamswap.engines` entry point of the dist-info beside it (put on the path,
as pip would install it). `swap`, `live`, `batch`, `bench` and `doctor` run it unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from streamswap.bench.media import scaled_loop

PLUGIN = Path(__file__).parent / "plugin_engine"


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The CLI's environment with the plugin installed (on PYTHONPATH, its metadata beside it)."""
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(PLUGIN), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def clip(shared_data, tmp_path_factory) -> Path:
    """1.2 s of nggyup.mp4 at 480x270, 10 fps (faces dlib finds; cheap to run five times)."""
    return scaled_loop(shared_data / "videos" / "nggyup.mp4", tmp_path_factory.mktemp("plugin") / "clip.mp4",
                       seconds=1.2, size=(480, 270), fps=10, gop=5)


@pytest.fixture(scope="module")
def mark(shared_data) -> str:
    return str(shared_data / "images" / "mark.jpg")


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_the_registry_finds_the_plugin_beside_the_built_in_engines(monkeypatch):
    from streamswap.engines.registry import choose_engine, engines

    assert "pixelate" not in engines()
    monkeypatch.syspath_prepend(str(PLUGIN))
    assert list(engines()) == ["ghost", "lite", "pixelate"]
    engine, notice = choose_engine("pixelate")
    assert engine.name == "pixelate" and notice is None
    assert choose_engine("auto")[0].name in ("ghost", "lite")  # auto_rank None: never chosen by auto


def test_swap_runs_the_plugin_engine_and_changes_only_the_faces(cli, env, clip, mark, tmp_path):
    out = tmp_path / "out.mp4"
    result = cli("swap", "-s", mark, "-t", str(clip), "-o", str(out), "--engine", "pixelate", "--json", "--quiet",
                 env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["engine"] == "pixelate" and report["frames"] == 12 and report["frames_swapped"] >= 10
    import torch

    from streamswap.faces.lite import DlibDetector, LiteSettings

    detector = DlibDetector(LiteSettings(max_side=640))
    before, after = _frames(clip), _frames(out)
    judged, pixelated = 0, 0
    for a, b in zip(before[::3], after[::3]):
        faces = detector(torch.from_numpy(a).permute(2, 0, 1)[None].contiguous())
        if len(faces) == 0:
            continue
        x1, y1, x2, y2 = faces.boxes[0].round().int().tolist()
        diff = np.abs(a.astype(int) - b.astype(int))
        inside = diff[max(y1, 0):y2, max(x1, 0):x2]
        outside = diff.sum() - inside.sum(), diff.size - inside.size
        # the face is pixelated: far more change inside its box than encoder noise outside it
        # measured: 11-12 inside against 1.2-1.4 outside on the frames of a settled track
        pixelated += bool(inside.mean() > 4 * outside[0] / outside[1])
        judged += 1
    assert judged >= 3 and pixelated >= judged - 1, (pixelated, judged)


def test_live_batch_and_bench_run_the_plugin_engine(cli, env, clip, mark, tmp_path):
    live = cli("live", "-s", mark, "-i", str(clip), "-o", str(tmp_path / "live.mp4"), "--engine", "pixelate", "--max-frames", "8",
               "--json", "--quiet", env=env)
    assert live.returncode == 0, live.stderr[-2000:]
    assert json.loads(live.stdout)["engine"] == "pixelate"

    (tmp_path / "in").mkdir(), (tmp_path / "out").mkdir()
    (tmp_path / "in" / "a.mp4").write_bytes(clip.read_bytes())
    batch = cli("batch", "--source", mark, "--inputs", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                "--engine", "pixelate", "--workers", "1", "--preset", "ultrafast", "--json", "--quiet", env=env)
    assert batch.returncode == 0, batch.stderr[-2000:]
    report = json.loads(batch.stdout)
    assert report["engine"] == "pixelate" and [o["status"] for o in report["outputs"]] == ["done"]

    stages = cli("bench", "stages", "--input", str(clip), "--source", mark, "--engine", "pixelate", "--frames", "4",
                 "--batches", "2", "--json", env=env)
    assert stages.returncode == 0, stages.stderr[-2000:]
    rows = {r["stage"] for r in json.loads(stages.stdout)["stages"]}
    assert {"decode", "detect", "align", "generate", "blend", "encode"} <= rows


def test_doctor_checks_the_plugin_engine_and_unknown_names_list_the_engines(cli, env, mark, clip, tmp_path):
    doctor = cli("doctor", "--engine", "pixelate", "--device", "cpu", "--json", env=env)
    checks = {c["area"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["pixelate (plugin)"]["ok"] and checks["pixelate (plugin)"]["needed"]
    assert doctor.returncode == 0, doctor.stdout

    bad = cli("swap", "-s", mark, "-t", str(clip), "-o", str(tmp_path / "x.mp4"), "--engine", "nope", env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "unknown --engine 'nope' (ghost, lite, pixelate or auto)" in bad.stderr
    assert not (tmp_path / "x.mp4").exists()
