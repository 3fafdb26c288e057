"""`streamswap bench ...` through the real CLI on short real clips: every subcommand finishes and
its JSON report holds the fields with sane values; --plot draws a PNG; bad options get one line."""

from __future__ import annotations

import json
import math

import pytest

PNG = b"\x89PNG\r\n\x1a\n"
STAGES_LITE = {"decode", "detect", "align", "generate", "blend", "encode"}


@pytest.fixture(scope="module")
def clips(shared_data, tmp_path_factory):
    """Short real clips, made smaller than their sources (the cost of each job is then mostly its
    process start): 12 frames of nggyup.mp4 at 480x270 (the singer's face, which dlib finds in
    every frame), 4 frames of dance.mp4 at half size, 232x280, 25 fps like the source."""
    from streamswap.bench.media import scaled_loop

    tmp = tmp_path_factory.mktemp("bench")
    videos = shared_data / "videos"
    return {"singer": scaled_loop(videos / "nggyup.mp4", tmp / "singer.mp4", seconds=0.4, size=(480, 270), fps=30),
            "dance": scaled_loop(videos / "dance.mp4", tmp / "dance.mp4", seconds=0.16, size=(232, 280), fps=25),
            "mark": shared_data / "images" / "mark.jpg"}


def _json(done):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _environment_recorded(report):
    env = report["environment"]
    assert env["device"].startswith("CPU") and env["torch"] and env["date"]


def test_bench_pipeline_reports_fps_stages_latency_and_memory(clips, tmp_path, cli):
    plot = tmp_path / "pipeline.png"
    report = _json(cli("bench", "pipeline", "-i", str(clips["singer"]), "-s", str(clips["mark"]), "--json",
                       "--no-host-syncs", "--eval", "--plot", str(plot)))
    _environment_recorded(report)
    assert report["frames"] == 12 and report["fps"] > 0 and report["faces"] >= 10
    names = [s["name"] for s in report["stages"]]
    assert names == ["decode", "analyse", "track", "swap", "encode"]
    assert report["bottleneck"] in names
    assert all(0 <= s["busy"] <= 1 and s["items_per_s"] > 0 for s in report["stages"])
    assert 0 <= report["latency_p50_s"] <= report["latency_p95_s"]
    assert report["peak_rss_mib"] > report["peak_anon_mib"] > 100 and report["peak_gpu_mib"] is None
    assert report["settings"]["engine"] == "lite" and report["settings"]["video"] == str(clips["singer"])
    assert report["host_syncs"] is None  # --no-host-syncs: one run only
    # the I/O floor measured in the same run: decode, RGB round trip, x264, audio copy alone
    assert report["io_floor_fps"] > report["fps"] > 0
    assert report["fraction_of_io_floor"] == pytest.approx(report["fps"] / report["io_floor_fps"], abs=1e-3)
    # --eval: the swapped output judged by `streamswap eval` beside the speed
    quality = report["quality"]
    assert quality["recogniser"] == "dlib_resnet_128" and quality["frames_with_face"] >= 10
    assert quality["identity_gain"] > 0 and quality["background"] < 5 and quality["flicker_ratio"] > 0
    assert plot.read_bytes().startswith(PNG)


def test_bench_pipeline_runs_the_ghost_engine_with_stand_in_networks(clips, cli):
    report = _json(cli("bench", "pipeline", "-i", str(clips["dance"]), "-s", str(clips["mark"]), "--engine", "ghost",
                       "--stand-in", "--width", "0.0625", "--json"))
    assert report["frames"] == 4 and report["fps"] > 0 and report["faces"] > 0
    assert report["settings"]["stand_in"] and report["settings"]["width"] == 0.0625
    # the second, audited run (face models on the torch runtime, as CUDA runs them): host syncs
    # per batch (per call) of each processing stage, by kind and call site
    syncs = report["host_syncs"]
    assert syncs["batch"] == 2 and syncs["face_runtime"] == "torch" and set(syncs["stages"]) == {"analyse", "track", "swap"}
    for stage in report["stages"][1:-1]:
        counted = syncs["stages"][stage["name"]]
        assert stage["host_syncs_per_batch"] == counted["syncs_per_batch"] == counted["syncs"] / counted["calls"]
        assert sum(counted["by_kind"].values()) == counted["syncs"]
    assert 0 < syncs["total_per_batch"] <= 8
    assert all(site.startswith("streamswap/") for s in syncs["stages"].values() for site in s["by_site"])


def test_bench_stages_times_each_stage_by_batch_size(clips, tmp_path, cli):
    plot = tmp_path / "stages.png"
    report = _json(cli("bench", "stages", "-i", str(clips["singer"]), "-s", str(clips["mark"]), "--batches", "1,2",
                       "--frames", "4", "--json", "--plot", str(plot)))
    _environment_recorded(report)
    rows = report["stages"]
    assert {r["stage"] for r in rows} == STAGES_LITE
    for stage in STAGES_LITE - {"decode", "encode"}:  # the batched stages, at each size
        assert sorted(r["batch"] for r in rows if r["stage"] == stage) == [1, 2]
    assert all(r["items_per_s"] > 0 and r["ms_per_item"] > 0 and r["frames"] == 4 for r in rows)
    assert report["slowest_stage"] in STAGES_LITE and report["faces"] == 4
    assert plot.read_bytes().startswith(PNG)


