"""Face tracks and keypoint smoothing, on synthetic trajectories (the real-video checks are in
test_tracking_video.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamswap.errors import InputError
from streamswap.bench.tracking_metrics import ghost_smooth, mean_acceleration, ramp_lag, velocity_lag
from streamswap.tracking import Detections, Tracker, TrackerSettings, cv_model, face_width, scene_cuts

# a 200 px wide face's five keypoints around its centre (eyes, nose, mouth corners)
FACE = np.array([[-40, -30], [40, -30], [0, 10], [-30, 45], [30, 45]], dtype=np.float64)


def face_at(centre: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(box (4,), kps (5, 2)) of the synthetic face centred at `centre`."""
    kps = FACE * scale + centre
    half = 100 * scale
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]), kps


def detections(*faces: tuple[np.ndarray, np.ndarray], embeddings: list[np.ndarray] | None = None) -> Detections:
    if not faces:
        return Detections.empty()
    return Detections(np.stack([f[0] for f in faces]), np.stack([f[1] for f in faces]),
                      embeddings=None if embeddings is None else np.stack(embeddings))


def wobble(frames: int, rng: np.random.Generator, start=(400.0, 300.0), noise: float = 2.0) -> np.ndarray:
    """(frames, 2) face centres: a slow sway plus detection noise."""
    t = np.arange(frames)
    path = np.stack([start[0] + 30 * np.sin(t / 15), start[1] + 10 * np.cos(t / 11)], axis=1)
    return path + rng.normal(0, noise, path.shape)


def only_face(frame: tuple) -> object:
    assert len(frame) == 1, f"expected one face, got {len(frame)}"
    return frame[0]


def test_constant_velocity_model_measures_position_only():
    f, h, q, r = cv_model(2.0, accel_noise=0.5, measurement_noise=0.1)
    np.testing.assert_allclose(f, [[1, 2], [0, 1]])
    np.testing.assert_allclose(h, [[1, 0]])  # filterpy 2.0's kinematic_kf would measure x + v here
    np.testing.assert_allclose(q, q.T)
    assert np.all(np.linalg.eigvalsh(q) >= -1e-12) and q[1, 1] == pytest.approx(0.25 * 4)
    assert r.shape == (1, 1) and r[0, 0] == pytest.approx(0.01)


def test_face_width_is_about_the_box_width():
    assert face_width(FACE) == pytest.approx(200, rel=0.15)
    assert face_width(FACE * 2) == pytest.approx(2 * face_width(FACE))


def test_file_mode_smooths_a_noisy_ramp_with_no_lag():
    rng = np.random.default_rng(1)
    frames, velocity = 90, np.array([5.0, -2.0])
    truth = np.array([300.0, 300.0]) + velocity * np.arange(frames)[:, None]
    dets = [detections(face_at(c + rng.normal(0, 2.0, 2))) for c in truth]
    out = Tracker(TrackerSettings(mode="file")).run(dets)
    smoothed = np.stack([only_face(f).kps for f in out])
    raw = np.stack([d.kps[0] for d in dets])
    true_kps = FACE[None] + truth[:, None]
    seg = np.zeros(frames, int)
    assert mean_acceleration(smoothed, seg) < 0.3 * mean_acceleration(raw, seg)
    assert abs(ramp_lag(smoothed, true_kps, velocity)) < 0.1
    assert np.abs(smoothed - true_kps)[10:-10].mean() < np.abs(raw - true_kps)[10:-10].mean() / 2


def test_live_mode_is_causal_and_follows_a_ramp():
    rng = np.random.default_rng(2)
    velocity = np.array([4.0, 0.0])
    truth = np.array([300.0, 300.0]) + velocity * np.arange(60)[:, None]
    dets = [detections(face_at(c + rng.normal(0, 1.0, 2))) for c in truth]
    tracker = Tracker(TrackerSettings(mode="live"))
    outs = [tracker.push(t, d) for t, d in enumerate(dets)]
    assert all(len(o) == 1 and o[0][0] == t for t, o in enumerate(outs))  # this frame, no latency
    # changing the future does not change the past: replay with different later frames
    replay = Tracker(TrackerSettings(mode="live"))
    other = [replay.push(t, d if t < 40 else detections(face_at(truth[t] + 80))) for t, d in enumerate(dets)]
    for t in range(40):
        for a, b in zip(outs[t][0][1], other[t][0][1], strict=True):
            np.testing.assert_array_equal(a.kps, b.kps)
    smoothed = np.stack([o[0][1][0].kps if o[0][1] else np.full((5, 2), np.nan) for o in outs])
    assert abs(ramp_lag(smoothed, FACE[None] + truth[:, None], velocity, skip=15)) < 0.2
    assert not outs[0][0][1] and not outs[1][0][1] and outs[2][0][1]  # confirmed after min_hits = 3


