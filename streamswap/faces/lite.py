"""The lite face backend: dlib's HOG detector, 68-point landmarks and 128-d face descriptor.

For machines without the published ONNX models (CPU only; dlib-bin and face-recognition-models
from PyPI). Same interfaces as the ONNX backend: `DlibDetector.detect(frames)` -> FaceBatch
(with 68 landmarks and the five ArcFace keypoints derived from them) and
`DlibIdentity.embed(frames, faces)` -> (K, 128) L2-normalised. It loops over frames inside.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamswap.errors import InputError, ModelError
from streamswap.faces.detect import check_frames
from streamswap.faces.records import FaceBatch

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
LITE_INSTALL = "pip install dlib-bin face-recognition-models"
# dlib's rule "same person when the descriptors are < 0.6 apart", on its descriptors of norm ~1.45,
# is about this cosine on the normalised ones (GHOST's 0.15 is for ArcFace embeddings)
LITE_MATCH_THRESHOLD = 0.92


def _dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError as exc:
        raise ModelError(f"the lite face backend needs dlib: `{LITE_INSTALL}`") from exc


def lite_model_path(name: str) -> Path:
    """Path of one of face-recognition-models' .dat files. The package is not imported: it
    imports pkg_resources, which setuptools >= 81 no longer ships."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the lite face backend needs face-recognition-models: `{LITE_INSTALL}`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall face-recognition-models")
    return path


def kps_from_68(points: torch.Tensor) -> torch.Tensor:
    """iBUG 68 points (K, 68, 2) -> ArcFace keypoints (K, 5, 2): image-left eye centre (36-41),
    image-right eye centre (42-47), nose tip (30), mouth corners (48, 54)."""
    return torch.stack(
        [points[:, 36:42].mean(1), points[:, 42:48].mean(1), points[:, 30], points[:, 48], points[:, 54]], dim=1
    )


