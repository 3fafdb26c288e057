"""Training pairs (source, target, same) from a prepared dataset, through torch or NVIDIA DALI.

Dataset layout (what `train prepare` writes): one sub-folder per identity holding aligned 224
crops (png/jpg); image files directly in the root count as one identity each (so a folder of
loose crops such as `shared/data/training_pairs` is usable as is). `manifest.json` is not needed
for loading.

Pairs, as GHOST samples them: every image is the source once per epoch (a seeded permutation,
sharded over ranks like DistributedSampler); with probability `same_person` the pair is "same":
the target is a photo of the source's identity drawn uniformly (which may be the same photo), or
with `same_identity=False` the source photo itself; otherwise the target is drawn uniformly from
the other identities' photos (from all other photos with `same_identity=False`) and the pair is
"different". Both images get GHOST's colour jitter independently (see train/augment.py).

Determinism: a batch is a pure function of (seed, step, rank, world_size). The sampler draws
step k's choices from `np.random.default_rng([seed, 1, k])` and epoch e's permutation from
`np.random.default_rng([seed, 0, e])`; the jitter factors are part of those draws, so workers hold
no random state. The loader object counts the batches it has handed out: `state_dict()` is
`{"step": k, ...}` and `load_state_dict()` makes the next batch step k's, whichever loader
(torch or DALI) and however many workers.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from streamswap.errors import InputError
from train.augment import IDENTITY_FACTORS, JitterRanges, jitter

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
LOADERS = ("torch", "dali", "auto")
BATCH_KEYS = ("source", "target", "same")


@dataclass(frozen=True)
class DataSettings:
    """How to load training pairs.

    root: prepared dataset (identity sub-folders of crops, or loose crops; see the module doc).
    image_size: generator input side S (crops resized bilinearly, antialiased, e.g. 224 -> 256).
    same_person: probability that a pair is "same" (GHOST: 0.2). same_identity: same pairs draw
    the target from the source's identity (GHOST's option), different pairs avoid that identity.
    augment: GHOST's colour jitter (0.2, 0.2, 0.2, 0.01); GHOST does not flip.
    workers: torch DataLoader worker processes (DALI: decoding threads, at least 1).
    loader: "torch", "dali" (GPU decode where a CUDA device is used, DALI's CPU pipeline
    otherwise) or "auto" (DALI when it imports and a GPU exists, else torch).
    """

    root: Path
    image_size: int = 256
    batch_size: int = 16
    same_person: float = 0.2
    same_identity: bool = True
    augment: bool = True
    workers: int = 0
    seed: int = 0
    loader: str = "torch"

    def __post_init__(self) -> None:
        problems = [
            (self.image_size >= 8, f"image size must be at least 8, got {self.image_size}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (0.0 <= self.same_person <= 1.0, f"same_person must be in [0, 1], got {self.same_person}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.loader in LOADERS, f"loader must be one of {', '.join(LOADERS)}, got {self.loader!r}"),
        ]
        for ok, message in problems:
            if not ok:
                raise InputError(message)


@dataclass(frozen=True)
class DatasetIndex:
    """The images of a dataset, grouped by identity.

    files: image paths, sorted by identity then name, so each identity is a contiguous range;
    identity: (N,) int64 identity number of each file; names: identity names;
    start: (I + 1,) int64, identity i owns files[start[i]:start[i + 1]].
    """

    files: tuple[Path, ...]
    identity: np.ndarray
    names: tuple[str, ...]
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.files)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def scan_dataset(root: Path) -> DatasetIndex:
    """Index a prepared dataset. Raises InputError if `root` is missing or holds no image."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"training data folder {root} does not exist; prepare one with `train prepare`")
    groups: list[tuple[str, list[Path]]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            images = _images_in(entry)
            if images:
                groups.append((entry.name, images))
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            groups.append((entry.name, [entry]))  # a loose crop is its own identity
    if not groups:
        raise InputError(f"no images (png/jpg) in {root}: expected one sub-folder of face crops per identity "
                         "(`train prepare` writes that layout)")
    files = tuple(p for _, images in groups for p in images)
    sizes = np.array([len(images) for _, images in groups], dtype=np.int64)
    identity = np.repeat(np.arange(len(groups), dtype=np.int64), sizes)
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return DatasetIndex(files=files, identity=identity, names=tuple(name for name, _ in groups), start=start)


@dataclass(frozen=True)
class PairPlan:
    """One rank's batch at one step, before any pixel is read.

    source, target: (B,) int64 indices into DatasetIndex.files; same: (B,) float32 1.0 / 0.0;
    jitter: (B, 2, 4) float32 colour-jitter factors (b, c, s, h) of source [:, 0] and target
    [:, 1] (identity factors when augmentation is off).
    """

    step: int
    source: np.ndarray
    target: np.ndarray
    same: np.ndarray
    jitter: np.ndarray


class PairSampler:
    """Which files make step k's pairs: a pure function of (seed, step, rank, world_size)."""

    def __init__(self, index: DatasetIndex, settings: DataSettings, *, rank: int = 0, world_size: int = 1,
                 jitter_ranges: JitterRanges = JitterRanges()) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"rank {rank} is not in a world of {world_size} processes")
        self.index, self.settings = index, settings
        self.rank, self.world_size = rank, world_size
        self.jitter_ranges = jitter_ranges
        self._perms: dict[int, np.ndarray] = {}  # the last epochs' permutations (a cache, not state)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.settings.seed, 0, epoch]).permutation(len(self.index))
        return self._perms[epoch]

    def plan(self, step: int) -> PairPlan:
        """This rank's pairs for `step` (>= 0)."""
        b, n = self.settings.batch_size, len(self.index)
        positions = (step * self.world_size + self.rank) * b + np.arange(b, dtype=np.int64)
        source = np.array([self._perm(int(p // n))[p % n] for p in positions], dtype=np.int64)
        # every rank draws the whole global batch and keeps its rows: the stream is rank-independent
        draws = np.random.default_rng([self.settings.seed, 1, step]).random((self.world_size * b, 11))
        draws = draws[self.rank * b:(self.rank + 1) * b]
        same_branch = draws[:, 0] < self.settings.same_person
        target = np.empty(b, dtype=np.int64)
        same = np.empty(b, dtype=np.float32)
        ident, start = self.index.identity, self.index.start
        for i, src in enumerate(source):
            if self.settings.same_identity:
                lo, hi = int(start[ident[src]]), int(start[ident[src] + 1])
            else:
                lo, hi = int(src), int(src) + 1
            others = n - (hi - lo)
            if same_branch[i] or others == 0:  # a dataset of one identity has no different pair
                target[i] = lo + min(int(draws[i, 1] * (hi - lo)), hi - lo - 1)
                same[i] = 1.0
            else:  # uniform over the files outside [lo, hi)
                k = min(int(draws[i, 2] * others), others - 1)
                target[i] = k if k < lo else k + (hi - lo)
                same[i] = 0.0
        if self.settings.augment:
            factors = self.jitter_ranges.factors(draws[:, 3:11].reshape(b, 2, 4))
        else:
            factors = np.broadcast_to(IDENTITY_FACTORS, (b, 2, 4)).copy()
        return PairPlan(step=step, source=source, target=target, same=same, jitter=factors)


# -- reading and transforming one image -----------------------------------------------------

def decode_rgb(path: Path) -> torch.Tensor:
    """An image file -> (3, H, W) uint8 RGB (OpenCV decode). InputError if unreadable."""
    data = np.fromfile(path, dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise InputError(f"{path} is not a readable image; remove it from the training data or re-run prepare")
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)


def to_generator_input(image: torch.Tensor, size: int, factors: np.ndarray | None = None) -> torch.Tensor:
    """(3, H, W) uint8 RGB (CPU) -> (3, size, size) float32 in [-1, 1]: colour jitter with
    `factors` (b, c, s, h; None: none) at the crop's own size, then bilinear antialiased resize."""
    x = np.ascontiguousarray(image.numpy(), dtype=np.float32)  # planar rows: fast elementwise jitter
    if factors is not None:
        x = jitter(x, factors)
    t = torch.from_numpy(x)
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return (t / 127.5 - 1.0).clamp(-1.0, 1.0)


class _PairImages(Dataset):
    """Map-style dataset whose keys are sampled pairs: (source, target, same, jitter (2, 4))."""

    def __init__(self, files: tuple[Path, ...], size: int, augment: bool) -> None:
        self.files, self.size, self.augment = files, size, augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int, float, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, float]:
        src, tgt, same, factors = key
        source = to_generator_input(decode_rgb(self.files[src]), self.size, factors[0] if self.augment else None)
        target = to_generator_input(decode_rgb(self.files[tgt]), self.size, factors[1] if self.augment else None)
        return source, target, same


class _PlanBatches:
    """Batch sampler: step k's plan as a list of dataset keys, from `start` on, forever."""

    def __init__(self, sampler: PairSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[tuple[int, int, float, np.ndarray]]]:
        step = self.start
        while True:
            p = self.sampler.plan(step)
            yield [(int(s), int(t), float(m), f) for s, t, m, f in zip(p.source, p.target, p.same, p.jitter,
                                                                        strict=True)]
            step += 1


def _collate(items: list[tuple[torch.Tensor, torch.Tensor, float]]) -> dict[str, torch.Tensor]:
    return {"source": torch.stack([s for s, _, _ in items]), "target": torch.stack([t for _, t, _ in items]),
            "same": torch.tensor([m for _, _, m in items], dtype=torch.float32)}


class PairLoader(Protocol):
    """What build_loader returns: an infinite iterator of batches with a resumable position."""

    sampler: PairSampler

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]: ...
    def __next__(self) -> dict[str, torch.Tensor]: ...
    def state_dict(self) -> dict[str, int]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _Resumable:
    """The position logic both loaders share: the step of the next batch, restorable."""

    sampler: PairSampler

    def __init__(self) -> None:
        self.step = 0
        self._it: Generator[dict[str, torch.Tensor], None, None] | None = None

    def __iter__(self) -> _Resumable:
        return self

    def _open(self, start: int) -> Generator[dict[str, torch.Tensor], None, None]:
        raise NotImplementedError

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._it is None:
            self._it = self._open(self.step)
        batch = next(self._it)
        self.step += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """{"step": batches handed out so far, "seed", "rank", "world_size"}."""
        return {"step": self.step, "seed": self.sampler.settings.seed, "rank": self.sampler.rank,
                "world_size": self.sampler.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next batch is step state["step"]'s (prefetched batches are dropped)."""
        if int(state.get("seed", self.sampler.settings.seed)) != self.sampler.settings.seed:
            log.warning("resuming data position %s with seed %s (was %s): different batches than the first run",
                        state["step"], self.sampler.settings.seed, state["seed"])
        self.close()
        self.step = int(state["step"])

    def close(self) -> None:
        """Stop prefetching (worker processes, DALI threads); iteration can restart afterwards."""
        it, self._it = self._it, None
        if it is not None:
            it.close()  # a generator: runs its cleanup now


class TorchPairLoader(_Resumable):
    """torch DataLoader over the sampler's plans: batches of "source", "target" (B, 3, S, S)
    float32 in [-1, 1] RGB and "same" (B,) float32, on `device` (CPU when None)."""

    def __init__(self, settings: DataSettings, sampler: PairSampler, device: torch.device | None = None) -> None:
        super().__init__()
        self.settings, self.sampler = settings, sampler
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dataset = _PairImages(sampler.index.files, settings.image_size, settings.augment)

    def _open(self, start: int) -> Generator[dict[str, torch.Tensor], None, None]:
        loader = DataLoader(self.dataset, batch_sampler=_PlanBatches(self.sampler, start), collate_fn=_collate,
                            num_workers=self.settings.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False)
        for batch in loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


class DaliPairLoader(_Resumable):
    """The same batches through an NVIDIA DALI pipeline (pipelines/dali_pairs.py): decode on the
    GPU ("mixed") when `device` is CUDA, DALI's CPU operators otherwise. Outputs on `device`."""

    def __init__(self, settings: DataSettings, sampler: PairSampler, device: torch.device | None = None) -> None:
        from pipelines.dali_pairs import import_dali

        import_dali()  # fail now, with one line, if DALI is missing
        super().__init__()
        self.settings, self.sampler = settings, sampler
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def _open(self, start: int) -> Generator[dict[str, torch.Tensor], None, None]:
        from pipelines.dali_pairs import PairPipelineSpec, iterate_pairs

        gpu = self.device.type == "cuda"
        spec = PairPipelineSpec(files=tuple(str(f) for f in self.sampler.index.files),
                                batch_size=self.settings.batch_size, size=self.settings.image_size,
                                augment=self.settings.augment, threads=max(1, self.settings.workers),
                                device_id=(self.device.index or 0) if gpu else None, seed=self.settings.seed)
        for batch in iterate_pairs(spec, self.sampler.plan, start):
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}


def dali_available() -> bool:
    """Whether NVIDIA DALI can be imported (without importing it)."""
    return importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def choose_loader(requested: str, device: torch.device | None) -> tuple[str, str]:
    """(loader, reason): "auto" takes DALI when it is installed and a GPU exists, else torch."""
    if requested != "auto":
        return requested, "requested"
    gpu = (device.type == "cuda") if device is not None else torch.cuda.is_available()
    if not gpu:
        return "torch", "no GPU"
    if not dali_available():
        return "torch", "NVIDIA DALI is not installed"
    return "dali", "DALI installed and a GPU is used"


def build_loader(settings: DataSettings, *, rank: int = 0, world_size: int = 1,
                 device: torch.device | None = None) -> TorchPairLoader | DaliPairLoader:
    """An infinite, resumable iterator of batches {"source", "target": (B, 3, S, S) float32 in
    [-1, 1] RGB, "same": (B,) float32}, this rank's shard, on `device` (CPU when None; with DALI
    and no device, the GPU when one exists). See the module doc for pairing and determinism."""
    index = scan_dataset(settings.root)
    sampler = PairSampler(index, settings, rank=rank, world_size=world_size)
    loader, reason = choose_loader(settings.loader, device)
    log.info("training data: %d images of %d identities, %s loader (%s)", len(index), len(index.names), loader,
             reason)
    if loader == "dali":
        if device is None and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
        return DaliPairLoader(settings, sampler, device)
    return TorchPairLoader(settings, sampler, device)


def fixed_batch(settings: DataSettings, n: int) -> dict[str, torch.Tensor]:
    """A deterministic, un-augmented batch of n pairs (CPU), the same on every call: sources are
    the first n images in index order (cycled); pair i is "same" (target = the source photo) for
    i < max(1, round(n * same_person)), else the target is the first photo of the next identity
    ("different"; "same" again only if the dataset has one identity)."""
    if n < 1:
        raise InputError(f"a fixed batch needs at least one pair, got {n}")
    index = scan_dataset(settings.root)
    n_same = max(1, round(n * settings.same_person))
    sources, targets, same = [], [], []
    for i in range(n):
        src = i % len(index)
        if i < n_same:
            tgt, flag = src, 1.0
        else:
            nxt = (int(index.identity[src]) + 1) % len(index.names)
            tgt = int(index.start[nxt])
            flag = 1.0 if nxt == index.identity[src] else 0.0
        sources.append(to_generator_input(decode_rgb(index.files[src]), settings.image_size))
        targets.append(to_generator_input(decode_rgb(index.files[tgt]), settings.image_size))
        same.append(flag)
    return {"source": torch.stack(sources), "target": torch.stack(targets),
            "same": torch.tensor(same, dtype=torch.float32)}