def test_file_mode_latency_is_the_window_and_memory_stays_bounded():
    settings = TrackerSettings(mode="file", window=10)
    tracker = Tracker(settings)
    rng = np.random.default_rng(3)
    centres = wobble(200, rng)
    for t, c in enumerate(centres):
        ready = tracker.push(t, detections(face_at(c)))
        assert [i for i, _ in ready] == ([t - 10] if t >= 10 else [])
        assert all(len(tr.steps) <= settings.window + 1 for tr in tracker._tracks)
    rest = tracker.flush()
    assert [i for i, _ in rest] == list(range(190, 200))


def test_file_window_must_cover_confirmation_and_gaps():
    with pytest.raises(InputError, match="window"):
        TrackerSettings(mode="file", window=4, max_missed=8)
    with pytest.raises(InputError):
        TrackerSettings(mode="stream")  # type: ignore[arg-type]


def test_a_short_detection_gap_is_bridged_by_prediction():
    rng = np.random.default_rng(4)
    truth = np.array([200.0, 300.0]) + np.array([6.0, 1.0]) * np.arange(40)[:, None]
    gap = range(20, 24)
    dets = [Detections.empty() if t in gap else detections(face_at(c + rng.normal(0, 1.0, 2)))
            for t, c in enumerate(truth)]
    out = Tracker(TrackerSettings(mode="file")).run(dets)
    assert all(len(f) == 1 for f in out)
    assert len({f[0].track_id for f in out}) == 1
    for t in gap:
        face = out[t][0]
        assert face.detection is None
        assert np.abs(face.kps - (FACE + truth[t])).max() < 4.0  # interpolated through the gap
    live = Tracker(TrackerSettings(mode="live", coast_output=2)).run(dets)
    assert [len(live[t]) for t in gap] == [1, 1, 0, 0]  # live: predictions for 2 frames, then none
    assert len(live[24]) == 1 and live[24][0].track_id == live[19][0].track_id


def test_a_single_false_detection_is_never_output():
    rng = np.random.default_rng(5)
    centres = wobble(30, rng)
    dets = [detections(face_at(c), face_at(np.array([900.0, 100.0]), 0.4)) if t == 12 else detections(face_at(c))
            for t, c in enumerate(centres)]
    for mode in ("file", "live"):
        out = Tracker(TrackerSettings(mode=mode)).run(dets)
        assert len(out[12]) == 1 and out[12][0].kps[2, 0] < 600


