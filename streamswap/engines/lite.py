"""The lite engine: a landmark-driven face swap that needs no learned generator.

For each target face: align a loose crop around it (five keypoints -> a scaled ArcFace template),
warp the source face's texture onto the target's 68-landmark geometry piecewise-affinely
(`piecewise_affine`), match its colour to the target inside the mask, mask it with the same
adaptive, hysteresis-stable mask as the ghost engine (iBUG-68 scheme), keep the target's mouth
interior where the target's mouth is open and the source's is closed, and paste it back.

It is a fallback for machines without the published GHOST weights, not GHOST quality: the
expression and lighting of the source photo are carried along, only the shape follows the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from streamswap.blend import match_colour, paste_back
from streamswap.engines.base import EngineDefaults, EngineModels, EngineSession, SourceIdentity, threshold_of
from streamswap.engines.piecewise_affine import INNER_MOUTH, sample, triangulate, warp_maps, with_support_points
from streamswap.errors import InputError
from streamswap.faces.align import ARCFACE_112, transform_points, umeyama, warp_crops
from streamswap.faces.identity import chosen_face
from streamswap.faces.lite import DESCRIPTOR, LANDMARKS_68, LITE_MATCH_THRESHOLD, DlibDetector, DlibIdentity
from streamswap.faces.records import FaceBatch
from streamswap.masks import IBUG_68, AdaptiveMasker, MaskSettings, hull_mask

if TYPE_CHECKING:
    from streamswap.checks import Check
    from streamswap.models.registry import Registry
    from streamswap.options import SwapOptions

LITE_FIX = "pip install 'streamswap[lite]' (dlib-bin, face-recognition-models)"

# Mouth corners and inner-lip pairs (upper, lower) in the iBUG 68 layout.
_MOUTH_CORNERS = (60, 64)
_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


@dataclass(frozen=True)
class LiteSwapSettings:
    """crop: side of the working crop (px); zoom: face size in the crop relative to ArcFace's
    template (smaller leaves room for forehead and jaw); colour_match: match Lab mean/std to the
    target inside the mask; mouth_open: inner-lip gap / mouth width above which a mouth is open;
    hysteresis_frames: frames that must agree before a mask changes."""

    crop: int = 256
    zoom: float = 0.62
    colour_match: bool = True
    mouth_open: float = 0.12
    hysteresis_frames: int = 5

    def __post_init__(self) -> None:
        if self.crop < 64 or not 0.2 <= self.zoom <= 1.0:
            raise InputError("lite engine: crop must be >= 64 and zoom in [0.2, 1]")


@dataclass(frozen=True)
class SourceFace:
    """The face to put everywhere: its image (3, H, W) float32 [0, 255], its support points
    (P, 2) in image pixels, the triangles over them (T, 3) int64, and whether its mouth is open."""

    image: torch.Tensor
    points: torch.Tensor
    triangles: torch.Tensor
    mouth_open: bool


def mouth_openness(landmarks: torch.Tensor) -> torch.Tensor:
    """Inner-lip gap over inner mouth width. landmarks (K, 68, 2) -> (K,) float."""
    width = (landmarks[:, _MOUTH_CORNERS[0]] - landmarks[:, _MOUTH_CORNERS[1]]).norm(dim=-1).clamp_min(1e-3)
    gaps = torch.stack([(landmarks[:, a] - landmarks[:, b]).norm(dim=-1) for a, b in _LIP_PAIRS], -1)
    return gaps.mean(-1) / width


def prepare_source(
    image: torch.Tensor,
    faces: FaceBatch,
    index: int | None = None,
    settings: LiteSwapSettings = LiteSwapSettings(),
    what: str = "the source image",
) -> SourceFace:
    """Pick the source face and precompute what every swap needs.

    image: (1, 3, H, W) uint8 RGB; faces: its detections with 68 landmarks. With several faces,
    `index` (0-based, left to right) must say which one. Raises NoFaceError / InputError.
    """
    face = chosen_face(faces, index, what)
    if face.landmarks is None or face.landmarks.shape[1] != 68:
        raise InputError("the lite engine needs 68-point landmarks (the lite face analysis)")
    lm = face.landmarks[0].float()
    points = with_support_points(lm)
    return SourceFace(
        image=image[0].float(),
        points=points,
        triangles=torch.from_numpy(triangulate(points.cpu().numpy())).to(points.device),
        mouth_open=bool(mouth_openness(lm[None])[0] > settings.mouth_open),
    )


@dataclass(frozen=True)
class LiteCrops:
    """Target faces in the lite crop: m (K, 2, 3) frame -> crop matrices, landmarks (K, 68, 2)
    crop pixels, frame_index (K,), target (K, 3, s, s) float [0, 255] (the frames' pixels)."""

    m: torch.Tensor
    landmarks: torch.Tensor
    frame_index: torch.Tensor
    target: torch.Tensor


class LiteSwapper:
    """Swaps one source face onto batches of target faces.

    __call__(frames (N, 3, H, W) uint8 RGB, faces: FaceBatch with 68 landmarks in frame pixels
    (smoothed by the tracker), keys: a track id per face) -> (N, 3, H, W) uint8, on the frames'
    device (`frames` itself with inplace=True, else a copy); frames without faces come back unchanged.
    """

    def __init__(self, source: SourceFace, settings: LiteSwapSettings = LiteSwapSettings()) -> None:
        self.source, self.settings = source, settings
        self.masker = AdaptiveMasker(
            MaskSettings(scheme=IBUG_68, size=settings.crop, hysteresis_frames=settings.hysteresis_frames)
        )
        self.faces_skipped_nonfinite = 0  # a warp has no generator to overflow: stays 0
        s = settings.crop
        template = torch.tensor(ARCFACE_112, dtype=torch.float64) * (s / 112)
        centre = torch.tensor([s / 2, s / 2], dtype=torch.float64)
        # zoom out around the centre and move down a little: room for the forehead points
        self.template = (
            (template - centre) * settings.zoom + centre + torch.tensor([0.0, 0.06 * s], dtype=torch.float64)
        )

    def crop_matrices(self, kps: torch.Tensor) -> torch.Tensor:
        """kps (K, 5, 2) frame pixels -> (K, 2, 3) float32 frame -> crop."""
        dst = self.template.to(kps.device)[None].expand(kps.shape[0], 5, 2)
        return umeyama(kps.double(), dst).float()

    def __call__(
        self, frames: torch.Tensor, faces: FaceBatch, keys: Sequence[int], *, inplace: bool = False
    ) -> torch.Tensor:
        if len(faces) == 0:
            return frames
        crops = self.align(frames, faces)
        return self.blend(frames, crops, self.generate(crops), keys, inplace=inplace)

    def forget(self, keys: Sequence[int]) -> None:
        """Drop the per-track state (mask hysteresis) of tracks that ended."""
        self.masker.forget(keys)

    refine_stage: str | None = None  # no refinement after the warp

    # The phases, separately callable so `bench stages` can time each alone.
    def align(self, frames: torch.Tensor, faces: FaceBatch) -> LiteCrops:
        """The target faces in crop space (see LiteCrops), on the frames' device."""
        if faces.landmarks is None or faces.landmarks.shape[1] != 68:
            raise InputError("the lite engine needs 68-point landmarks for every target face")
        dev = frames.device
        m = self.crop_matrices(faces.kps.to(dev))
        fidx = faces.frame_index.to(dev)
        return LiteCrops(
            m,
            transform_points(faces.landmarks.to(dev).float(), m),
            fidx,
            warp_crops(frames, fidx, m, self.settings.crop),
        )

    def generate(self, crops: LiteCrops) -> tuple[torch.Tensor, torch.Tensor]:
        """The source face warped onto each target's landmarks: (K, 3, s, s) float [0, 255], and
        (K, s, s) float 1 where the warp has source pixels."""
        s, src, dev = self.settings.crop, self.source, crops.m.device
        # one face at a time: the per-pixel triangle test is (faces x pixels x triangles) large
        dst = with_support_points(crops.landmarks)
        maps = [warp_maps(src.points.to(dev), dst[i : i + 1], src.triangles.to(dev), (s, s)) for i in range(len(dst))]
        coords, inside = torch.cat([c for c, _ in maps]), torch.cat([m_ for _, m_ in maps])
        return sample(src.image.to(dev), coords), inside

    def refine(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Nothing to refine after a warp: `generated` itself."""
        return generated

    def keep(self, generated: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The warp as uint8 CPU images (as a seed-like implementation holds them): the texture,
        and the coverage scaled to 0..255."""
        warped, inside = generated
        return (
            warped.round().clamp(0, 255).to("cpu", torch.uint8),
            (inside * 255).round().clamp(0, 255).to("cpu", torch.uint8),
        )

    def restore(self, kept: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
        """Inverse of `keep`: float32 on `device`."""
        return kept[0].to(device).float(), kept[1].to(device).float() / 255

    def blend(
        self,
        frames: torch.Tensor,
        crops: LiteCrops,
        generated: tuple[torch.Tensor, ...],
        keys: Sequence[int],
        *,
        inplace: bool = False,
    ) -> torch.Tensor:
        """Mask (with hysteresis per track key), colour match, paste back of the warp
        (`generate`'s texture and coverage): -> (N, 3, H, W) uint8 (`frames` itself when
        inplace, else a copy)."""
        warped, inside = generated
        s, lm = self.settings.crop, crops.landmarks
        masks, _ = self.masker(lm, lm, keys)  # the warp gives the target's shape: offset 0
        masks = masks * inside[:, None]
        open_target = mouth_openness(lm) > self.settings.mouth_open
        if not self.source.mouth_open and bool(open_target.any()):
            # keep the target's teeth and tongue: no stretched closed lips over an open mouth
            mouth = hull_mask(lm[:, list(INNER_MOUTH)], (s, s))
            masks = masks * (1 - mouth * open_target[:, None, None, None].float())
        if self.settings.colour_match:
            warped = match_colour(warped / 255, crops.target / 255, masks) * 255
        return paste_back(frames, warped, masks, crops.m, crops.frame_index, inplace=inplace)


class LiteAnalyser:
    """The lite face analysis for the pipeline: dlib HOG every `detect_every` frames; between
    detections, the 68 landmarks are fitted on the box of the previous frame's landmarks (a
    landmark tracker), which is far cheaper than HOG. Frames must arrive in order (one worker).

    __call__(frames (N, 3, H, W) uint8, with_identity) -> FaceBatch with 68 landmarks (and
    128-d embeddings when asked), on the frames' device.
    """

    def __init__(self, detector: DlibDetector, identity: DlibIdentity | None = None, detect_every: int = 1) -> None:
        if detect_every < 1:
            raise InputError("--detect-every must be at least 1")
        self.detector, self.identity, self.detect_every = detector, identity, detect_every
        self._boxes: torch.Tensor | None = None
        self._count = 0

    def __call__(self, frames: torch.Tensor, with_identity: bool) -> FaceBatch:
        parts = []
        for i in range(frames.shape[0]):
            frame = frames[i : i + 1]
            if self._boxes is None or len(self._boxes) == 0 or self._count % self.detect_every == 0:
                faces = self.detector(frame)
            else:
                faces = self.detector.fit(frame, self._boxes, torch.zeros(len(self._boxes), dtype=torch.int64))
            self._count += 1
            assert faces.landmarks is not None
            lm = faces.landmarks
            self._boxes = torch.cat([lm.amin(1), lm.amax(1)], dim=1) if len(faces) else None
            if with_identity and self.identity is not None:
                faces = faces.with_embeddings(self.identity.embed(frame, faces))
            parts.append(faces)
        return FaceBatch.concat(parts)


class LiteEngine:
    """The lite engine (see the module docstring): dlib's HOG detector every 5th frame (the slow
    part), 68 landmarks following the face in between, a piecewise-affine warp of the source."""

    name = "lite"
    summary = "a fallback, not GHOST quality"
    auto_rank: int | None = 1
    # dlib's descriptors sit closer together than ArcFace's: on nggyup.mp4 and the shared
    # portraits one person's faces scored cosine 0.89-0.96, different people's 0.77-0.90
    defaults = EngineDefaults(
        detect_every=5, similarity=LITE_MATCH_THRESHOLD, tracker={"identity_match": 0.93, "identity_reject": 0.82}
    )

    def unready(self, registry: Registry) -> str | None:
        problems = [c for c in self.checks(registry, needed=True) if not c.ok]
        return None if not problems else f"{problems[0].detail} ({problems[0].fix})"

    def checks(self, registry: Registry, needed: bool) -> list[Check]:
        import importlib
        import importlib.util

        from streamswap.checks import Check

        try:
            dlib = importlib.import_module("dlib")
        except Exception as exc:  # noqa: BLE001 - any import failure is a finding
            return [Check("dlib (lite)", None if not needed else False, f"not available ({exc})", LITE_FIX, needed)]
        checks = [Check("dlib (lite)", True, getattr(dlib, "__version__", "installed"), needed=needed)]
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            return checks + [
                Check(
                    "dlib models (lite)",
                    None if not needed else False,
                    "face-recognition-models missing",
                    LITE_FIX,
                    needed,
                )
            ]
        root = Path(list(spec.submodule_search_locations)[0]) / "models"
        missing = [f for f in (LANDMARKS_68, DESCRIPTOR) if not (root / f).is_file()]
        checks.append(
            Check(
                "dlib models (lite)",
                not missing,
                f"{root}" + (f" lacks {', '.join(missing)}" if missing else ""),
                LITE_FIX if missing else "",
                needed,
            )
        )
        return checks

    def model_files(self, options: SwapOptions) -> dict[str, str | None]:
        from streamswap.errors import StreamSwapError
        from streamswap.faces.lite import lite_model_path
        from streamswap.files import sha256_of

        out: dict[str, str | None] = {}
        for name in (LANDMARKS_68, *((DESCRIPTOR,) if options.target_faces else ())):
            try:
                out[name] = sha256_of(lite_model_path(name))
            except (StreamSwapError, OSError):
                out[name] = None
        return out

    def fetch(self, options: SwapOptions) -> None:
        """Nothing to fetch: dlib's models ship with face-recognition-models."""

    def load(self, options: SwapOptions, device: torch.device) -> EngineModels:
        from streamswap.faces.lite import LiteSettings

        detector = DlibDetector(LiteSettings(max_side=640))
        return EngineModels("lite", device, (detector, DlibIdentity(detector) if options.target_faces else None))

    def stand_in(
        self, options: SwapOptions, device: torch.device, workdir: Path, *, width: float = 1.0
    ) -> EngineModels:
        """The real models: they ship with the lite extra, nothing to download."""
        return self.load(options, device)

    def source_identity(self, models: EngineModels, options: SwapOptions) -> SourceIdentity:
        from streamswap.faces.identity import largest_face
        from streamswap.faces.image import read_image

        detector, identity = models.nets
        sources = []
        for path in options.sources:
            image = read_image(path)
            sources.append(prepare_source(image, detector(image), options.source_face_index, what=f"source {path}"))
        targets = None
        if options.target_faces:
            refs = []
            for path in options.target_faces:
                image = read_image(path)
                refs.append(identity.embed(image, largest_face(detector(image), what=f"target face {path}")))
            targets = torch.cat(refs).cpu().numpy()
        return SourceIdentity(tuple(sources), targets)

    def session(self, models: EngineModels, identity: SourceIdentity, options: SwapOptions) -> EngineSession:
        from streamswap.engines.base import effective_detect_every

        detector, embedder = models.nets
        return EngineSession(
            LiteAnalyser(detector, embedder, effective_detect_every(self, options)),
            [LiteSwapper(s) for s in identity.sources],
            identity.targets,
            threshold_of(self, options),
            self.defaults.tracker.copy(),
            backends={"analyse": "dlib HOG detector and 68 landmarks on the CPU", "swap": "piecewise-affine warp"},
        )


ENGINE = LiteEngine()
