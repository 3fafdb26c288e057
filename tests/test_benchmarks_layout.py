"""Where benchmark code lives: the measurements in `streamswap.bench`, and in benchmarks/ only
thin command lines (and results) that never reach into tests/ (checked statically, with ast).
Then one quick real run of each measurement module, on tiny inputs (a few seconds in all)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
MAX_LINES = 15  # statements and their continuation lines, docstring and comments left out
# what tests/ holds, as a script with tests/ on sys.path would import it (helpers_media, onnx_fakes...)
TEST_MODULES = {p.stem for p in (REPO / "tests").rglob("*.py")} | {"tests"}


def _code_lines(tree: ast.Module) -> int:
    """Lines that hold code: every line a statement spans, the module docstring left out."""
    body = tree.body[1:] if ast.get_docstring(tree) is not None else tree.body
    return len({n for stmt in body for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)})


def _problems(path: Path) -> list[str]:
    """What keeps `path` from being a thin entry point: imports from tests/, tests/ put on
    sys.path, definitions, too much code, or no `main` from a streamswap.bench module."""
    tree = ast.parse(path.read_text())
    found, mains = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in TEST_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] in TEST_MODULES:
                found.append(f"imports from {node.module}")
            if (node.module or "").startswith("streamswap.bench.") and any(a.name == "main" for a in node.names):
                mains.append(node.module)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).startswith("sys.path"):
            if "tests" in ast.unparse(node):
                found.append(f"puts tests/ on sys.path: {ast.unparse(node)}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append(f"defines {node.name} (logic belongs in streamswap.bench)")
    if _code_lines(tree) > MAX_LINES:
        found.append(f"{_code_lines(tree)} lines of code (a thin entry point has at most {MAX_LINES})")
    if len(mains) != 1:
        found.append("does not import one `main` from a streamswap.bench module")
    return found


def test_the_checker_sees_a_script_that_reaches_into_tests(tmp_path: Path):
    bad = tmp_path / "bench_bad.py"
    bad.write_text('"""Doc."""\nimport sys\nsys.path.insert(0, str(REPO / "tests"))\nfrom onnx_fakes import x\n'
                   "def main():\n    pass\n")
    assert set(_problems(bad)) == {"puts tests/ on sys.path: sys.path.insert(0, str(REPO / 'tests'))",
                                   "imports from onnx_fakes", "defines main (logic belongs in streamswap.bench)",
                                   "does not import one `main` from a streamswap.bench module"}


def test_every_benchmark_script_is_a_thin_entry_point_that_never_imports_tests():
    import importlib

    scripts = sorted(BENCHMARKS.rglob("*.py"))
    assert len(scripts) >= 8
    assert {p.name: _problems(p) for p in scripts} == {p.name: [] for p in scripts}
    for p in scripts:  # and each names a module that exists, with a main
        module = next(n.module for n in ast.walk(ast.parse(p.read_text()))
                      if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("streamswap.bench."))
        assert callable(importlib.import_module(module).main), p.name


# One quick real run per measurement module (tiny inputs, fractions of a second of timing).


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-frame 160x96 clip with AAC audio."""
    from streamswap.bench.media import make_video

    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=20, audio=True)


