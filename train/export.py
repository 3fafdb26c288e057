"""Exporting the trained generator in the format `streamswap swap --engine ghost` loads.

The swap engine builds `G_unet_{1block,2blocks,3blocks}` at the published widths and loads
`<models dir>/G_unet_Nblock(s).pth` strictly: a plain state_dict of float32 tensors, as GHOST
publishes it. So the export is exactly that file, named for the block count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from streamswap.errors import InputError
from streamswap.files import replacing
from train.checkpoint import latest_checkpoint, load_checkpoint
from train.networks import generator_name


@dataclass(frozen=True)
class ExportReport:
    path: Path
    step: int
    blocks: int
    swap_ready: bool  # the published widths: `streamswap swap --engine ghost --models-dir DIR` loads it
    tensors: int


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or a training --out folder / its checkpoints/ (the newest inside)."""
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            found = latest_checkpoint(folder)
            if found is not None:
                return found
        raise InputError(f"{path}: no checkpoint (step_*.pt) in it or in its checkpoints/ folder")
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint file or training folder")
    return path


def export_generator(checkpoint: Path, out: Path) -> ExportReport:
    """Write the checkpoint's generator to `out`: a folder (then `out/G_unet_N...pth`) or a `.pth` path.
    The file is written atomically. Raises InputError for a bad checkpoint or destination."""
    src = resolve_checkpoint(checkpoint)
    state = load_checkpoint(src)
    settings = json.loads(state["settings"])
    model = settings["model"]
    blocks = int(model["blocks"])
    swap_ready = float(model["g_width"]) == 1.0 and int(model["id_dim"]) == 512
    if out.suffix == ".pth":
        dest = out
    elif out.suffix:
        raise InputError(f"{out}: give a folder or a .pth file name")
    else:
        dest = out / f"{generator_name(blocks)}.pth"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state["generator"].items()}
    with replacing(dest) as tmp:
        torch.save(tensors, tmp)
    return ExportReport(dest, int(state["step"]), blocks, swap_ready, len(tensors))
