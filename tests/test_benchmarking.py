"""The baseline-vs-pipeline benchmark harness on a short real clip: both runs finish in their own
process and report sane figures."""

from __future__ import annotations

import math

from streamswap.benchmarking import compare


def test_compare_reports_speed_and_memory_of_both_ways(shared_data, tmp_path, cli):
    clip = tmp_path / "clip.mp4"
    made = cli("transcode", str(shared_data / "videos" / "nggyup.mp4"), str(clip), "--max-frames", "24",
               "--preset", "ultrafast", "-q")
    assert made.returncode == 0, made.stderr
    report = compare(str(clip), str(shared_data / "images" / "mark.jpg"))
    for kind in ("baseline", "pipeline"):
        run = report[kind]
        assert run["frames"] == 24 and run["fps"] > 0 and run["peak_rss_mib"] > 100
    assert report["pipeline"]["bottleneck"] in {s["name"] for s in report["pipeline"]["stages"]}
    assert math.isfinite(report["speed_ratio"]) and math.isfinite(report["memory_ratio"])
    assert report["environment"]["device"].startswith("CPU")


def test_bench_commands_print_tables_and_json(shared_data, tmp_path, cli):
    clip = tmp_path / "clip.mp4"
    assert cli("transcode", str(shared_data / "videos" / "dance.mp4"), str(clip), "--max-frames", "16",
               "--preset", "ultrafast", "-q").returncode == 0
    mark = str(shared_data / "images" / "mark.jpg")
    out = tmp_path / "pipeline.json"
    ran = cli("bench", "pipeline", "-i", str(clip), "-s", mark, "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    assert "bottleneck" in ran.stdout and "swap" in ran.stdout
    import json

    report = json.loads(out.read_text())
    assert report["fps"] > 0 and report["frames"] == 16 and report["peak_rss_mib"] > 100
    base = cli("bench", "baseline", "-i", str(clip), "-s", mark, "--json")
    assert base.returncode == 0, base.stderr
    data = json.loads(base.stdout)
    assert data["baseline"]["frames"] == data["pipeline"]["frames"] == 16 and data["speed_ratio"] > 0
    missing = cli("bench", "pipeline", "-i", str(tmp_path / "none.mp4"), "-s", mark)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