def test_detect_times_the_fake_scrfd_runtimes(tmp_path: Path):
    from streamswap.bench import detect
    from streamswap.models.stand_ins import export_fake_scrfd

    model = export_fake_scrfd(tmp_path / "tiny.onnx")
    out = tmp_path / "detect.json"
    detect.main(["--model", str(model), "--batches", "1", "--seconds", "0.02", "--rounds", "1", "--no-lite",
                 "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["runtime"] for r in report["scrfd"]] == ["torch", "onnxruntime"]
    assert all(r["detect_fps"] > 0 and r["network_fps"] > 0 for r in report["scrfd"]) and report["lite"] == []


@pytest.fixture
def torch_threads():
    """Restores torch's CPU thread count after a benchmark's --threads 1 (one thread: steadier on
    a loaded 2-core machine than two that compete with the other test worker)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_generator_times_a_batch(tmp_path: Path, torch_threads):
    from streamswap.bench import generator

    out = tmp_path / "generator.json"
    assert generator.main(["--configs", "cpu-fp32", "--batches", "1", "--blocks", "1", "--max-seconds", "0",
                           "--threads", "1", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]["cpu-fp32"]
    assert row["batch"] == 1 and row["iters"] >= 1 and row["faces_per_s"] > 0


def test_jitter_figures_on_a_synthetic_noisy_ramp():
    from streamswap.bench import jitter
    from streamswap.tracking import Detections, TrackerSettings

    rng = np.random.default_rng(0)
    truth = np.array([[-40, -30], [40, -30], [0, 10], [-30, 45], [30, 45]], np.float64)[None] + 300 \
        + np.array([3.0, 1.0])[None, None] * np.arange(60)[:, None, None]
    noisy = (truth + rng.normal(0, 1.5, truth.shape)).astype(np.float32)
    boxes = np.concatenate([noisy.min(1) - 60, noisy.max(1) + 60], axis=1)
    dets = [Detections(boxes[t:t + 1], noisy[t:t + 1], np.ones(1, np.float32)) for t in range(60)]
    figures = jitter.measure(jitter.VideoDetections(dets, np.zeros(60, bool), (1280, 720), 0.0))
    assert figures["frames"] == figures["frames_with_faces"] == 60 and figures["cut_frames"] == []
    assert figures["ours_file"]["mean_accel_px"] < figures["raw"]["mean_accel_px"]
    ramp = jitter.ramp_figures(TrackerSettings(mode="file"))
    assert abs(ramp["ours"]) < 1 and abs(ramp["ghost"]) < 1


def test_train_step_times_a_tiny_step(tmp_path: Path, torch_threads):
    from streamswap.bench import train_step

    out = tmp_path / "train.json"
    train_step.main(["--tiny", "--device", "cpu", "--batch", "2", "--steps", "1", "--warmup", "0",
                     "--precisions", "fp32", "--threads", "1", "--out", str(out)])
    (result,) = json.loads(out.read_text())["results"]
    assert result["steps"] == 1 and result["steps_per_s"] > 0 and result["device"] == "cpu"


def test_transcode_compares_the_graph_with_the_bare_loops(clip: Path, tmp_path: Path, capsys):
    from streamswap.bench import transcode

    report = transcode.main(["--videos", str(clip), "--repeat", "1", "--out", str(tmp_path / "t.json")])
    (row,) = report["results"]
    assert row["frames"] == 20 and set(row["fps"]) == {"graph", "bare", "bare_yuv"}
    assert json.loads(capsys.readouterr().out) == report == json.loads((tmp_path / "t.json").read_text())


@pytest.mark.timeout(300)  # the whole device suite, small: NVDEC/format clips, a ghost job, the baseline pair
def test_the_gpu_suite_dry_run_runs_every_section_on_the_cpu(tmp_path: Path):
    """benchmarks/gpu_suite.py --device cpu --quick, as a user starts it: every section runs (the
    GPU-only measurements are recorded as such), so the script the device runs cannot rot."""
    import subprocess
    import sys

    out = tmp_path / "suite"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--quick",
                          "--out", str(out)], capture_output=True, text=True, timeout=280, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "gpu_suite_all.json").read_text())
    assert report["ok"] and report["failed"] == [] and json.loads(run.stdout) == report
    assert report["preflight"]["skipped"] == "dry run on the CPU" and "libnvcuvid.so.1" in report["preflight"]["libraries"]
    assert report["nvdec_vs_pyav"]["ok"] and report["nvdec_vs_pyav"]["frames"] == 24
    clips = report["format_matrix"]["clips"]
    assert set(clips) == {"h264_odd_size", "h264_444", "hevc_444", "hevc_main10", "h264_high10", "h264_rotated",
                          "h264_raw_no_pts"}
    assert all(c["ok"] and c["frames"] == 6 and c["pts_equal"] for c in clips.values()), clips
    assert "Main 10 yuv420p10le" in clips["hevc_main10"]["facts"] and "321x181" in clips["h264_odd_size"]["facts"]
    ghost = report["ghost"]
    assert ghost["ok"] and ghost["frames"] == 8 and ghost["faces"] >= 8 and ghost["fps"] > 0
    assert [s["name"] for s in ghost["stages"]] == ["decode", "analyse", "track", "swap", "encode"]
    assert ghost["cuda_syncs"] is None  # counted only under CUDA's sync debug mode
    assert report["generator"]["ok"] and report["generator"]["results"][0]["faces_per_s"] > 0
    assert report["baseline"]["ok"] and report["baseline"]["isolated"] is False


def test_the_gpu_suite_fails_on_a_gpu_machine_when_a_gpu_path_skipped_or_fell_back():
    from streamswap.bench.gpu_suite import Sections

    sections = Sections()
    sections.report.update(environment={"x": 1}, preflight={"ok": True}, nvdec_vs_pyav={"ok": True, "fell_back": True},
                           ghost={"skipped": "no kornia"}, generator={"ok": False})
    assert sections.failures(gpu_present=True) == ["nvdec_vs_pyav", "ghost", "generator"]
    assert sections.failures(gpu_present=False) == ["generator"]


def test_live_rss_clip_slides_each_face_in_and_out():
    from streamswap.bench import live_rss

    faces = [np.full((100, 80, 3), v, np.uint8) for v in (200, 250)]
    frames = live_rss.segment_frames(faces)
    assert len(frames) == 2 * live_rss.SEGMENT and frames[0].shape == (live_rss.H, live_rss.W, 3)
    covered = [int((f != 96).any(axis=2).sum()) for f in frames]
    assert covered[0] == 0 and covered[15] == 100 * 80 and covered[35] == 0  # off, still, gone


@pytest.mark.parametrize("name", ["lite_swap", "live_rss"])
def test_the_subprocess_benchmarks_parse_their_flags(name: str, capsys):
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(f"streamswap.bench.{name}").main(["--help"])
    assert stop.value.code == 0 and "--out" in capsys.readouterr().out
