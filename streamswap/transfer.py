"""Moving several tensors between the device and the host in one copy.

On a GPU each download waits for the device, and each upload of pageable memory waits for its
copy: a stage that needs several small tensors on the other side pays one wait, not one per
tensor, by packing them into one buffer (the tensors' shapes are known on the host, so splitting
needs no further sync).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import cast

import numpy as np
import torch

from streamswap.stream.host_syncs import is_host


def in_host_memory(t: torch.Tensor, device: torch.device) -> bool:
    """Whether `t` is in host memory while the pipeline runs on `device`: on a GPU, a CPU tensor;
    on the CPU (one memory), a tensor the host-sync audit holds on the host (`mark_host`), so
    that a CPU run takes the GPU path's branches."""
    if device.type != "cpu":
        return t.device.type == "cpu"
    return is_host(t)


def device_of(like: torch.Tensor) -> torch.device | str:
    """Where to make tensors that go beside `like`: its device, or "cpu" when the host-sync audit
    holds `like` in host memory (so a CPU run keeps the GPU path's picture of what is where)."""
    return "cpu" if is_host(like) else like.device


def like_device(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` on `like`'s device: an upload when `t` is in host memory and `like` is not, else `t`."""
    return t.to(device_of(like))


def all_like_device(tensors: Sequence[torch.Tensor], like: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """Several tensors as `dtype` on `like`'s device; those in host memory go up in one copy."""
    dev = like.device
    up = set() if in_host_memory(like, dev) else {i for i, t in enumerate(tensors) if in_host_memory(t, dev)}
    moved = iter(to_device([tensors[i].numpy() for i in sorted(up)], dev, dtype))
    return [next(moved) if i in up else t.to(dev, dtype) for i, t in enumerate(tensors)]


def to_host(tensors: Sequence[torch.Tensor | None]) -> list[np.ndarray | None]:
    """The tensors (any shapes, numeric dtypes) as NumPy arrays of their own dtypes and shapes;
    None stays None. Those on the device are copied to the host in one transfer; those already
    in host memory are read in place."""
    out: list[np.ndarray | None] = [None for _ in tensors]
    groups: dict[tuple[torch.device, bool], list[int]] = {}
    for i, t in enumerate(tensors):
        if t is not None:
            groups.setdefault((t.device, is_host(t)), []).append(i)
    for members in groups.values():
        parts = [cast(torch.Tensor, tensors[i]) for i in members]
        common = reduce(torch.promote_types, (t.dtype for t in parts))  # lossless for every part
        flat = torch.cat([t.detach().reshape(-1).to(common) for t in parts]).cpu().numpy()
        start = 0
        for i, t in zip(members, parts, strict=True):
            n = t.numel()
            numpy_dtype = torch.empty((), dtype=t.dtype).numpy().dtype
            out[i] = flat[start : start + n].reshape(tuple(t.shape)).astype(numpy_dtype, copy=False)
            start += n
    return out


def host_tensors(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """`to_host` for tensors that are all present, as CPU tensors (views of the arrays)."""
    return [torch.from_numpy(cast(np.ndarray, a)) for a in to_host(tensors)]


def to_device(arrays: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    """Host arrays as `dtype` tensors on `device` (views of one buffer), copied in one transfer."""
    if not arrays:
        return []
    flat = torch.from_numpy(np.concatenate([np.asarray(a).reshape(-1) for a in arrays])).to(device, dtype)
    out, start = [], 0
    for a in arrays:
        n = int(np.size(a))
        out.append(flat[start : start + n].reshape(np.shape(a)))
        start += n
    return out
