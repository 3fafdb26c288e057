"""The faces eval compares: dlib's face, 68 landmarks and descriptor on the original, and on each
output the landmarks and descriptor fitted in the original's face box (the swap must keep the
face where it was, so the box is the original's, never a detection on the output)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamswap.errors import NoFaceError

#: What the identity similarities are measured with (named in the JSON report).
RECOGNISER = "dlib_resnet_128"


@dataclass(frozen=True)
class FaceFit:
    """One face in one frame: box (4,) x0, y0, x1, y1 frame pixels; points (68, 2) float32 frame
    pixels; descriptor (128,) float32, L2-normalised (None when not asked for)."""

    box: np.ndarray
    points: np.ndarray
    descriptor: np.ndarray | None

    @property
    def size(self) -> float:
        """The box's side (mean of width and height), pixels."""
        return float((self.box[2] - self.box[0] + self.box[3] - self.box[1]) / 2)


#: The face size (pixels) HOG is run at when it looks near the previous frame's face (its
#: smallest face at upsample 0 is ~80 pixels).
NEAR_FACE = 120


def _largest(rects: Any, scale: float, x0: float, y0: float) -> np.ndarray | None:
    """The largest of dlib's rectangles, scaled by `scale` and moved by (x0, y0), as (4,) float32."""
    if not rects:
        return None
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32) * scale
    boxes += np.array([x0, y0, x0, y0], np.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[int(np.argmax(area))]


class FaceAnalyser:
    """dlib HOG detection (frames shrunk to `max_side` for it), the 68-point shape predictor and
    the ResNet descriptor, on (H, W, 3) uint8 RGB numpy frames."""

    def __init__(self, max_side: int = 640, upsample: int = 1) -> None:
        from streamswap.faces.lite import DlibDetector, DlibIdentity, LiteSettings

        self.detector = DlibDetector(LiteSettings(upsample=upsample, max_side=max_side))
        self.identity = DlibIdentity(self.detector)
        import dlib

        self._dlib: Any = dlib

    def largest(self, image: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The largest face's box (4,) float32 in frame pixels, or None. With `near` (the box
        found in the frame before), HOG first looks only around it, in a crop shrunk so the face
        is ~`NEAR_FACE` pixels (7-10x cheaper than the whole frame); the whole frame when that fails."""
        if near is not None:
            box = self._near(image, near)
            if box is not None:
                return box
        rects, _, scale = self.detector._hog(image)
        return _largest(rects, scale, 0.0, 0.0)

    def _near(self, image: np.ndarray, near: np.ndarray) -> np.ndarray | None:
        import cv2

        side = float(max(near[2] - near[0], near[3] - near[1]))
        h, w = image.shape[:2]
        x0, y0 = max(0, int(near[0] - 0.6 * side)), max(0, int(near[1] - 0.6 * side))
        x1, y1 = min(w, int(near[2] + 0.6 * side) + 1), min(h, int(near[3] + 0.6 * side) + 1)
        scale = max(1.0, side / NEAR_FACE)
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        if scale > 1.0:
            crop = cv2.resize(
                crop, (round(crop.shape[1] / scale), round(crop.shape[0] / scale)), interpolation=cv2.INTER_AREA
            )
        rects, _, _ = self.detector.hog.run(crop, 0, self.detector.settings.score_threshold)
        return _largest(rects, scale, x0, y0)

    def fit(self, image: np.ndarray, box: np.ndarray, describe: bool = True) -> FaceFit:
        """68 points (and the descriptor) of the face in `box` of `image`."""
        rect = self._dlib.rectangle(*(int(round(float(v))) for v in box))
        shape = self.detector.shape_predictor(image, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        desc = None
        if describe:
            d = np.asarray(self.identity.model.compute_face_descriptor(image, shape), dtype=np.float32)
            desc = d / max(float(np.linalg.norm(d)), 1e-12)
        return FaceFit(box.astype(np.float32), points, desc)

    def source(self, path: str | Path) -> FaceFit:
        """The face of a source photo (its largest). InputError for an unreadable file,
        NoFaceError when it has no face."""
        from streamswap.faces.image import read_image

        image = np.ascontiguousarray(read_image(path)[0].permute(1, 2, 0).numpy())
        box = self.largest(image)
        if box is None:
            raise NoFaceError(f"no face found in {path}; use a photo with one clearly visible face")
        return self.fit(image, box)
