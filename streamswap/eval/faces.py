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


#: dlib's face chip for its ResNet: size and padding (what compute_face_descriptor(image, shape) uses)
CHIP_SIZE, CHIP_PADDING = 150, 0.25

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
        points, shape = self._shape(image, box)
        desc = None
        if describe:
            desc = _unit(np.asarray(self.identity.model.compute_face_descriptor(image, shape), dtype=np.float32))
        return FaceFit(box.astype(np.float32), points, desc)

    def fit_chip(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(68 points (68, 2) float32, the aligned face chip (150, 150, 3) uint8) of the face in
        `box`: the chip is what the descriptor network reads (`describe_chips` gives exactly the
        descriptor `fit` computes)."""
        points, shape = self._shape(image, box)
        return points, np.asarray(self._dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING))

    def _shape(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, Any]:
        rect = self._dlib.rectangle(*(int(round(float(v))) for v in box))
        shape = self.detector.shape_predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32), shape

    def source(self, path: str | Path) -> FaceFit:
        """The face of a source photo (its largest). InputError for an unreadable file,
        NoFaceError when it has no face."""
        face = self.photo(path)
        if face is None:
            raise NoFaceError(f"no face found in {path}; use a photo with one clearly visible face")
        return face

    def photo(self, path: str | Path) -> FaceFit | None:
        """The largest face of a photo, with its descriptor; None without a face. InputError for
        an unreadable file."""
        from streamswap.faces.image import read_image

        image = np.ascontiguousarray(read_image(path)[0].permute(1, 2, 0).numpy())
        box = self.largest(image)
        return None if box is None else self.fit(image, box)


def _unit(d: np.ndarray) -> np.ndarray:
    return d / max(float(np.linalg.norm(d)), 1e-12)


def _describe_worker(jobs: Any, results: Any) -> None:
    """A descriptor process: (key, chip (150, 150, 3) uint8) from `jobs` -> (key, (128,) float32
    L2-normalised) on `results`, until a None job."""
    from streamswap.faces.lite import DESCRIPTOR, _dlib, lite_model_path

    model = _dlib().face_recognition_model_v1(str(lite_model_path(DESCRIPTOR)))
    while (job := jobs.get()) is not None:
        key, chip = job
        results.put((key, _unit(np.asarray(model.compute_face_descriptor(chip), dtype=np.float32))))


class DescriptorPool:
    """dlib descriptors of face chips computed in `workers` processes beside the caller (dlib
    holds the GIL, so threads would not overlap): `submit(key, chip)`, then `collect()` ->
    {key: (128,) float32}. A context manager; the processes end on exit."""

    def __init__(self, workers: int = 1, backlog: int = 64) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # not fork: the caller holds torch's and FFmpeg's threads
        self._jobs: Any = ctx.Queue(backlog)  # bounded: the caller waits when the workers lag
        self._results: Any = ctx.Queue()
        self._procs = [
            ctx.Process(target=_describe_worker, args=(self._jobs, self._results), daemon=True) for _ in range(workers)
        ]
        for proc in self._procs:
            proc.start()
        self._sent = 0
        self._got: dict[Any, np.ndarray] = {}

    def submit(self, key: Any, chip: np.ndarray) -> None:
        self._drain()
        self._jobs.put((key, chip))
        self._sent += 1

    def _drain(self) -> None:
        import queue

        while True:
            try:
                key, desc = self._results.get_nowait()
            except queue.Empty:
                return
            self._got[key] = desc

    def collect(self) -> dict[Any, np.ndarray]:
        """Every submitted chip's descriptor (waits for the workers; RuntimeError if one died)."""
        import queue

        while len(self._got) < self._sent:
            try:
                key, desc = self._results.get(timeout=1.0)
            except queue.Empty:
                if not all(p.is_alive() for p in self._procs):
                    raise RuntimeError("a face descriptor process ended unexpectedly") from None
                continue
            self._got[key] = desc
        return self._got

    def __enter__(self) -> DescriptorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self._procs:
            try:
                self._jobs.put(None, timeout=1.0)
            except Exception:  # a full queue after an error: the workers are stopped below
                break
        for proc in self._procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
