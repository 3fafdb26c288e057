"""Choosing the torch device the pipeline runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamswap.errors import InputError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available else cpu; "cpu", "cuda", "cuda:N" checked. InputError otherwise."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown --device {name!r} (auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA device is available (use --device cpu)")
    return dev