def cut_sequence(rng: np.random.Generator, frames: int = 60, at: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Two clips joined at frame `at`: the face sways at (400, 300), then at (900, 250), smaller."""
    first = wobble(frames, rng)
    second = wobble(frames, rng, start=(900.0, 250.0))
    scales = np.where(np.arange(frames) < at, 1.0, 0.7)
    centres = np.where((np.arange(frames) < at)[:, None], first, second)
    return centres, scales


@pytest.mark.parametrize("mode", ["file", "live"])
@pytest.mark.parametrize("how", ["identity", "cut signal", "motion only"])
def test_a_cut_restarts_the_track_within_one_frame(mode: str, how: str):
    rng = np.random.default_rng(6)
    centres, scales = cut_sequence(rng)
    person = np.array([1.0, 0.0, 0.0])
    faces = [face_at(c, s) for c, s in zip(centres, scales, strict=True)]
    dets = [detections(f, embeddings=[person] if how == "identity" else None) for f in faces]
    cuts = [t == 30 for t in range(60)] if how == "cut signal" else None
    out = Tracker(TrackerSettings(mode=mode)).run(dets, cuts=cuts)
    width_after = face_width(faces[31][1])
    if how == "motion only" and mode == "live":
        # no identity, no cut signal: a new track must earn its confirmation (3 detections), and
        # the old one may be predicted for coast_output frames: neither is near the old face later
        assert all(f.kps[2, 0] > 700 for t in range(33, 60) for f in out[t])
        return
    assert len(out[30]) == 1
    face = out[30][0]
    # the first frame after the cut sits on the new face, not smeared from the old one
    assert np.abs(face.kps - faces[30][1]).max() < 0.05 * width_after
    assert face.restarted
    if how == "identity":
        assert face.track_id == out[29][0].track_id  # same person: the track goes on
    assert np.abs(out[29][0].kps - faces[29][1]).max() < 0.05 * face_width(faces[29][1])  # and before it
    assert all(len(out[t]) == 1 for t in range(2 if mode == "live" else 0, 60))


def test_a_face_leaving_the_frame_ends_its_track():
    frame_size = (640, 480)
    xs = 300.0 + 25.0 * np.arange(30)  # a 120 px face moving right; its box crosses x = 640 at frame 12
    visible = xs + 60 < frame_size[0]  # the detector loses it once it is cut off
    dets = [detections(face_at(np.array([x, 240.0]), 0.6)) if v else Detections.empty()
            for x, v in zip(xs, visible, strict=True)]
    last = int(np.flatnonzero(visible).max())  # frame 11
    gone = int(np.flatnonzero(xs - 60 + 0.5 * 120 > frame_size[0]).min())  # less than half inside: 14
    tracker = Tracker(TrackerSettings(mode="live", max_missed=8))
    alive = [len(tracker.push(t, d, frame_size=frame_size)[0][1]) + 10 * len(tracker._tracks)
             for t, d in enumerate(dets)]
    assert all(a >= 10 for a in alive[:gone])  # kept through the frames it is still partly seen
    assert all(a == 0 for a in alive[gone:])  # ended at once, not predicted off-screen for max_missed
    out = Tracker(TrackerSettings(mode="file")).run(dets, frame_size=frame_size)
    assert all(len(out[t]) == 1 for t in range(last + 1))
    assert all(len(out[t]) == 0 for t in range(last + 1, 30))  # a gap it never came back from


def crossing(frames: int = 40, rng: np.random.Generator | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two people walking past each other on one line: (centres (frames, 2)) for A and B."""
    rng = rng or np.random.default_rng(7)
    t = np.arange(frames)
    a = np.stack([200 + 10.0 * t, 300 + 0 * t], 1) + rng.normal(0, 2, (frames, 2))
    b = np.stack([600 - 10.0 * t, 305 + 0 * t], 1) + rng.normal(0, 2, (frames, 2))
    return [a, b]


@pytest.mark.parametrize("mode", ["file", "live"])
def test_two_people_keep_their_identities_across_a_crossing(mode: str):
    rng = np.random.default_rng(8)
    a, b = crossing(rng=rng)
    ids = np.eye(4)[:2] + rng.normal(0, 0.05, (2, 4))  # two people's embeddings
    dets = []
    for t in range(40):
        faces = [(face_at(a[t]), ids[0] + rng.normal(0, 0.05, 4)), (face_at(b[t]), ids[1] + rng.normal(0, 0.05, 4))]
        if 18 <= t <= 21:  # B hidden behind A while they overlap
            faces = faces[:1]
        if t % 2:  # detection order says nothing about who is who
            faces = faces[::-1]
        dets.append(Detections(np.stack([f[0][0] for f in faces]), np.stack([f[0][1] for f in faces]),
                               embeddings=np.stack([f[1] for f in faces])))
    targets = ids[[1]]  # swap person B only
    out = Tracker(TrackerSettings(mode=mode), targets=targets).run(dets)
    who: dict[int, str] = {}
    for t, frame in enumerate(out):
        for face in frame:
            if face.detection is None:
                continue
            truth = "A" if np.abs(dets[t].kps[face.detection] - (FACE + a[t])).max() < 10 else "B"
            assert who.setdefault(face.track_id, truth) == truth, f"track {face.track_id} switched at frame {t}"
            assert (face.target == 0) == (truth == "B")
    assert sorted(who.values()) == ["A", "B"]


def meet_and_turn_back(with_identity: bool) -> tuple[list[Detections], list[tuple]]:
    """A and B walk towards each other, meet at x = 400 and turn back: at the turn, each one's
    constant-velocity prediction lands on the other person."""
    t = np.arange(30)
    xa = 300 + 10.0 * np.minimum(t, 20 - t)
    xb = 500 - 10.0 * np.minimum(t, 20 - t)
    dets = []
    for i in t:
        (box_a, kps_a), (box_b, kps_b) = face_at(np.array([xa[i], 300.0])), face_at(np.array([xb[i], 300.0]))
        dets.append(Detections(np.stack([box_a, box_b]), np.stack([kps_a, kps_b]),
                               embeddings=np.eye(2) if with_identity else None))
    return dets, Tracker(TrackerSettings(mode="file")).run(dets)


def test_identity_breaks_a_tie_that_motion_gets_wrong():
    _, out = meet_and_turn_back(with_identity=True)
    first = {f.detection: f.track_id for f in out[0]}
    assert all({f.detection: f.track_id for f in frame} == first for frame in out)
    _, out = meet_and_turn_back(with_identity=False)  # the same scene without embeddings: a switch
    assert any({f.detection: f.track_id for f in frame} != first for frame in out)


def test_ghost_moving_average_follows_its_definition():
    kps = np.zeros((8, 5, 2))
    kps[:, :, 0] = np.array([0, 1, 2, 3, 4, 20, 21, 22], dtype=np.float64)[:, None]  # jump > 5 px at 5
    valid = np.ones(8, bool)
    out = ghost_smooth(kps, valid)
    np.testing.assert_allclose(out[:5, 0, 0], [1.0, 1.5, 2.0, 2.5, 3.0])  # +-2, shrunk at the ends
    np.testing.assert_allclose(out[5:, 0, 0], [21.0, 21.0, 21.0])  # a new segment after the jump
    valid[2] = False
    out = ghost_smooth(kps, valid)
    np.testing.assert_allclose(out[:2, 0, 0], [0.5, 0.5])  # a missing face splits segments too


def test_velocity_lag_measures_a_known_delay():
    rng = np.random.default_rng(9)
    raw = np.cumsum(rng.normal(0, 3, (200, 5, 2)), axis=0)
    late = np.roll(raw, 2, axis=0)
    valid = np.ones(200, bool)
    valid[:3] = False
    assert velocity_lag(late, raw, valid) == pytest.approx(2.0, abs=0.1)
    assert velocity_lag(raw, raw, valid) == pytest.approx(0.0, abs=1e-6)


def picture(seed: int) -> torch.Tensor:
    """A smooth random (3, 72, 128) uint8 picture."""
    coarse = torch.from_numpy(np.random.default_rng(seed).uniform(0, 255, (1, 3, 9, 16)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=(72, 128), mode="bilinear")[0].to(torch.uint8)


def test_scene_cuts_fire_on_a_new_picture_not_on_motion():
    a, b = picture(0), picture(1)
    shifted = torch.roll(a, 3, dims=2)
    cuts = scene_cuts(torch.stack([a, shifted, b, b]), previous=a)
    assert cuts.tolist() == [False, False, True, False]
    assert scene_cuts(torch.stack([b, a])).tolist() == [False, True]


def test_detections_come_from_a_face_batch_frame_by_frame():
    from streamswap.faces.records import FaceBatch

    kps = torch.tensor(np.stack([FACE + 300, FACE + 500, FACE + 100]), dtype=torch.float32)
    boxes = torch.tensor([[200, 200, 400, 400], [400, 400, 600, 600], [0, 0, 200, 200]], dtype=torch.float32)
    batch = FaceBatch(n_frames=3, boxes=boxes, scores=torch.ones(3), kps=kps,
                      frame_index=torch.tensor([0, 0, 2]), embeddings=torch.eye(3))
    per_frame = Detections.from_face_batch(batch)
    assert [len(d) for d in per_frame] == [2, 0, 1]
    np.testing.assert_allclose(per_frame[2].kps[0], FACE + 100)
    assert per_frame[0].embeddings.shape == (2, 3) and per_frame[1].embeddings.shape == (0, 3)


def test_predict_and_rts_pass_equal_filterpys():
    filterpy = pytest.importorskip("filterpy.kalman")
    from streamswap.tracking import cv_model, kf_predict, rts_smooth

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(7, 2, 14))
    ps = np.stack([np.cov(rng.normal(size=(2, 5))) + np.eye(2) for _ in range(7)])
    models = [cv_model(dt, 0.3, 0.02) for dt in (1, 1, 2, 1, 3, 1, 1)]
    fs, qs = [m[0] for m in models], [m[2] for m in models]
    x, p = kf_predict(xs[0], ps[0], fs[0], qs[0])
    ref_x, ref_p = filterpy.predict(xs[0], ps[0], fs[0], qs[0])
    np.testing.assert_allclose(x, ref_x, rtol=1e-12)
    np.testing.assert_allclose(p, ref_p, rtol=1e-12)
    sx, sp = rts_smooth(xs, ps, fs, qs)
    ref = filterpy.rts_smoother(xs, ps, fs, qs)
    np.testing.assert_allclose(sx, ref[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sp, ref[1], rtol=1e-10, atol=1e-12)
