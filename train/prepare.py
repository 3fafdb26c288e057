"""`train prepare`: photos and videos of people -> aligned 224 face crops, one folder per identity.

Input layout (VGGFace2's): one sub-folder per identity holding photos and/or videos (nested
folders are searched too); a photo or video directly in the input folder is an identity of its
own, named after the file. Videos are sampled every `every`-th frame, at most `max_per_video`
crops each. A photo or sampled frame yields a crop only when it holds exactly one usable face
(detector hit whose box's shorter side is at least `min_face` pixels); otherwise it is skipped and
the reason recorded.

Crops: five keypoints -> similarity transform to GHOST's crop (`template="ghost"`: the best of its
five pose templates, what GHOST's training and the swap engine use; see GHOST-SPEC.md) or to the
ArcFace template (`template="arcface"`), cut bilinearly at `size` (224) like cv2.warpAffine.
Keypoints come from dlib (`detector="lite"`: HOG + 68 landmarks -> 5 points, offline) or SCRFD
(`detector="scrfd"`: the published scrfd_10g_bnkps.onnx, as the swap engine).

Output: <output>/<identity>/<name>.<jpg|png> and <output>/manifest.json, which records every input
(crops made, or why it was skipped). Resumable: inputs already in the manifest are not redone. The
manifest is replaced atomically after every video, every identity and every `save_every` photos,
and every crop file is written under a temporary name then renamed, so an interrupted run loses at
most the inputs since the last save (they are redone, overwriting their crops).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from streamswap.errors import InputError
from streamswap.files import write_atomic
from streamswap.faces.align import arcface_align, ghost_align, warp_crops
from streamswap.faces.records import FaceBatch
from train.settings import CROP_KEYS, DETECTORS, FORMATS, TEMPLATES, PrepareSettings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "streamswap-train-crops"
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"})



@dataclass(frozen=True)
class InputFile:
    """One photo or video to prepare. key: its path relative to the input folder (the manifest
    key); identity: the output sub-folder; name: output file stem; kind: "photo" or "video"."""

    path: Path
    key: str
    identity: str
    name: str
    kind: str


@dataclass(frozen=True)
class PrepareProgress:
    """Reported after each input: inputs finished (this run and before) of total, crops so far."""

    done: int
    total: int
    crops: int
    current: str


@dataclass(frozen=True)
class PrepareReport:
    """inputs: photos and videos found; prepared_now / already_done: this run / earlier runs;
    crops: crop files in the dataset (crops_now: made by this run); identities: folders with at
    least one crop; skipped: {reason: count} over the whole manifest (photos and video frames)."""

    inputs: int
    prepared_now: int
    already_done: int
    crops: int
    crops_now: int
    identities: int
    skipped: dict[str, int]
    manifest: Path
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["manifest"] = str(self.manifest)
        return out


class Detector(Protocol):
    def detect(self, frames: torch.Tensor) -> FaceBatch: ...


# -- finding the inputs -------------------------------------------------------------------

def _media(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "photo" if suffix in PHOTO_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and _media(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _names(files: list[Path], folder: Path) -> list[str]:
    """Output stems for one identity's files: the path inside the identity folder with '/' -> '__';
    where two files share that stem (a.jpg, a.png), the suffix is appended."""
    stems = [str(p.relative_to(folder).with_suffix("")).replace(os.sep, "__") for p in files]
    counts = Counter(stems)
    return [s if counts[s] == 1 else f"{s}_{p.suffix.lower().lstrip('.')}" for s, p in zip(stems, files, strict=True)]


def find_inputs(input_dir: Path, output_dir: Path | None = None) -> list[InputFile]:
    """Photos and videos under `input_dir`, identity by identity (sorted). InputError when the
    folder is missing or holds none, or when `output_dir` lies inside it."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist (expected one sub-folder of photos/videos "
                         "per identity)")
    if output_dir is not None:
        out, inp = Path(output_dir).resolve(), input_dir.resolve()
        if out == inp or inp in out.parents:
            raise InputError(f"output folder {output_dir} is inside the input folder {input_dir}; choose another")
    found: list[InputFile] = []
    loose = []
    for entry in sorted(input_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = _visible_files(entry)
            for p, name in zip(files, _names(files, entry), strict=True):
                found.append(InputFile(p, p.relative_to(input_dir).as_posix(), entry.name, name, _media(p) or ""))
        elif entry.is_file() and _media(entry):
            loose.append(entry)
    folders = {f.identity for f in found}
    for p in loose:  # a loose file is its own identity, named after it
        identity = p.stem if p.stem not in folders else f"{p.stem}_{p.suffix.lower().lstrip('.')}"
        found.append(InputFile(p, p.name, identity, p.stem, _media(p) or ""))
    if not found:
        raise InputError(f"no photos or videos in {input_dir} (looked for {', '.join(sorted(PHOTO_SUFFIXES))} "
                         f"and {', '.join(sorted(VIDEO_SUFFIXES))})")
    return found


# -- the manifest ---------------------------------------------------------------------------

def load_manifest(output_dir: Path, settings: PrepareSettings) -> dict[str, Any]:
    """The manifest of an earlier run (checked for compatible crop settings) or a new one."""
    path = Path(output_dir) / MANIFEST
    fresh = {"format": MANIFEST_FORMAT, "version": 1, "settings": _settings_record(settings), "inputs": {}}
    if not path.exists():
        return fresh
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable manifest ({exc}); delete it to start over") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path} is not a `train prepare` manifest; choose an empty output folder")
    before = {k: manifest.get("settings", {}).get(k) for k in CROP_KEYS}
    if before != settings.crop_settings():
        diff = ", ".join(f"{k} {before[k]!r} -> {v!r}" for k, v in settings.crop_settings().items() if before[k] != v)
        raise InputError(f"{path.parent} was prepared with other crop settings ({diff}); "
                         "use the same options to resume, or a new output folder")
    manifest["settings"] = _settings_record(settings)
    return manifest


