"""Face counts padded to a few batch sizes, powers of two (1, 2, 4, 8, ...), for the networks that
run once per face (the generator, 2d106 landmarks, ArcFace): cuDNN's autotuner and torch.compile
then see a bounded set of shapes instead of a new one for every face count. The padding rows are
zeros and are cut off again; every network padded here treats the rows of a batch independently
(eval-mode normalisation), so padding changes no result. GHOST's SR runs its normalisation on
the batch's own statistics ("reference" mode) and is never padded.

On by default where the inputs are on a GPU; off on the CPU, where no autotuner caches shapes and
padding would only cost compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def bucket(n: int) -> int:
    """The padded size of a batch of n rows: the next power of two (0 stays 0)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def in_buckets(fn: Callable[..., Any], *inputs: torch.Tensor, enabled: bool | None = None) -> Any:
    """fn(*inputs) with the inputs' first dimension (the same n for all) padded with zero rows to
    `bucket(n)` and the output(s) cut back to n rows. enabled: None pads when the first input is
    on a CUDA device. Inputs: any (n, ...) tensors; output: a tensor, or a list/tuple of them,
    each (bucket(n), ...)."""
    n = inputs[0].shape[0]
    if enabled is None:
        enabled = inputs[0].is_cuda
    size = bucket(n)
    if not enabled or size == n:
        return fn(*inputs)
    padded: list[torch.Tensor] = []
    for x in inputs:
        padded.append(torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))]))
    out = fn(*padded)
    if isinstance(out, torch.Tensor):
        return out[:n]
    cut = [o[:n] for o in out]
    return cut if isinstance(out, list) else tuple(cut)
