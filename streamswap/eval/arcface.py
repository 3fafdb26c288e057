"""Identity with the recogniser the ghost engine uses: GHOST's IResNet-100 ArcFace backbone
(`backbone.pth` from the model cache), on GHOST's aligned crop of 5 keypoints taken from dlib's
68 landmarks (`faces.identity.TorchArcFace`, as the ghost engine embeds). `eval --recogniser
auto` takes it when the backbone is in the cache, dlib's 128-D descriptor otherwise."""

from __future__ import annotations

import numpy as np
import torch

#: The name the JSON report gives this recogniser.
ARCFACE = "ghost_arcface_iresnet100"


def five_points(points: np.ndarray) -> np.ndarray:
    """ArcFace's 5 keypoints (5, 2) from dlib's 68 (68, 2): the eye centres (36-41, 42-47, image
    left first), the nose tip (30) and the mouth corners (48, 54), as insightface orders them."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]]).astype(
        np.float32
    )


class ArcFaceRecogniser:
    """embed(image (H, W, 3) uint8 RGB numpy, points (68, 2) frame pixels) -> (512,) float32,
    L2-normalised, with `module` (an IResNet; float32 on the CPU)."""

    def __init__(self, module: torch.nn.Module, name: str = ARCFACE) -> None:
        from streamswap.faces.identity import TorchArcFace

        self.net = TorchArcFace(module, "cpu", fp16=False)
        self.name = name

    @classmethod
    def from_cache(cls) -> ArcFaceRecogniser | None:
        """GHOST's backbone from the model cache (verified as every cached model), or None when
        it is not there."""
        from streamswap.models.registry import Registry, RegistryConfig
        from streamswap.models.weights import build_model

        registry = Registry(RegistryConfig.from_env())
        path = registry.find(registry.spec("backbone"))
        return None if path is None else cls(build_model("backbone", path))

    def embed(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        from streamswap.faces.records import FaceBatch

        kps = torch.from_numpy(five_points(points))[None]
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        faces = FaceBatch(
            n_frames=1,
            boxes=torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32),
            scores=torch.ones(1),
            kps=kps,
            frame_index=torch.zeros(1, dtype=torch.int64),
        )
        frames = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            out = self.net.embed(frames, faces)[0]
        return out.float().numpy()
