"""The golden fixtures' deterministic weights (see ../shared/golden/README.md), and manifest I/O.

A plain helper module (not a conftest) so tests and scripts can import it.
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


def golden_value(key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The value the golden fixtures put in state_dict entry `key` of `shape` (float32 or int64)."""
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    z = rng.standard_normal(size=shape)
    if key.endswith("running_var"):
        v = 1 + 0.1 * np.abs(z)
    elif key.endswith("running_mean"):
        v = 0.1 * z
    elif len(shape) >= 2:
        v = z / np.sqrt(np.prod(shape[1:]))
    elif key.endswith("weight"):
        v = 1 + 0.1 * z
    else:
        v = 0.1 * z
    return v.astype(np.float32)


def golden_state_dict(manifest: list[tuple[str, list[int], str]]) -> dict[str, torch.Tensor]:
    """A full state_dict of golden values for the manifest's entries."""
    return {k: torch.from_numpy(golden_value(k, tuple(s))) for k, s, _ in manifest}


@torch.no_grad()
def fill_golden(module: nn.Module) -> None:
    """Overwrite every state_dict entry of `module` in place with its golden value."""
    for key, t in module.state_dict(keep_vars=True).items():
        t.data.copy_(torch.from_numpy(golden_value(key, tuple(t.shape))))


def load_manifest(golden_dir: Path, name: str) -> list[tuple[str, list[int], str]]:
    """`NAME.manifest.json`: [key, shape, dtype] rows of the reference state_dict."""
    return [tuple(row) for row in json.loads((golden_dir / f"{name}.manifest.json").read_text())]


def state_dict_layout(module: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    """key -> (shape, dtype name) of a module's state_dict, in the manifest's terms."""
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in module.state_dict().items()}


def manifest_layout(manifest: list[tuple[str, list[int], str]]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {k: (tuple(s), d) for k, s, d in manifest}


def golden_module(build, manifest: list[tuple[str, list[int], str]]) -> nn.Module:
    """`build()` constructed on the meta device (no init cost), then given the golden values
    for the manifest's entries with a strict load: proves the reference layout loads as is."""
    with torch.device("meta"):
        module = build()
    module.load_state_dict(golden_state_dict(manifest), strict=True, assign=True)
    return module


@functools.lru_cache(maxsize=1)
def _aei_1block(golden_dir: Path) -> nn.Module:
    from streamswap.models.aei_net import AEINet, AEINetConfig

    manifest = load_manifest(golden_dir, "aei_net_unet_1blocks")
    return golden_module(lambda: AEINet(AEINetConfig(num_blocks=1)), manifest).eval()


@pytest.fixture(scope="session")
def aei_1block_golden(golden_dir: Path) -> nn.Module:
    """The 1-block AEI-Net filled with golden values, eval mode, built once per test session
    (every test module importing this fixture gets the same one). Shared: do not modify it
    (deep-copy it first)."""
    return _aei_1block(golden_dir)
