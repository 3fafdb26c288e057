"""The pieces of a cluster job that need no cluster: the keyframe index and chunk plan, the work
directory a re-run resumes from, the stitch's refusals, and that a plain swap never imports Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
from helpers_media import audio_packets, video_facts
from streamswap.bench.media import make_video

from streamswap.cluster.chunks import (
    PlanSettings,
    frame_range,
    index_video,
    plan_chunks,
)
from streamswap.cluster.stitch import stitch
from streamswap.cluster.workdir import ChunkRecord, WorkDir, work_dir_for
from streamswap.errors import InputError, PipelineError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nggyup_index(shared_data):
    return index_video(shared_data / "videos" / "nggyup.mp4")


def test_the_index_reads_nggyups_frames_and_keyframes_from_packets(nggyup_index):
    ix = nggyup_index
    assert ix.frames == 289 and ix.fps == 30
    assert ix.keyframes == tuple(range(0, 289, 30))  # a keyframe every second: enough for >= 3 chunks
    assert list(ix.pts) == sorted(ix.pts) and len(set(ix.pts)) == 289


def test_chunks_cover_every_frame_once_and_start_at_keyframes(nggyup_index):
    chunks = plan_chunks(nggyup_index, PlanSettings(chunk_s=3.0, warmup_s=1.0, lookahead=15, detect_every=5))
    assert [(c.first, c.end) for c in chunks] == [(0, 90), (90, 180), (180, 289)]  # the 0.6 s tail joins the last
    for c in chunks:
        assert c.first in nggyup_index.keyframes
        assert c.seek in nggyup_index.keyframes and c.seek <= c.run_from <= c.first
        assert c.run_from % 5 == 0  # the detector runs on the same frames as in one process
        assert c.first - c.run_from >= 30 or c.run_from == 0  # one second of warm-up
        assert c.run_to == min(289, c.end + 15)  # the smoother's look-ahead
    span = chunks[1].span(nggyup_index)
    assert span.frames == 90 and span.emits(nggyup_index.pts[90]) and not span.emits(nggyup_index.pts[89])
    assert not span.emits(nggyup_index.pts[180])


def test_a_time_range_is_planned_from_its_first_frame(nggyup_index):
    first, end = frame_range(nggyup_index, 2.01, 5.0)
    assert (first, end) == (61, 150)
    chunks = plan_chunks(nggyup_index, PlanSettings(chunk_s=1.0, warmup_s=1.0, detect_every=5), first, end)
    assert chunks[0].first == 61 and chunks[-1].end == 150
    assert all((c.run_from - first) % 5 == 0 for c in chunks)  # phase counted from the range's start
    assert sum(c.frames for c in chunks) == 89
    with pytest.raises(InputError):
        frame_range(nggyup_index, 20.0, None)


def test_sparse_keyframes_make_fewer_longer_chunks(tmp_path):
    clip = make_video(tmp_path / "one_gop.mp4", frames=60, fps=30)  # x264's default GOP: one keyframe
    chunks = plan_chunks(index_video(clip), PlanSettings(chunk_s=0.5))
    assert [(c.first, c.end) for c in chunks] == [(0, 60)]


def test_the_work_dir_keeps_finished_chunks_only_for_the_same_plan(tmp_path, nggyup_index):
    chunks = plan_chunks(nggyup_index, PlanSettings(chunk_s=3.0))
    out = tmp_path / "out.mp4"
    wd = WorkDir.open(out, "key-a", chunks)
    assert wd.root == work_dir_for(out) and wd.finished() == {}
    wd.partial_path(1).write_bytes(b"half a chunk")  # what a killed run leaves
    wd.commit(0, b"chunk zero", ChunkRecord(0, 90, 105, 1.0, 0, 123, "host"))
    again = WorkDir.open(out, "key-a", chunks)
    assert list(again.finished()) == [0] and not again.partial_path(1).exists()
    other = WorkDir.open(out, "key-b", chunks)  # another input or other settings: start afresh
    assert other.finished() == {}


def test_the_stitch_refuses_a_wrong_frame_count_and_leaves_no_file(tmp_path):
    a = make_video(tmp_path / "a.mp4", frames=10, fps=25)
    with pytest.raises(PipelineError, match="frames"):
        stitch([a], tmp_path / "out.mp4", expected_frames=11, audio_from=None)
    assert list(tmp_path.glob("*out*")) == []


def test_the_stitch_refuses_chunks_whose_timestamps_overlap(tmp_path):
    a = make_video(tmp_path / "a.mp4", frames=10, fps=25)
    with pytest.raises(PipelineError, match="increase"):
        stitch([a, a], tmp_path / "out.mp4", expected_frames=20, audio_from=None)
    assert list(tmp_path.glob("*out*")) == []


def test_the_stitch_joins_packets_and_copies_the_audio_once(tmp_path):
    src = make_video(tmp_path / "src.mp4", frames=50, fps=25, audio=True)
    parts = []
    for n, (a, b) in enumerate([(0, 20), (20, 50)]):  # two chunks cut from the source's frames
        with av.open(str(src)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][a:b]
        parts.append(make_video(tmp_path / f"c{n}.mp4", frames=b - a, fps=25, pts=range(a, b), images=frames))
    rep = stitch(parts, tmp_path / "joined.mp4", expected_frames=50, audio_from=str(src))
    facts = video_facts(tmp_path / "joined.mp4")
    assert rep.frames == facts["frames"] == 50
    assert facts["times"] == pytest.approx([i / 25 for i in range(50)])
    assert audio_packets(tmp_path / "joined.mp4") == audio_packets(src)


def test_a_plain_swap_never_imports_ray(tmp_path, shared_data):
    clip = make_video(tmp_path / "clip.mp4", frames=5, fps=25)
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "streamswap", "swap", "--source",
                           str(shared_data / "images" / "mark.jpg"), "--target", str(clip), "--output", str(out),
                           "--engine", "lite", "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "streamswap.api" in imported and out.exists()  # the check sees the job's imports
    assert not any(name == "ray" or name.startswith("ray.") for name in imported)


def test_workers_get_a_gpu_each_or_share_one_or_split_the_cpus():
    from streamswap.cluster.run import ClusterSettings, actor_resources

    assert actor_resources(ClusterSettings(), [(64, 8)]) == (8, {"num_gpus": 1.0, "num_cpus": 1.0})
    assert actor_resources(ClusterSettings(workers=2), [(16, 1)]) == (2, {"num_gpus": 0.5, "num_cpus": 1.0})
    assert actor_resources(ClusterSettings(workers=4), [(16, 8)]) == (4, {"num_gpus": 1.0, "num_cpus": 1.0})
    assert actor_resources(ClusterSettings(workers=2), [(2, 0)]) == (2, {"num_cpus": 1.0})
    assert actor_resources(ClusterSettings(workers=1), [(2, 0)]) == (1, {"num_cpus": 2.0})
    assert actor_resources(ClusterSettings(), [(8, 0)]) == (4, {"num_cpus": 2.0})


def test_worker_requests_are_sized_to_fit_a_node_not_the_clusters_total():
    from streamswap.cluster.run import ClusterSettings, actor_resources

    two = [(4.0, 0.0), (4.0, 0.0)]
    # one worker on two 4-CPU nodes: 4 CPUs (the cluster's 8 would fit no node and wait for ever)
    assert actor_resources(ClusterSettings(workers=1), two) == (1, {"num_cpus": 4.0})
    assert actor_resources(ClusterSettings(workers=3), two) == (3, {"num_cpus": 2.0})
    n, res = actor_resources(ClusterSettings(workers=5), [(2.0, 0.0), (2.0, 0.0)])  # more workers than CPUs
    assert n == 5 and 2 * int(2 / res["num_cpus"] + 1e-9) >= 5
    # three workers on two one-GPU machines: half a GPU each (2/3 would leave one without a place)
    assert actor_resources(ClusterSettings(workers=3), [(16.0, 1.0), (16.0, 1.0)]) == (
        3, {"num_gpus": 0.5, "num_cpus": 1.0})
    assert actor_resources(ClusterSettings(), [(1.0, 0.0)]) == (1, {"num_cpus": 1.0})  # a 1-CPU machine
    with pytest.raises(PipelineError, match="8 CPU and no node"):
        actor_resources(ClusterSettings(workers=1, cpus_per_worker=8), two)
    with pytest.raises(PipelineError, match="1 GPU.*no node"):
        actor_resources(ClusterSettings(workers=1, gpus_per_worker=1), two)


def test_batch_inputs_come_from_a_folder_or_a_list_and_keep_their_names(tmp_path):
    from streamswap.cluster.run import batch_jobs

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir(), out.mkdir()
    for name in ("b.mp4", "a.mov", "cover.jpg", ".hidden.mp4"):
        (folder / name).write_bytes(b"x")
    (folder / "B.MP4").write_bytes(b"x")  # and b.mp4: one file on a case-insensitive disk
    with pytest.raises(InputError, match="B.MP4 and .*b.mp4 would write the same output"):
        batch_jobs(folder, out)
    (folder / "B.MP4").unlink()
    assert [(Path(j.input).name, Path(j.output).name) for j in batch_jobs(folder, out)] == [("a.mov", "a.mov"),
                                                                                              ("b.mp4", "b.mp4")]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# clips\nin/b.mp4\n\n{folder / 'a.mov'}\n")
    assert [Path(j.input) for j in batch_jobs(listing, out)] == [folder / "b.mp4", folder / "a.mov"]
    with pytest.raises(InputError, match="output folder"):
        batch_jobs(folder, tmp_path / "missing")


def test_chunk_seconds_without_a_cluster_is_refused(cli, tmp_path, shared_data):
    clip = make_video(tmp_path / "clip.mp4", frames=5, fps=25)
    result = cli("swap", "--source", str(shared_data / "images" / "mark.jpg"), "--target", str(clip), "--output",
                 str(tmp_path / "out.mp4"), "--chunk-seconds", "5")
    assert result.returncode != 0 and "--chunk-seconds applies with --workers" in result.stderr


def test_a_batch_reports_a_broken_input_as_failed_and_skips_finished_outputs(cli, tmp_path, shared_data):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), outputs.mkdir()
    from streamswap.cluster.outputs import record_complete

    (inputs / "broken.mp4").write_bytes(b"not a video at all")
    make_video(inputs / "done.mp4", frames=5, fps=25)
    make_video(inputs / "stray.mp4", frames=5, fps=25)
    (outputs / "done.mp4").write_bytes(b"finished earlier")
    record_complete(outputs / "done.mp4", 5)  # what a batch writes beside an output it finished
    (outputs / "stray.mp4").write_bytes(b"some file of the same name")  # exists, never recorded complete
    result = cli("batch", "--source", str(shared_data / "images" / "mark.jpg"), "--inputs", str(inputs),
                 "--output-dir", str(outputs), "--engine", "lite", "--json", "--quiet")
    assert result.returncode == 1  # nothing left to run: no cluster is started
    status = {Path(r["input"]).name: (r["status"], r["error"]) for r in json.loads(result.stdout)["outputs"]}
    assert status["done.mp4"] == ("skipped", None)
    assert status["broken.mp4"][0] == "failed" and "broken.mp4" in status["broken.mp4"][1]
    assert status["stray.mp4"][0] == "failed" and "recorded it complete; pass --overwrite" in status["stray.mp4"][1]
    assert (outputs / "stray.mp4").read_bytes() == b"some file of the same name"