def _host_frames(frames: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, H, W, 3) contiguous numpy on the host (dlib's layout)."""
    return np.ascontiguousarray(frames.detach().permute(0, 2, 3, 1).cpu().numpy())


@dataclass(frozen=True)
class LiteSettings:
    """upsample: HOG image pyramid upsampling (1 finds faces down to ~40 px, 4x slower than 0);
    score_threshold: HOG SVM margin a face must exceed (dlib's adjust_threshold, default 0);
    max_faces: most faces kept per frame, by score (0 = all)."""

    upsample: int = 1
    score_threshold: float = 0.0
    max_faces: int = 0
    max_side: int = 0  # run HOG on frames shrunk to this longest side (0: full size); landmarks use full size

    def __post_init__(self) -> None:
        if not 0 <= self.upsample <= 3 or self.max_faces < 0 or self.max_side < 0:
            raise InputError("lite detector: upsample must be 0..3, max_faces >= 0 and max_side >= 0")


class DlibDetector:
    """HOG face detector + 68-point shape predictor on batches of frames.

    detect(frames (N, 3, H, W) uint8 RGB) -> FaceBatch on the frames' device with boxes, HOG
    scores, kps (5, 2) and landmarks (68, 2), all in frame pixels.
    """

    def __init__(self, settings: LiteSettings = LiteSettings()) -> None:
        dlib = _dlib()
        self.settings = settings
        self._rect = dlib.rectangle
        self.hog = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(str(lite_model_path(LANDMARKS_68)))

    def _shape(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        rect = self._rect(*(int(round(float(v))) for v in box))
        shape = self.shape_predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _hog(self, image: np.ndarray) -> tuple[list[Any], list[float], float]:
        """HOG on the image, shrunk to `max_side` if set; returns rects, scores, and the scale
        that maps rect coordinates back to the image."""
        side = self.settings.max_side
        scale = 1.0
        if side and max(image.shape[:2]) > side:
            import cv2

            scale = max(image.shape[:2]) / side
            size = (round(image.shape[1] / scale), round(image.shape[0] / scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        rects, found, _ = self.hog.run(image, self.settings.upsample, self.settings.score_threshold)
        return rects, found, scale

    def detect(self, frames: torch.Tensor) -> FaceBatch:
        check_frames(frames)
        boxes, scores, shapes, index = [], [], [], []
        for i, image in enumerate(_host_frames(frames)):
            rects, found, scale = self._hog(image)
            order = np.argsort(-np.asarray(found, dtype=np.float64), kind="stable")
            if self.settings.max_faces:
                order = order[: self.settings.max_faces]
            for j in order:
                r = rects[int(j)]
                box = np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float32) * scale
                boxes.append(box)
                scores.append(found[int(j)])
                shapes.append(self._shape(image, box))
                index.append(i)
        if not boxes:
            return FaceBatch.empty(frames.shape[0], frames.device).with_landmarks(
                torch.zeros((0, 68, 2), dtype=torch.float32, device=frames.device)
            )
        dev = frames.device
        lmk = torch.from_numpy(np.stack(shapes)).to(dev)
        return FaceBatch(
            n_frames=frames.shape[0],
            boxes=torch.from_numpy(np.stack(boxes)).to(dev),
            scores=torch.tensor(scores, dtype=torch.float32, device=dev),
            kps=kps_from_68(lmk),
            frame_index=torch.tensor(index, dtype=torch.int64, device=dev),
            landmarks=lmk,
        )

    __call__ = detect

    def fit(self, frames: torch.Tensor, boxes: torch.Tensor, frame_index: torch.Tensor) -> FaceBatch:
        """Landmarks for known boxes, without detecting (frames between detections: the boxes
        come from the previous frame's landmarks). frames (N, 3, H, W) uint8; boxes (K, 4)
        frame pixels; frame_index (K,). Returns a FaceBatch (scores 1) on the frames' device."""
        check_frames(frames)
        dev = frames.device
        if boxes.shape[0] == 0:
            return FaceBatch.empty(frames.shape[0], dev).with_landmarks(
                torch.zeros((0, 68, 2), dtype=torch.float32, device=dev)
            )
        images = _host_frames(frames)
        host_boxes = boxes.detach().cpu().numpy()
        shapes = [self._shape(images[i], b) for i, b in zip(frame_index.tolist(), host_boxes, strict=True)]
        lmk = torch.from_numpy(np.stack(shapes)).to(dev)
        return FaceBatch(
            n_frames=frames.shape[0],
            boxes=boxes.to(dev, torch.float32),
            scores=torch.ones(len(shapes), dtype=torch.float32, device=dev),
            kps=kps_from_68(lmk),
            frame_index=frame_index.to(dev),
            landmarks=lmk,
        )


class DlibIdentity:
    """dlib's ResNet face descriptor: embed(frames, faces) -> (K, 128) float32, L2-normalised,
    on the frames' device. Uses each face's box (its 68 points are re-fitted on it)."""

    dim = 128

    def __init__(self, detector: DlibDetector | None = None) -> None:
        dlib = _dlib()
        self.detector = detector or DlibDetector()
        self.model = dlib.face_recognition_model_v1(str(lite_model_path(DESCRIPTOR)))

    def embed(self, frames: torch.Tensor, faces: FaceBatch) -> torch.Tensor:
        check_frames(frames)
        out = torch.zeros((len(faces), self.dim), dtype=torch.float32)
        if len(faces) == 0:
            return out.to(frames.device)
        images = _host_frames(frames)
        boxes = faces.boxes.detach().cpu().numpy()
        fidx = faces.frame_index.cpu().tolist()
        for row, (i, box) in enumerate(zip(fidx, boxes, strict=True)):
            image = images[i]
            rect = self.detector._rect(*(int(round(float(v))) for v in box))
            shape = self.detector.shape_predictor(image, rect)
            out[row] = torch.tensor(list(self.model.compute_face_descriptor(image, shape)), dtype=torch.float32)
        return torch.nn.functional.normalize(out, dim=1).to(frames.device)
