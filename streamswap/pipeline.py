"""The swap job as a stage graph: source -> analyse -> track -> swap -> sink.

- analyse (batched): faces, 5 keypoints and dense landmarks (and identity embeddings when target
  people are given) for every frame, on the frames' device.
- analyse also flags scene cuts (a frame-difference signal); the tracker restarts its tracks
  there, so no smoothing reaches across a cut.
- track (one worker, in order): Kalman-smoothed tracks (`tracking.Tracker`): causal in live mode,
  RTS-smoothed with look-ahead in file mode (the stage lags by the tracker's window and is
  flushed at the end). The dense landmarks follow the smoothed keypoints rigidly (the similarity
  from raw to smoothed keypoints), so the mask and warp inherit the smoothing.
- swap (batched): the engine on every tracked face bound to a source, then paste-back.

Frames travel as `Frame` records; the stages put what they learn in `Frame.extras` / `faces`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from streamswap.engines.base import Analyser, Swapper
from streamswap.faces.align import transform_points, umeyama
from streamswap.faces.records import FaceBatch
from streamswap.frames import Frame
from streamswap.stream import BatchPolicy, Stage
from streamswap.tracking import Detections, TrackedFace, Tracker, TrackerSettings
from streamswap.tracking.scene_cuts import scene_cuts
from streamswap.transfer import to_host

log = logging.getLogger(__name__)

RAW = "faces_raw"  # Frame.extras key: this frame's analysis (FaceBatch of one frame)
ENDED = "tracks_ended"  # Frame.extras key: ids of tracks that ended by this frame (per-track state can go)
CUT = "scene_cut"  # Frame.extras key: this frame starts a new shot (0-d bool, the frames' device; see AnalyseStep)


@dataclass(frozen=True)
class SwapFace:
    """A face to swap in one frame: its track, smoothed keypoints (5, 2), box (4,) and landmarks
    (L, 2) (host float32, frame pixels), and which source replaces it (index into the sources)."""

    track_id: int
    kps: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray
    source: int


@dataclass(frozen=True)
class PipelineSettings:
    """batch: frames per analyse/swap call; detect_every: run the detector on every Nth frame
    (other frames re-use the tracked boxes; the analyser still fits landmarks); tracker: tracking
    and smoothing; map_to_targets: swap only faces bound to a reference person (source i replaces
    person i), otherwise source 0 replaces every face."""

    batch: int = 8
    tracker: TrackerSettings = TrackerSettings()
    map_to_targets: bool = False
    queue: int = 0  # frames waiting before each stage (0: a batch, at least 2); live jobs keep it at 1

    @property
    def queue_size(self) -> int:
        # Each queued 720p frame is 2.6 MB, but 1-frame queues stall the stages: on nggyup (CPU,
        # batch 2) 8.1 fps against 11.7 with 2-frame queues, for 60 MB less peak RSS.
        return self.queue or max(2, self.batch)


def stack_images(frames: Sequence[Frame]) -> torch.Tensor:
    """Frames' (H, W, 3) images -> (N, 3, H, W) uint8 (a permuted view of one stacked copy)."""
    return torch.stack([f.image for f in frames]).permute(0, 3, 1, 2)


def _one_frame(faces: FaceBatch) -> FaceBatch:
    """Rows of one frame of a batch, as a FaceBatch of that frame alone."""
    return replace(faces, n_frames=1, frame_index=torch.zeros_like(faces.frame_index))


class AnalyseStep:
    """The analyse stage: faces and landmarks of a batch of frames, and whether each frame starts
    a new shot (`scene_cuts` against the frame before, the last of the previous batch: the stage
    runs one worker, in order). The cut flag stays on the frames' device (a 0-d bool in
    `extras[CUT]`) and reaches the host with the track stage's one download."""

    def __init__(self, analyser: Analyser, with_identity: bool) -> None:
        self.analyser, self.with_identity = analyser, with_identity
        self.previous: torch.Tensor | None = None  # (3, H, W): the last frame of the previous batch

    @torch.inference_mode()  # stages run in their own threads: no autograd anywhere in a job
    def __call__(self, frames: list[Frame]) -> list[Frame]:
        images = stack_images(frames)
        faces = self.analyser(images, self.with_identity)
        same_size = self.previous is not None and self.previous.shape == images.shape[1:]
        cuts = scene_cuts(images, self.previous if same_size else None)
        self.previous = frames[-1].image.permute(2, 0, 1)  # the frame's own tensor, not the batch's stacked copy
        out = []
        for i, (frame, own) in enumerate(zip(frames, faces.per_frame(), strict=True)):
            extras = dict(frame.extras)
            extras[RAW] = _one_frame(own)
            extras[CUT] = cuts[i]
            out.append(Frame(frame.index, frame.pts, frame.time_base, frame.image, frame.faces, extras))
        return out


