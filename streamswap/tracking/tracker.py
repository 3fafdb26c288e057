"""Per-face tracks across frames, with Kalman-smoothed keypoints.

A `Tracker` takes each frame's detections (boxes, five keypoints, optional identity embeddings)
and returns, per frame, the faces to swap: one `TrackedFace` per live track, with smoothed
keypoints and box, a stable `track_id` and, when reference embeddings are given, the target
person the track is bound to.

- Association: Hungarian assignment on a cost made of the keypoint distance to the track's
  prediction (in face widths), 1 - IoU of the boxes and, when embeddings exist, 1 - cosine
  similarity. A pair is allowed when the keypoints are close to the prediction (and the identity
  does not contradict), or when the identity alone is convincing (crossings, cuts).
- Hysteresis: a track is confirmed after `min_hits` detections in a row and ends after
  `max_missed` frames without one (it coasts on its prediction meanwhile), or at once when its
  predicted box has left the frame.
- Smoothing: a constant-velocity Kalman filter per track over the 14 coordinates (5 keypoints,
  box). All coordinates share one model and are measured together, so they share one 2x2
  covariance: the state is (2, 14) [position; velocity] and P is (2, 2), kept in units of the
  face width (noise scales with face size). Predict, update and the RTS pass are the textbook
  few lines each, written here for this shape (filterpy's `predict` and `rts_smoother` compute the
  same - a test checks - but importing filterpy.kalman costs every swap process 24 MB). F, H, Q, R
  are built here (filterpy 2.0's `kinematic_kf` builds a wrong H).
- Live mode is causal: frame t's output is the filtered estimate at t (no added latency).
  File mode looks ahead `window` frames: frame t is output once frame t + window has arrived,
  smoothed by Rauch-Tung-Striebel over [t, t + window]. Latency: `window` frames (0.33 s at
  30 fps for the default 10; on nggyup.mp4 a 15-frame window smooths exactly as much, 4.11 px
  mean acceleration either way, and holds 5 more frames in the pipeline); memory: `window` + 1
  states per track.
- Gaps: live mode outputs a lost track's prediction for `coast_output` frames; file mode
  outputs the predictions (smoothed, i.e. interpolated) only for gaps the track comes back from.
- Cuts: a matched face whose keypoints jump further than `max_jump` face widths from the
  prediction, or every face after a caller-signalled cut (`push(..., cut=True)`, e.g. from
  `scene_cuts`), restarts its filter; the smoother never reaches across a restart. At a
  signalled cut only identity can continue a track; tracks it does not continue end, and as many
  new faces (largest first) start confirmed, so the new shot is swapped from its first frame.
  Without a cut signal or embeddings, a cut ends the old track and starts a new one: file mode
  still outputs the new face from the cut frame on (confirmation is known within the window);
  live mode may show up to `coast_output` stale predictions and starts `min_hits` - 1 frames late.

The Kalman maths are in `kalman.py`, the frame-difference cut signal in `scene_cuts.py`; GHOST's
moving-average smoothing (the baseline) and the jitter measures live with the benchmarks
(`streamswap.bench.tracking_metrics`).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamswap.errors import InputError
from streamswap.tracking.kalman import cv_model, kf_predict, kf_update, rts_smooth

if TYPE_CHECKING:
    import torch

    from streamswap.faces.records import FaceBatch

log = logging.getLogger(__name__)

N_COORDS = 14  # 5 keypoints x (x, y) + box (x1, y1, x2, y2)
FACE_WIDTH_PER_SPREAD = 4.0  # face width ~ 4 x RMS distance of the 5 keypoints from their centroid
_FORBIDDEN = 1e6


@dataclass(frozen=True)
class TrackerSettings:
    """How faces are tracked and smoothed. Distances are in face widths (scale-free).

    mode: "live" (causal) or "file" (looks ahead `window` frames, RTS-smoothed).
    window: file-mode look-ahead in frames = output latency; at least `min_hits` - 1 and
        `max_missed` + 1 so tracks are confirmed and gaps known to be bridged before output.
    min_hits: detections in a row that confirm a new track (no output before, in live mode).
    max_missed: frames a confirmed track survives undetected, coasting on its prediction.
    coast_output: live mode only: frames of a gap during which the prediction is still output
        (file mode outputs a gap's predictions only when the track is found again after it).
    max_jump: keypoint distance from the prediction beyond which a detection is not the same
        face by motion; a face matched anyway (by identity, or after a cut) restarts its filter.
    gap_growth: the motion gate widens by this much per frame the track went undetected
        (a prediction through a gap drifts).
    identity_match: cosine similarity at which identity alone matches a detection to a track.
    identity_reject: cosine similarity below which a detection cannot continue a track.
        The defaults suit ArcFace embeddings; dlib's 128-d descriptors (L2-normalised) sit much
        closer together: the lite engine overrides them (`engines.lite.LiteEngine.defaults`).
    identity_weight: weight of (1 - cosine) in the assignment cost.
    target_threshold: cosine similarity a track needs to be bound to a reference person
        (GHOST accepts > 0.15 with ArcFace).
    measurement_noise: keypoint measurement std; accel_noise: process noise, std of the
        acceleration per frame^2; initial_speed: std of a new track's unknown velocity per frame.
    min_visible: a lost track whose predicted box has less than this fraction inside the
        frame has left it and ends at once (needs the frame size in `push`).
    embedding_momentum: weight of the newest embedding in a track's running identity.
    """

    mode: Literal["live", "file"] = "live"
    window: int = 10
    min_hits: int = 3
    max_missed: int = 8
    coast_output: int = 2
    max_jump: float = 0.3
    gap_growth: float = 0.1
    identity_match: float = 0.5
    identity_reject: float = 0.2
    identity_weight: float = 1.0
    target_threshold: float = 0.15
    measurement_noise: float = 0.005
    accel_noise: float = 0.004
    initial_speed: float = 0.1
    min_visible: float = 0.5
    embedding_momentum: float = 0.2

    def __post_init__(self) -> None:
        if self.mode not in ("live", "file"):
            raise InputError(f"tracking mode must be 'live' or 'file', not {self.mode!r}")
        if self.min_hits < 1 or self.max_missed < 0 or self.coast_output < 0:
            raise InputError("tracking: min_hits must be >= 1, max_missed and coast_output >= 0")
        if self.mode == "file" and self.window < max(self.min_hits - 1, self.max_missed + 1):
            raise InputError(
                f"tracking: file-mode window ({self.window}) must be at least min_hits - 1 "
                f"({self.min_hits - 1}) and max_missed + 1 ({self.max_missed + 1})"
            )
        if self.measurement_noise <= 0 or self.accel_noise <= 0 or self.initial_speed <= 0:
            raise InputError("tracking: noise levels must be positive")


@dataclass(frozen=True)
class Detections:
    """The faces detected in one frame, on the host.

    boxes: (K, 4) float x1, y1, x2, y2 px; kps: (K, 5, 2) float px; scores: (K,) or None;
    embeddings: (K, D) float (normalised here) or None.
    """

    boxes: np.ndarray
    kps: np.ndarray
    scores: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = len(self.boxes)
        if np.shape(self.boxes) != (k, 4) or np.shape(self.kps) != (k, 5, 2):
            raise ValueError("Detections: boxes must be (K, 4) and kps (K, 5, 2)")
        if self.embeddings is not None and len(self.embeddings) != k:
            raise ValueError("Detections: embeddings must have one row per face")

    def __len__(self) -> int:
        return len(self.boxes)

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32))

    @staticmethod
    def from_face_batch(batch: FaceBatch) -> list[Detections]:
        """One `Detections` per frame of a `streamswap.faces.records.FaceBatch`."""

        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        boxes, kps, scores = host(batch.boxes), host(batch.kps), host(batch.scores)
        emb = None if batch.embeddings is None else host(batch.embeddings)
        fidx = batch.frame_index.cpu().numpy()
        out = []
        for i in range(batch.n_frames):
            rows = fidx == i
            out.append(Detections(boxes[rows], kps[rows], scores[rows], None if emb is None else emb[rows]))
        return out


@dataclass(frozen=True)
class TrackedFace:
    """One tracked face in one frame (host arrays).

    kps: (5, 2) float32 smoothed keypoints px; box: (4,) float32 smoothed box px;
    detection: row of this frame's `Detections` it came from, None when predicted through a gap;
    target: index of the reference person the track is bound to, or None;
    restarted: the filter (re)started at this frame (new track or cut).
    """

    track_id: int
    frame_index: int
    kps: np.ndarray
    box: np.ndarray
    detection: int | None
    target: int | None
    restarted: bool


FrameFaces = tuple[int, tuple[TrackedFace, ...]]


# ----------------------------------------------------------------------------- the filter


def face_width(kps: np.ndarray) -> np.ndarray:
    """(..., 5, 2) keypoints -> (...) face width estimate px (4 x RMS spread about the centroid)."""
    centred = kps - kps.mean(axis=-2, keepdims=True)
    return np.maximum(FACE_WIDTH_PER_SPREAD * np.sqrt((centred**2).sum(-1).mean(-1)), 1.0)


@dataclass
class _Step:
    """What the filter knew at one frame (file mode keeps the last `window` + 1)."""

    frame_index: int
    x: np.ndarray  # (2, C) filtered
    p: np.ndarray  # (2, 2) filtered, in face widths^2
    f: np.ndarray  # transition from the previous step
    q: np.ndarray
    detection: int | None
    restarted: bool


@dataclass
class _Track:
    track_id: int
    x: np.ndarray
    p: np.ndarray
    width: float
    last_frame: int
    embedding: np.ndarray | None
    hits: int = 1
    missed: int = 0
    confirmed: bool = False
    target: int | None = None
    steps: deque[_Step] = field(default_factory=deque)

    def predicted(self, dt: float, settings: TrackerSettings) -> tuple[np.ndarray, np.ndarray]:
        f, _, q, _ = cv_model(dt, settings.accel_noise, settings.measurement_noise)
        x, _ = kf_predict(self.x, self.p, f, q)
        return x[0, :10].reshape(5, 2), x[0, 10:]


def _measurement(boxes: np.ndarray, kps: np.ndarray) -> np.ndarray:
    return np.concatenate([kps.reshape(-1), boxes.reshape(-1)]).astype(np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (T, 4) and b (K, 4) -> (T, K)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda z: np.clip(z[:, 2] - z[:, 0], 0, None) * np.clip(z[:, 3] - z[:, 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------- the tracker


class Tracker:
    """Tracks faces over a sequence of frames; see the module docstring.

    targets: (P, D) reference embeddings of the people to swap (any scale), or None.
    push(frame_index, detections, cut=False, frame_size=(W, H)) -> outputs now final, as
    (frame_index, faces) pairs in frame order: live mode returns this frame's; file mode the
    frame `window` frames back (none during the first `window` frames). flush() returns the rest.
    """

    def __init__(self, settings: TrackerSettings = TrackerSettings(), targets: np.ndarray | None = None) -> None:
        self.settings = settings
        self.targets = None if targets is None else _unit(np.asarray(targets, dtype=np.float64))
        self._tracks: list[_Track] = []
        self._finished: list[_Track] = []  # file mode: ended tracks whose steps are not all output
        self._pending: deque[int] = deque()  # file mode: frames pushed but not yet output
        self._next_id = 0
        self._last_frame: int | None = None

    # -- public

    def push(
        self, frame_index: int, detections: Detections, *, cut: bool = False, frame_size: tuple[int, int] | None = None
    ) -> list[FrameFaces]:
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise InputError(f"tracker: frame {frame_index} after frame {self._last_frame}; frames must increase")
        self._last_frame = frame_index
        self._step(frame_index, detections, cut, frame_size)
        if self.settings.mode == "live":
            return [(frame_index, self._live_faces(frame_index))]
        self._pending.append(frame_index)
        out = []
        while len(self._pending) > self.settings.window:
            out.append(self._emit(self._pending.popleft()))
        return out

    def flush(self) -> list[FrameFaces]:
        """File mode: the outputs of the frames still held back (live mode: nothing)."""
        out = []
        while self._pending:
            out.append(self._emit(self._pending.popleft()))
        return out

    def active_ids(self) -> set[int]:
        """Ids of the tracks that may still appear in an output (live and, in file mode, ended
        tracks whose held-back frames are not all output). Per-track state kept elsewhere for
        other ids can go: an ended track never comes back (a new face gets a new id)."""
        return {tr.track_id for tr in self._tracks} | {tr.track_id for tr in self._finished}

    def run(
        self, detections: list[Detections], cuts: list[bool] | None = None, frame_size: tuple[int, int] | None = None
    ) -> list[tuple[TrackedFace, ...]]:
        """Track a whole sequence (frames 0..N-1) and return each frame's faces."""
        outputs: list[FrameFaces] = []
        for i, dets in enumerate(detections):
            outputs += self.push(i, dets, cut=bool(cuts[i]) if cuts is not None else False, frame_size=frame_size)
        outputs += self.flush()
        return [faces for _, faces in outputs]

    # -- one frame

    def _step(self, t: int, dets: Detections, cut: bool, frame_size: tuple[int, int] | None) -> None:
        s = self.settings
        kps = np.asarray(dets.kps, dtype=np.float64)
        boxes = np.asarray(dets.boxes, dtype=np.float64)
        emb = None if dets.embeddings is None else _unit(np.asarray(dets.embeddings, dtype=np.float64))
        matches, jumps = self._associate(t, kps, boxes, emb, cut)
        matched_tracks = {ti for ti, _ in matches}
        for ti, di in matches:
            track = self._tracks[ti]
            z = _measurement(boxes[di], kps[di])
            width = float(face_width(kps[di]))
            restart = cut or jumps[ti, di]
            if restart:
                log.debug("track %d restarts at frame %d (%s)", track.track_id, t, "cut" if cut else "jump")
                self._restart(track, t, z, width, di)
            else:
                self._advance(track, t, z, di)
                track.width = 0.8 * track.width + 0.2 * width  # smoothed: the gates are in face widths
            track.hits = track.hits + 1 if track.missed == 0 or restart else 1
            track.missed = 0
            track.confirmed = track.confirmed or track.hits >= s.min_hits
            if emb is not None:
                e = (
                    emb[di]
                    if track.embedding is None
                    else _unit((1 - s.embedding_momentum) * track.embedding + s.embedding_momentum * emb[di])
                )
                track.embedding = e
        survivors = []
        handed_over = 0  # confirmed tracks a cut ended: as many new faces start confirmed
        for ti, track in enumerate(self._tracks):
            if ti not in matched_tracks:
                handed_over += int(cut and track.confirmed)
                if cut or not track.confirmed:
                    self._end(track)  # a cut or a miss ends tentative tracks and tracks no identity found
                    continue
                self._advance(track, t, None, None)
                track.missed += 1
                if track.missed > s.max_missed or self._left_frame(track, frame_size):
                    self._end(track)
                    continue
            survivors.append(track)
        self._tracks = survivors
        matched_dets = {di for _, di in matches}
        new = [di for di in range(len(kps)) if di not in matched_dets]
        # after a cut the shot's faces replace the old ones: the largest take over their confirmation
        new.sort(key=lambda di: -float(face_width(kps[di])))
        for rank, di in enumerate(new):
            self._start(
                t,
                _measurement(boxes[di], kps[di]),
                float(face_width(kps[di])),
                di,
                None if emb is None else emb[di],
                confirmed=rank < handed_over,
            )
        self._bind_targets()

    def _associate(
        self, t: int, kps: np.ndarray, boxes: np.ndarray, emb: np.ndarray | None, cut: bool
    ) -> tuple[list[tuple[int, int]], np.ndarray]:
        s = self.settings
        n_t, n_d = len(self._tracks), len(kps)
        jumps = np.zeros((n_t, n_d), dtype=bool)
        if n_t == 0 or n_d == 0:
            return [], jumps
        pred = [tr.predicted(t - tr.last_frame, s) for tr in self._tracks]
        pred_kps = np.stack([p[0] for p in pred])
        pred_box = np.stack([p[1] for p in pred])
        widths = np.array([tr.width for tr in self._tracks])
        dist = np.linalg.norm(pred_kps[:, None] - kps[None], axis=-1).mean(-1) / widths[:, None]
        gate = s.max_jump + s.gap_growth * np.array([tr.missed for tr in self._tracks], dtype=np.float64)[:, None]
        iou = box_iou(pred_box, boxes)
        sim = np.full((n_t, n_d), np.nan)
        if emb is not None:
            for ti, tr in enumerate(self._tracks):
                if tr.embedding is not None:
                    sim[ti] = emb @ tr.embedding
        known = ~np.isnan(sim)
        by_identity = known & (np.nan_to_num(sim) >= s.identity_match)
        if cut:  # motion says nothing across a cut: only identity can continue a track
            allowed = by_identity
            cost = 1.0 - np.nan_to_num(sim)
        else:
            by_motion = (dist <= gate) & ~(known & (np.nan_to_num(sim, nan=1.0) < s.identity_reject))
            allowed = by_motion | by_identity
            cost = np.minimum(dist, 1.0) + (1.0 - iou) + s.identity_weight * np.where(known, 1.0 - sim, 0.0)
            cost = cost + np.array([0.0 if tr.confirmed else 0.5 for tr in self._tracks])[:, None]
            jumps = dist > gate
        cost = np.where(allowed, cost, _FORBIDDEN)
        rows, cols = linear_sum_assignment(cost)
        matches = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]
        return matches, jumps

    # -- filter steps

    def _start(
        self, t: int, z: np.ndarray, width: float, det: int, emb: np.ndarray | None, confirmed: bool = False
    ) -> None:
        track = _Track(
            self._next_id,
            np.zeros((2, N_COORDS)),
            np.eye(2),
            width,
            t,
            emb,
            confirmed=confirmed or self.settings.min_hits <= 1,
        )
        self._next_id += 1
        self._restart(track, t, z, width, det)
        self._tracks.append(track)

    def _restart(self, track: _Track, t: int, z: np.ndarray, width: float, det: int) -> None:
        s = self.settings
        track.x = np.stack([z, np.zeros_like(z)])
        track.p = np.diag([s.measurement_noise**2, s.initial_speed**2])
        track.width = width
        track.last_frame = t
        eye = np.eye(2)
        self._record(track, _Step(t, track.x.copy(), track.p.copy(), eye, np.zeros((2, 2)), det, True))

    def _advance(self, track: _Track, t: int, z: np.ndarray | None, det: int | None) -> None:
        s = self.settings
        f, h, q, r = cv_model(t - track.last_frame, s.accel_noise, s.measurement_noise)
        track.x, track.p = kf_predict(track.x, track.p, f, q)
        if z is not None:
            track.x, track.p = kf_update(track.x, track.p, z, h, r)
        track.last_frame = t
        self._record(track, _Step(t, track.x.copy(), track.p.copy(), f, q, det, False))

    def _record(self, track: _Track, step: _Step) -> None:
        if self.settings.mode == "file":
            track.steps.append(step)
        else:
            track.steps = deque([step], maxlen=1)

    def _end(self, track: _Track) -> None:
        if self.settings.mode == "file" and track.confirmed and track.steps:
            self._finished.append(track)

    def _left_frame(self, track: _Track, frame_size: tuple[int, int] | None) -> bool:
        if frame_size is None:
            return False
        x1, y1, x2, y2 = track.x[0, 10:]
        w, h = frame_size
        area = max(x2 - x1, 1e-9) * max(y2 - y1, 1e-9)
        inside = max(min(x2, w) - max(x1, 0.0), 0.0) * max(min(y2, h) - max(y1, 0.0), 0.0)
        return inside / area < self.settings.min_visible

    def _bind_targets(self) -> None:
        """Bind each reference person to at most one confirmed track, keeping bindings that still hold."""
        if self.targets is None:
            return
        thr = self.settings.target_threshold
        live = [tr for tr in self._tracks if tr.confirmed and tr.embedding is not None]
        taken: set[int] = set()
        for tr in live:
            if tr.target is not None and float(tr.embedding @ self.targets[tr.target]) > thr:
                taken.add(tr.target)
            else:
                tr.target = None
        free = [tr for tr in live if tr.target is None]
        if not free:
            return
        sim = np.stack([self.targets @ tr.embedding for tr in free])
        pairs = sorted(((sim[i, p], i, p) for i in range(len(free)) for p in range(len(self.targets))), reverse=True)
        for value, i, p in pairs:
            if value > thr and p not in taken and free[i].target is None:
                free[i].target = p
                taken.add(p)

    # -- outputs

    def _face(self, track: _Track, step: _Step, x: np.ndarray) -> TrackedFace:
        return TrackedFace(
            track.track_id,
            step.frame_index,
            x[0, :10].reshape(5, 2).astype(np.float32),
            x[0, 10:].astype(np.float32),
            step.detection,
            track.target,
            step.restarted,
        )

    def _live_faces(self, t: int) -> tuple[TrackedFace, ...]:
        out = []
        for tr in self._tracks:
            if tr.confirmed and tr.last_frame == t and tr.missed <= self.settings.coast_output:
                out.append(self._face(tr, tr.steps[-1], tr.steps[-1].x))
        return tuple(out)

    def _emit(self, t: int) -> FrameFaces:
        """File mode: frame t's faces, RTS-smoothed over the steps up to the next restart."""
        faces = []
        for tr in self._tracks + self._finished:
            if not tr.steps or tr.steps[0].frame_index != t:
                continue
            steps = list(tr.steps)
            tr.steps.popleft()
            if not tr.confirmed:
                continue
            span = 1
            while span < len(steps) and not steps[span].restarted:
                span += 1
            steps = steps[:span]
            if steps[0].detection is None and all(st.detection is None for st in steps[1:]):
                continue  # a gap the track never came back from: the face is gone, output nothing
            xs = np.stack([st.x for st in steps])
            ps = np.stack([st.p for st in steps])
            if len(steps) > 1:
                fs = [st.f for st in steps[1:]] + [steps[-1].f]
                qs = [st.q for st in steps[1:]] + [steps[-1].q]
                xs, _ = rts_smooth(xs, ps, fs, qs)
            faces.append(self._face(tr, steps[0], xs[0]))
        self._finished = [tr for tr in self._finished if tr.steps]
        return t, tuple(sorted(faces, key=lambda f: f.track_id))
