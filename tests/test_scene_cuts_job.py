"""Scene cuts reach the tracker in a real job: nggyup.mp4 has cuts at frames 22 and 93. The
analyse stage flags them (tracking.scene_cuts), the track stage passes them to the tracker, and
no track (so no smoothing) runs across a cut, in file mode (RTS look-ahead) and live."""

from __future__ import annotations

import pytest
import torch

from streamswap.stream import Graph, Sink, Source, Stage

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def lite_session(shared_data):
    from streamswap.engines.registry import engine_named
    from streamswap.options import SwapOptions

    engine = engine_named("lite")
    options = SwapOptions(sources=(str(shared_data / "images" / "mark.jpg"),), engine="lite", device="cpu")
    models = engine.load(options, torch.device("cpu"))
    return engine.session(models, engine.source_identity(models, options), options)


def _track_ids(video, session, mode: str, strip_cuts: bool = False) -> list[tuple[int, ...]]:
    """The track ids of each output frame's faces, through the job's own analyse and track stages."""
    from streamswap.pipeline import CUT, PipelineSettings, analyse_stage, track_stage
    from streamswap.tracking import TrackerSettings
    from streamswap.video.sources import SourceOptions, open_source

    tracker = TrackerSettings(mode=mode, window=10, target_threshold=session.threshold, **session.tracker)
    settings = PipelineSettings(batch=2, tracker=tracker)
    stages = [analyse_stage(session.analyser, settings, False)]
    if strip_cuts:  # the job as it was before the cut signal was wired in

        def strip(frames):
            for f in frames:
                f.extras.pop(CUT, None)
            return frames

        stages.append(Stage("strip", strip))
    stages.append(track_stage(settings, None))
    src = open_source(str(video), SourceOptions(max_frames=100))
    out: list = []
    Graph(Source("decode", src, src.close), stages, Sink("out", out.append)).run()
    assert [f.index for f in out] == list(range(100))
    return [tuple(face.track_id for face in f.faces) for f in out]


@pytest.mark.parametrize("mode", ["file", "live"])
def test_tracks_restart_at_the_real_cuts_of_nggyup(shared_data, lite_session, mode):
    ids = _track_ids(shared_data / "videos" / "nggyup.mp4", lite_session, mode)
    for cut in (22, 93):
        before, after = set(ids[cut - 1]), set(ids[cut])
        assert before and after and not before & after, (cut, ids[cut - 3 : cut + 3])


def test_without_the_cut_signal_one_track_runs_across_both_cuts(shared_data, lite_session):
    """What the wiring changes: the same video with the flags removed keeps the singer's track
    through both cuts (and smooths across them)."""
    ids = _track_ids(shared_data / "videos" / "nggyup.mp4", lite_session, "file", strip_cuts=True)
    for cut in (22, 93):
        assert set(ids[cut - 1]) & set(ids[cut]), (cut, ids[cut - 3 : cut + 3])