def analyse_stage(analyser: Analyser, settings: PipelineSettings, with_identity: bool) -> Stage:
    """Detect faces and landmarks, and scene cuts, in batches of frames (see AnalyseStep)."""
    return Stage(
        "analyse",
        AnalyseStep(analyser, with_identity),
        BatchPolicy(settings.batch, 0.05),
        queue_size=settings.queue_size,
    )


_HostFaces = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, bool]


def _download(frames: list[Frame]) -> list[_HostFaces]:
    """Each frame's analysis on the host, for the whole batch in one copy: (boxes, kps, scores,
    embeddings or None, landmarks or None, cut) per frame, boxes/kps/scores/embeddings float32
    (the tracker's), landmarks in their own dtype; cut: the frame starts a new shot."""
    raws: list[FaceBatch] = [f.extras[RAW] for f in frames]
    parts = [
        t
        for f, r in zip(frames, raws, strict=True)
        for t in (
            r.boxes.float(),
            r.kps.float(),
            r.scores.float(),
            None if r.embeddings is None else r.embeddings.float(),
            r.landmarks,
            f.extras.get(CUT),
        )
    ]
    host = to_host(parts)
    out: list[_HostFaces] = []
    for i in range(0, len(host), 6):
        boxes, kps, scores, embeddings, landmarks, cut = host[i : i + 6]
        assert boxes is not None and kps is not None and scores is not None  # always present
        out.append((boxes, kps, scores, embeddings, landmarks, bool(cut) if cut is not None else False))
    return out


def _follow(landmarks: np.ndarray, raw_kps: np.ndarray, smooth_kps: np.ndarray) -> np.ndarray:
    """Move landmarks (L, 2) with the similarity that takes raw keypoints to smoothed ones."""
    m = umeyama(torch.from_numpy(raw_kps[None]).double(), torch.from_numpy(smooth_kps[None]).double())
    if not torch.isfinite(m).all():
        return landmarks
    return transform_points(torch.from_numpy(landmarks[None]).double(), m)[0].float().numpy()


class TrackStep:
    """The track stage's state: the tracker, frames held for look-ahead, each track's last
    landmarks (for frames where a track coasts through a gap).

    A 24/7 live job sees faces come and go without end: the landmarks of a track that ended are
    dropped, and its id is passed on in the next output frame's `extras[ENDED]` so the swap stage
    drops the swappers' state for it too (mask hysteresis). Every per-track dictionary stays as
    large as the number of faces on screen."""

    def __init__(self, settings: PipelineSettings, targets: np.ndarray | None) -> None:
        self.settings = settings
        self.tracker = Tracker(settings.tracker, targets)
        self.held: dict[int, Frame] = {}
        self.host: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # held frame -> its (kps, landmarks)
        self.last: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # track -> (raw kps, landmarks)
        self._ended: set[int] = set()  # ended tracks not yet announced downstream

    def __call__(self, frames: list[Frame]) -> list[Frame]:
        ready: list[Frame] = []
        for frame, (boxes, kps, scores, embeddings, landmarks, cut) in zip(frames, _download(frames), strict=True):
            self.held[frame.index] = frame
            self.host[frame.index] = (kps, landmarks)
            dets = Detections(boxes, kps, scores, embeddings)
            pushed = self.tracker.push(frame.index, dets, cut=cut, frame_size=(frame.width, frame.height))
            for index, faces in pushed:
                ready.append(self._resolve(self.held.pop(index), faces))
            self._prune(self.tracker.active_ids())
        return self._announce(ready)

    def flush(self) -> list[Frame]:
        """The frames still held for look-ahead, resolved (end of input)."""
        ready = [self._resolve(self.held.pop(index), faces) for index, faces in self.tracker.flush()]
        self._prune(set())  # the input ended: so did every track
        return self._announce(ready)

    def _prune(self, active: set[int]) -> None:
        """Forget the tracks that can no longer be output (they never come back: new faces get new ids)."""
        gone = [k for k in self.last if k not in active]
        for k in gone:
            del self.last[k]
        self._ended.update(gone)

    def _announce(self, ready: list[Frame]) -> list[Frame]:
        if self._ended and ready:  # on the last frame out: the swap stage has swapped the others by then
            ready[-1].extras[ENDED] = tuple(sorted(self._ended))
            self._ended.clear()
        return ready

    def _resolve(self, frame: Frame, tracked: tuple[TrackedFace, ...]) -> Frame:
        raw_kps, raw_lm = self.host.pop(frame.index)
        faces = []
        for tf in tracked:
            if tf.detection is not None and raw_lm is not None:
                self.last[tf.track_id] = (raw_kps[tf.detection], raw_lm[tf.detection])
            if tf.track_id not in self.last:
                continue
            if self.settings.map_to_targets and tf.target is None:
                continue  # not one of the people to swap
            kps0, lm0 = self.last[tf.track_id]
            faces.append(
                SwapFace(
                    tf.track_id,
                    tf.kps,
                    tf.box,
                    _follow(lm0, kps0, tf.kps),
                    tf.target if self.settings.map_to_targets and tf.target is not None else 0,
                )
            )
        extras = {k: v for k, v in frame.extras.items() if k not in (RAW, CUT)}
        return Frame(frame.index, frame.pts, frame.time_base, frame.image, tuple(faces), extras)


