"""`streamswap demo` in a subprocess: offline, from shipped images, writes a playable swapped video."""

from __future__ import annotations

from helpers_media import video_facts


def test_demo_writes_a_playable_swapped_video_offline(cli, tmp_path):
    env = {"STREAMSWAP_OFFLINE": "1", "STREAMSWAP_HOME": str(tmp_path / "home")}
    # 1 s of video (25 frames) is enough to show all of it; each frame costs ~0.36 CPU-s (measured
    # 9.7 CPU-s for the run at --seconds 1, 18.8 at --seconds 2)
    result = cli("demo", "--out-dir", str(tmp_path / "demo"), "--seconds", "1", env=env)
    assert result.returncode == 0, result.stderr
    swapped = tmp_path / "demo" / "swapped.mp4"
    assert str(swapped.resolve()) in result.stdout and "lite engine" in result.stdout
    facts = video_facts(swapped)
    assert facts["frames"] == 25 and (facts["width"], facts["height"]) == (640, 360)
    done = [line for line in result.stdout.splitlines() if "frames with a swapped face" in line][0]
    swapped_frames = int(done.split("lite engine, ")[1].split("/")[0])
    assert swapped_frames >= 20, done  # measured 23 of 25 (50 of 50 at --seconds 2: a slower pan)