def _settings_record(settings: PrepareSettings) -> dict[str, Any]:
    record = asdict(settings)
    return {k: str(v) if isinstance(v, Path) else v for k, v in record.items()}


def _summarise(manifest: dict[str, Any]) -> dict[str, Any]:
    crops: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for entry in manifest["inputs"].values():
        crops[entry["identity"]] += len(entry.get("crops", []))
        if entry["status"] == "skipped":
            skipped[entry["reason"]] += 1
        skipped.update(entry.get("skipped_frames", {}))
    return {"identities": {k: {"crops": v} for k, v in sorted(crops.items()) if v},
            "crops": sum(crops.values()), "skipped": dict(sorted(skipped.items()))}


def save_manifest(output_dir: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (temporary file + os.replace), with its summary refreshed."""
    manifest.update(_summarise(manifest))
    path = Path(output_dir) / MANIFEST
    write_atomic(path, json.dumps(manifest, indent=1, sort_keys=False))


# -- faces and crops ------------------------------------------------------------------------

def build_detector(settings: PrepareSettings) -> Detector:
    """The face detector the settings name, on settings.device."""
    if settings.detector == "lite":
        from streamswap.faces.lite import DlibDetector, LiteSettings

        # upsample 1 on at most 1024 px: faces down to ~40 px (smaller ones are not usable anyway)
        return DlibDetector(LiteSettings(upsample=1, max_side=1024))
    from streamswap.faces.detect import DetectSettings, SCRFDDetector

    path = settings.scrfd_model
    if path is None:
        from streamswap.models.registry import Registry, RegistryConfig

        path = Registry(RegistryConfig.from_env(models_dir=settings.models_dir)).require("scrfd_10g_bnkps")
    return SCRFDDetector.load(path, DetectSettings(score_threshold=0.6), device=settings.device)  # GHOST's 0.6


def one_face(faces: FaceBatch, min_face: int) -> tuple[torch.Tensor | None, str]:
    """The keypoints (5, 2) of the only usable face of a one-frame batch, or (None, reason)."""
    sides = torch.minimum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    usable = sides >= min_face
    n = int(usable.sum())
    if n == 1:
        return faces.kps[usable][0], ""
    if n > 1:
        return None, "several faces"
    return None, "face too small" if len(sides) else "no face"


def align_crop(image: torch.Tensor, kps: torch.Tensor, template: str, size: int) -> torch.Tensor:
    """image (1, 3, H, W) uint8 RGB; kps (5, 2) frame pixels -> (3, size, size) uint8 RGB crop."""
    kps = kps[None].to(image.device, torch.float32)
    m = ghost_align(kps, size)[0] if template == "ghost" else arcface_align(kps, size)
    crop = warp_crops(image, torch.zeros(1, dtype=torch.int64, device=image.device), m, size)[0]
    return crop.round().clamp(0, 255).to(torch.uint8)


def write_crop(crop: torch.Tensor, path: Path, image_format: str, jpeg_quality: int) -> None:
    """(3, S, S) uint8 RGB -> image file, written under a temporary name then renamed."""
    bgr = np.ascontiguousarray(crop.permute(1, 2, 0).cpu().numpy()[:, :, ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if image_format == "jpg" else []
    ok, data = cv2.imencode(f".{image_format}", bgr, params)
    if not ok:
        raise InputError(f"could not encode {path}")
    write_atomic(path, data.tobytes())


# -- the job --------------------------------------------------------------------------------

class _Preparer:
    def __init__(self, settings: PrepareSettings, detector: Detector) -> None:
        self.settings, self.detector = settings, detector
        self.device = torch.device(settings.device)
        self.crops_now = 0

    def _crop_frame(self, image: torch.Tensor, out: Path) -> str:
        """Crop the only face of image (1, 3, H, W) to `out`; "" on success, else the reason."""
        kps, reason = one_face(self.detector.detect(image), self.settings.min_face)
        if kps is None:
            return reason
        out.parent.mkdir(parents=True, exist_ok=True)
        write_crop(align_crop(image, kps, self.settings.template, self.settings.size), out,
                   self.settings.image_format, self.settings.jpeg_quality)
        self.crops_now += 1
        return ""

    def photo(self, item: InputFile) -> dict[str, Any]:
        from streamswap.faces.image import read_image

        entry: dict[str, Any] = {"identity": item.identity, "kind": "photo"}
        try:
            image = read_image(item.path, self.device)
        except InputError as exc:
            return {**entry, "status": "skipped", "reason": "unreadable", "detail": str(exc)}
        rel = f"{item.identity}/{item.name}.{self.settings.image_format}"
        reason = self._crop_frame(image, self.settings.output / rel)
        if reason:
            return {**entry, "status": "skipped", "reason": reason}
        return {**entry, "status": "ok", "crops": [rel]}

    def _frames(self, path: Path) -> Iterator[tuple[int, torch.Tensor]]:
        from streamswap.video.sources import SourceOptions, open_source

        source = open_source(path, SourceOptions(decoder="pyav", device="cpu"))
        try:
            for frame in source:
                if frame.index % self.settings.every == 0:
                    yield frame.index, frame.image.permute(2, 0, 1)[None].to(self.device)
        finally:
            source.close()

    def video(self, item: InputFile) -> dict[str, Any]:
        entry: dict[str, Any] = {"identity": item.identity, "kind": "video"}
        crops: list[str] = []
        skipped: Counter[str] = Counter()
        sampled = 0
        try:
            for index, image in self._frames(item.path):
                sampled += 1
                rel = f"{item.identity}/{item.name}_f{index:06d}.{self.settings.image_format}"
                reason = self._crop_frame(image, self.settings.output / rel)
                if reason:
                    skipped[reason] += 1
                else:
                    crops.append(rel)
                if self.settings.max_per_video and len(crops) >= self.settings.max_per_video:
                    break
        except InputError as exc:
            if not sampled:
                return {**entry, "status": "skipped", "reason": "unreadable", "detail": str(exc)}
            entry["detail"] = str(exc)
        entry.update(frames_sampled=sampled, skipped_frames=dict(sorted(skipped.items())), crops=crops)
        if not crops:
            return {**entry, "status": "skipped", "reason": "no usable frame"}
        return {**entry, "status": "ok"}


def prepare_dataset(settings: PrepareSettings, progress: Callable[[PrepareProgress], None] | None = None,
                    detector: Detector | None = None) -> PrepareReport:
    """Prepare (or resume preparing) the crops of settings.input into settings.output.
    detector: an already-built face detector (default: build_detector(settings)).
    Raises InputError for an unusable input folder or an incompatible earlier output."""
    t0 = time.perf_counter()
    items = find_inputs(settings.input, settings.output)
    settings.output.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(settings.output, settings)
    done = manifest["inputs"]
    todo = [item for item in items if item.key not in done]
    already = len(items) - len(todo)
    log.info("prepare: %d inputs, %d already in the manifest", len(items), already)
    job = _Preparer(settings, detector or (build_detector(settings) if todo else _NoDetector()))
    if progress:
        progress(PrepareProgress(done=already, total=len(items), crops=0, current=""))
    since_save = 0
    for i, item in enumerate(todo):
        done[item.key] = job.video(item) if item.kind == "video" else job.photo(item)
        since_save += 1
        last_of_identity = i + 1 == len(todo) or todo[i + 1].identity != item.identity
        if item.kind == "video" or last_of_identity or since_save >= settings.save_every:
            save_manifest(settings.output, manifest)
            since_save = 0
        if progress:
            progress(PrepareProgress(done=already + i + 1, total=len(items), crops=job.crops_now, current=item.key))
    save_manifest(settings.output, manifest)
    return PrepareReport(inputs=len(items), prepared_now=len(todo), already_done=already, crops=manifest["crops"],
                         crops_now=job.crops_now, identities=len(manifest["identities"]),
                         skipped=dict(manifest["skipped"]), manifest=settings.output / MANIFEST,
                         seconds=time.perf_counter() - t0, settings=manifest["settings"])


class _NoDetector:
    """Stand-in when nothing is left to do: a finished dataset resumes without loading models."""

    def detect(self, frames: torch.Tensor) -> FaceBatch:  # pragma: no cover - never called
        raise AssertionError("no input left to detect")
