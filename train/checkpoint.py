"""Training checkpoints: one file per save, written atomically, read back with weights_only.

A checkpoint is a `torch.save`d dict of tensors and plain Python values only (so
`torch.load(weights_only=True)` reads it): model/optimiser/scheduler/GradScaler state dicts,
the step, the settings as JSON, and per rank the RNG states and the data loader's position.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamswap.errors import InputError
from streamswap.files import replacing

_NAME = re.compile(r"^step_(\d{9})\.pt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"step_{step:09d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every finished checkpoint in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], path: Path, keep: int = 0) -> Path:
    """Write `state` to `path` atomically (a temporary file, fsync, os.replace); then delete
    all but the newest `keep` checkpoints of the folder (0 keeps all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, fsync=True) as tmp:
        torch.save(state, tmp)
    if keep > 0:
        for _, old in list_checkpoints(path.parent)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint (CPU tensors). Never unpickles code. InputError when unreadable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such checkpoint") from exc
    except Exception as exc:
        raise InputError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from exc
    if not isinstance(state, dict) or "generator" not in state or "step" not in state:
        raise InputError(f"{path}: not a training checkpoint (no generator/step); "
                         "give a file from OUT/checkpoints")
    return state


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states, as tensors and ints."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