def test_bench_stages_of_the_ghost_engine_include_super_resolution(clips, cli):
    report = _json(cli("bench", "stages", "-i", str(clips["dance"]), "-s", str(clips["mark"]), "--engine", "ghost",
                       "--stand-in", "--width", "0.0625", "--sr", "--batches", "2", "--frames", "2", "--json"))
    assert {r["stage"] for r in report["stages"]} == STAGES_LITE | {"super-resolution"}
    assert all(r["items_per_s"] > 0 for r in report["stages"])


def test_bench_baseline_compares_speed_and_memory_with_the_seed_way(clips, tmp_path, cli):
    plot = tmp_path / "baseline.png"
    report = _json(cli("bench", "baseline", "-i", str(clips["singer"]), "-s", str(clips["mark"]), "--json",
                       "--plot", str(plot)))
    _environment_recorded(report)
    for kind in ("baseline", "pipeline"):
        run = report[kind]
        assert run["frames"] == 12 and run["fps"] > 0 and run["cpu_s"] > 0
        assert run["peak_rss_mib"] > 100 and run["peak_anon_mib"] > 50 and run["memory_timeline"]
    for ratio in ("speed_ratio", "memory_ratio", "anon_memory_ratio", "cpu_ratio"):
        assert math.isfinite(report[ratio]) and report[ratio] > 0
    assert plot.read_bytes().startswith(PNG)


def test_bench_baseline_runs_the_ghost_engine_the_seed_way(clips, cli):
    report = _json(cli("bench", "baseline", "-i", str(clips["dance"]), "-s", str(clips["mark"]), "--engine", "ghost",
                       "--stand-in", "--width", "0.0625", "--json"))
    assert report["baseline"]["frames"] == report["pipeline"]["frames"] == 4
    assert report["baseline"]["faces"] > 0 and math.isfinite(report["speed_ratio"])


def test_bench_scaling_loops_the_input_to_each_length(clips, tmp_path, cli):
    plot = tmp_path / "scaling.png"
    report = _json(cli("bench", "length", "-i", str(clips["dance"]), "-s", str(clips["mark"]), "--lengths",
                       "0.16,0.48", "--baseline-up-to", "0.2", "--json", "--plot", str(plot)))
    _environment_recorded(report)
    runs = {(r["length_s"], r["kind"]): r for r in report["runs"]}
    assert set(runs) == {(0.16, "pipeline"), (0.16, "baseline"), (0.48, "pipeline")}
    assert runs[(0.16, "pipeline")]["frames"] == 4 and runs[(0.48, "pipeline")]["frames"] == 12  # 25 fps
    assert all(r["fps"] > 0 and r["peak_rss_mib"] > 100 for r in runs.values())
    assert math.isfinite(report["fps_spread"]) and math.isfinite(report["memory_spread"])
    assert plot.read_bytes().startswith(PNG)


def test_bench_errors_are_one_line(clips, tmp_path, cli):
    missing = cli("bench", "pipeline", "-i", str(tmp_path / "none.mp4"), "-s", str(clips["mark"]))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    bad = cli("bench", "stages", "-i", str(clips["dance"]), "-s", str(clips["mark"]), "--batches", "1,x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --batches")


def test_bench_resume_measures_the_segmented_overhead(clips, cli):
    # the shortest loop the command takes (1 s: 25 frames of the dance clip), once each way
    report = _json(cli("bench", "resume", "-i", str(clips["dance"]), "-s", str(clips["mark"]), "--seconds", "1",
                       "--repeats", "1", "--json"))
    _environment_recorded(report)
    assert report["frames"] == 25 and len(report["plain_fps"]) == len(report["segmented_fps"]) == 1
    assert report["plain_seconds"] > 0 and report["segmented_seconds"] > 0
    assert math.isclose(report["overhead"], report["segmented_seconds"] / report["plain_seconds"] - 1)


def test_bench_stop_resume_stops_a_real_job_and_resumes_it(shared_data, tmp_path, cli):
    # 12 s in four 3-s segments: stopped after two, the two left (~1.5 s of work here) leave the
    # SIGTERM (sent within 0.2 s of the second segment's record) time to land mid-job
    out = tmp_path / "stop.json"
    report = _json(cli("bench", "stop-resume", "-i", str(shared_data / "videos" / "nggyup.mp4"), "-s",
                       str(shared_data / "images" / "mark.jpg"), "--seconds", "12", "--segment-seconds", "3",
                       "--size", "96x54", "--stop-at", "0.5", "--json", "--out", str(out)))
    assert json.loads(out.read_text()) == report
    assert report["first"]["exit"] == 143 and report["frames_match"] and report["audio_identical"]
    assert report["second"]["segments_reused"] >= 1 and report["second_decoded_fraction"] < 0.75
    seams = report["seams"]
    assert report["second"]["segments"] == 4
    assert seams["frames_compared"] == report["frames_in_input"] == 300 and seams["max_abs_diff"] <= 10
    assert report["encoder_noise_min_psnr_db"] > 30
