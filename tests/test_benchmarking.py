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
