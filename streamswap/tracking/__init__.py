"""Per-face tracks across frames, with Kalman-smoothed keypoints (see `tracker.py`).

- kalman.py: the constant-velocity Kalman filter and the RTS smoother;
- tracker.py: association, hysteresis and smoothing of tracks (`Tracker`);
- scene_cuts.py: the frame-difference cut signal.
"""

from streamswap.tracking.kalman import cv_model, kf_predict, kf_update, rts_smooth
from streamswap.tracking.scene_cuts import scene_cuts
from streamswap.tracking.tracker import Detections, TrackedFace, Tracker, TrackerSettings, box_iou, face_width

__all__ = [
    "Detections",
    "TrackedFace",
    "Tracker",
    "TrackerSettings",
    "box_iou",
    "cv_model",
    "face_width",
    "kf_predict",
    "kf_update",
    "rts_smooth",
    "scene_cuts",
]
