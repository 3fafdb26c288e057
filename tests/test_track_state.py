"""24/7 live jobs: the per-track state of the track stage (each track's last landmarks) and of the
swappers (mask hysteresis) is dropped when tracks end, so it stays as large as the number of faces
on screen however many faces came and went. Drives the real track and swap stages with a long
synthetic sequence of faces entering and leaving."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from streamswap.engines.ghost import GhostSwapper
from streamswap.engines.lite import LiteSwapper
from streamswap.faces.records import FaceBatch
from streamswap.frames import Frame
from streamswap.masks import IBUG_68, AdaptiveMasker, MaskSettings, landmark_offset
from streamswap.pipeline import ENDED, RAW, PipelineSettings, TrackStep, swap_stage
from streamswap.tracking import TrackerSettings

W, H = 640, 480
LIFE, EVERY, SLOTS, FRAMES = 25, 7, 5, 500  # a face stays 25 frames; a new one every 7, in 5 places
CANON = np.array([[-0.17, -0.1], [0.17, -0.1], [0.0, 0.05], [-0.14, 0.2], [0.14, 0.2]], np.float32)


def _faces_at(t: int) -> list[int]:
    return [j for j in range(t // EVERY + 1) if j * EVERY <= t < j * EVERY + LIFE]


def _raw(t: int) -> FaceBatch:
    rows = _faces_at(t)
    centres = np.array([[60 + (j % SLOTS) * 120, 240] for j in rows], np.float32).reshape(-1, 2)
    size = 80.0
    kps = centres[:, None] + CANON[None] * size
    boxes = np.concatenate([centres - size / 2, centres + size / 2], 1)
    lm = centres[:, None] + np.linspace(-size / 2, size / 2, 68 * 2, dtype=np.float32).reshape(1, 68, 2) * 0.8
    k = len(rows)
    return FaceBatch(1, torch.from_numpy(boxes).reshape(k, 4), torch.ones(k), torch.from_numpy(kps).reshape(k, 5, 2),
                     torch.zeros(k, dtype=torch.int64), torch.from_numpy(lm).reshape(k, 68, 2))


class MaskingSwapper:
    """A swapper that keeps the real per-track state (an AdaptiveMasker's level hysteresis, fed
    the landmark offsets as the engines do; no mask is rasterised) and pastes nothing."""

    def __init__(self) -> None:
        self.masker = AdaptiveMasker(MaskSettings(scheme=IBUG_68, size=32))
        self.peak = 0
        self.faces_skipped_nonfinite = 0

    def __call__(self, frames, faces, keys, *, inplace=False):
        lm = faces.landmarks - faces.boxes[:, None, :2]
        self.masker.hysteresis.update(keys, landmark_offset(lm, lm, IBUG_68))
        self.peak = max(self.peak, len(self.masker.hysteresis._state))
        return frames

    def forget(self, keys):
        self.masker.forget(keys)


def test_the_swappers_can_forget_ended_tracks():
    assert callable(getattr(GhostSwapper, "forget", None)) and callable(getattr(LiteSwapper, "forget", None))


@pytest.mark.parametrize("mode", ["live", "file"])
def test_per_track_state_stays_bounded_as_faces_come_and_go(mode):
    settings = PipelineSettings(batch=2, tracker=TrackerSettings(mode=mode, window=10, min_hits=3, max_missed=8))
    step = TrackStep(settings, None)
    swapper = MaskingSwapper()
    counted = []
    swap = swap_stage([swapper], settings, torch.device("cpu"), lambda *c: counted.append(c))
    image = torch.zeros((H, W, 3), dtype=torch.uint8)
    seen: set[int] = set()
    announced: list[int] = []
    peak_last = 0

    def downstream(frames: list[Frame]) -> None:
        for f in frames:
            seen.update(face.track_id for face in f.faces)
            announced.extend(f.extras.get(ENDED, ()))
        if frames:
            swap.fn(frames)

    for t in range(0, FRAMES, 2):
        batch = [Frame(i, i, Fraction(1, 25), image, extras={RAW: _raw(i)}) for i in (t, t + 1)]
        downstream(step(batch))
        peak_last = max(peak_last, len(step.last))
    downstream(step.flush())

    faces_total = FRAMES // EVERY
    assert len(seen) >= 0.9 * faces_total  # ~100 faces entered and left (a new track each)
    concurrent = (LIFE + settings.tracker.max_missed) // EVERY + 1  # on screen, or coasting before they end
    assert peak_last <= concurrent, (peak_last, concurrent)
    assert swapper.peak <= concurrent + 1, (swapper.peak, concurrent)
    # every track that ended was announced once; only those alive when the input ended were not
    # (a live flush has no frame left to carry them: the job is over, its state goes with it)
    assert len(announced) == len(set(announced)) and set(announced) <= seen
    assert len(seen - set(announced)) <= concurrent
    assert step.last == {}
    assert set(swapper.masker.hysteresis._state) == seen - set(announced)
    assert sum(c[1] for c in counted) > 0 and all(c[2] == 0 for c in counted)
