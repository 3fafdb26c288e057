"""What the jitter benchmark measures: GHOST's moving-average keypoint smoothing (the baseline)
and the jitter and lag of a smoothed keypoint sequence (`mean_acceleration`, `velocity_lag`,
`ramp_lag`), over the segments a track covers (`track_segments`)."""

from __future__ import annotations

import numpy as np

from streamswap.tracking import TrackedFace


def ghost_smooth(kps: np.ndarray, valid: np.ndarray, half_window: int = 2, jump: float = 5.0) -> np.ndarray:
    """GHOST's keypoint smoothing (the baseline): split the sequence where keypoint 0 or 2 moves
    more than `jump` px between consecutive frames (or a frame has no face), and inside each
    segment replace each frame by the mean over +-`half_window` frames, shrunk at segment ends.

    kps: (T, 5, 2) px; valid: (T,) bool (False: no face in that frame). Returns (T, 5, 2).
    """
    out = np.array(kps, dtype=np.float64, copy=True)
    t_len = len(kps)
    start = 0
    for t in range(1, t_len + 1):
        boundary = (
            t == t_len
            or not valid[t]
            or not valid[t - 1]
            or np.linalg.norm(kps[t, 0] - kps[t - 1, 0]) > jump
            or np.linalg.norm(kps[t, 2] - kps[t - 1, 2]) > jump
        )
        if not boundary:
            continue
        if valid[start]:
            seg = np.asarray(kps[start:t], dtype=np.float64)
            csum = np.concatenate([np.zeros((1, 5, 2)), np.cumsum(seg, axis=0)])
            idx = np.arange(len(seg))
            lo, hi = np.maximum(idx - half_window, 0), np.minimum(idx + half_window + 1, len(seg))
            out[start:t] = (csum[hi] - csum[lo]) / (hi - lo)[:, None, None]
        start = t
    return out


def mean_acceleration(kps: np.ndarray, segment: np.ndarray) -> float:
    """Mean keypoint acceleration px/frame^2: |k[t+1] - 2 k[t] + k[t-1]| averaged over keypoints
    and over the frames t where t-1, t and t+1 lie in the same segment (segment ids >= 0; -1 =
    no face). Segments end at cuts, so a cut's jump does not count as jitter.
    kps (T, P, 2); segment (T,) int."""
    seg = np.asarray(segment)
    acc = kps[2:] - 2 * kps[1:-1] + kps[:-2]
    ok = (seg[2:] >= 0) & (seg[2:] == seg[1:-1]) & (seg[1:-1] == seg[:-2])
    return float(np.linalg.norm(acc[ok], axis=-1).mean())


def track_segments(faces: list[tuple[TrackedFace, ...]], track_ids: set[int] | None = None) -> np.ndarray:
    """(T,) segment ids for `mean_acceleration`: per frame, the first face of `track_ids` (all
    tracks when None) gets the id of its (track, restart) span; -1 where there is none or it was
    predicted through a gap rather than detected."""
    seg = np.full(len(faces), -1, dtype=np.int64)
    keys: dict[tuple[int, int], int] = {}
    epoch: dict[int, int] = {}
    for t, frame in enumerate(faces):
        for face in frame:
            if track_ids is not None and face.track_id not in track_ids:
                continue
            if face.restarted or face.track_id not in epoch:
                epoch[face.track_id] = epoch.get(face.track_id, -1) + 1
            if face.detection is not None:
                seg[t] = keys.setdefault((face.track_id, epoch[face.track_id]), len(keys))
            break
    return seg


def velocity_lag(smoothed: np.ndarray, raw: np.ndarray, valid: np.ndarray, max_lag: int = 6) -> float:
    """Lag in frames of `smoothed` behind `raw` (positive: smoothed is late), from the peak of the
    cross-correlation of their frame-to-frame velocities, refined to sub-frame by a parabola
    through the peak and its neighbours. (T, P, 2) arrays, valid (T,) bool."""
    ok = valid[1:] & valid[:-1]
    vs = np.where(ok[:, None, None], smoothed[1:] - smoothed[:-1], 0.0).reshape(len(ok), -1)
    vr = np.where(ok[:, None, None], raw[1:] - raw[:-1], 0.0).reshape(len(ok), -1)
    vs, vr = vs - vs[ok].mean(0), vr - vr[ok].mean(0)
    lags = np.arange(-max_lag, max_lag + 1)
    corr = []
    for lag in range(-max_lag, max_lag + 1):  # the values of `lags`, as ints; corr(lag) = sum_t vs[t + lag] . vr[t]
        a = vs[max(lag, 0) : len(vs) + min(lag, 0)]
        b = vr[max(-lag, 0) : len(vr) + min(-lag, 0)]
        corr.append(float((a * b).sum()))
    c = np.array(corr)
    i = int(np.argmax(c))
    if 0 < i < len(c) - 1:
        denom = c[i - 1] - 2 * c[i] + c[i + 1]
        shift = 0.5 * (c[i - 1] - c[i + 1]) / denom if denom != 0 else 0.0
        return float(lags[i] + shift)
    return float(lags[i])


def ramp_lag(smoothed: np.ndarray, truth: np.ndarray, velocity: np.ndarray, skip: int = 20) -> float:
    """Lag in frames on a constant-velocity ramp: mean of (truth - smoothed) . v / |v|^2 over the
    frames after the first `skip` (start-up) and before the last `skip` (file-mode tail).
    smoothed, truth: (T, P, 2); velocity: (2,) px/frame."""
    d = (truth - smoothed)[skip : len(truth) - skip]
    return float((d @ velocity).mean() / float(velocity @ velocity))