def track_stage(settings: PipelineSettings, targets: np.ndarray | None) -> Stage:
    """Track and smooth faces; lags by the tracker's window in file mode (flushed at the end)."""
    step = TrackStep(settings, targets)
    return Stage("track", step, BatchPolicy(settings.batch, 0.0), queue_size=settings.queue_size, flush=step.flush)


def faces_of(frames: Sequence[Frame], source: int) -> tuple[FaceBatch, list[int]]:
    """The SwapFaces of `frames` replaced by `source`, as a FaceBatch in host memory (where the
    tracker made them: the swapper moves what it needs to the frames' device, computing its crop
    geometry on the host first), and their track ids."""
    rows = [(i, f) for i, frame in enumerate(frames) for f in frame.faces if f.source == source]
    if not rows:
        return FaceBatch.empty(len(frames)), []
    batch = FaceBatch(
        n_frames=len(frames),
        boxes=torch.from_numpy(np.stack([f.box for _, f in rows]).astype(np.float32)),
        scores=torch.ones(len(rows)),
        kps=torch.from_numpy(np.stack([f.kps for _, f in rows]).astype(np.float32)),
        frame_index=torch.from_numpy(np.array([i for i, _ in rows], dtype=np.int64)),
        landmarks=torch.from_numpy(np.stack([f.landmarks for _, f in rows]).astype(np.float32)),
    )
    return batch, [f.track_id for _, f in rows]


def swap_stage(
    swappers: Sequence[Swapper],
    settings: PipelineSettings,
    device: torch.device,
    count: Callable[[int, int, int], None] | None = None,
) -> Stage:
    """Swap every face in batches of frames; `count(frames_with_a_face, faces_swapped,
    faces_skipped_nonfinite)` hears what was done (a swapper's `faces_skipped_nonfinite` counts
    the faces it left alone because the generator gave NaN/Inf). Swappers are told which tracks
    ended (`forget`, from `extras[ENDED]`), so their per-track state stays bounded."""

    @torch.inference_mode()
    def run(frames: list[Frame]) -> list[Frame]:
        images = stack_images(frames).to(device)
        n_faces = n_skipped = 0
        for source, swapper in enumerate(swappers):
            faces, keys = faces_of(frames, source)
            if keys:
                before = swapper.faces_skipped_nonfinite
                images = swapper(images, faces, keys, inplace=True)  # `images` is this stage's own copy
                skipped = swapper.faces_skipped_nonfinite - before
                n_faces += len(keys) - skipped
                n_skipped += skipped
        ended = [k for f in frames for k in f.extras.get(ENDED, ())]
        if ended:
            for swapper in swappers:
                swapper.forget(ended)
        if count is not None:
            count(sum(1 for f in frames if f.faces), n_faces, n_skipped)
        hwc = images.permute(0, 2, 3, 1)
        return [f.with_image(hwc[i].contiguous()) if f.faces else f for i, f in enumerate(frames)]

    return Stage("swap", run, BatchPolicy(settings.batch, 0.05), queue_size=settings.queue_size)
