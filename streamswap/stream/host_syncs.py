"""Counting host syncs on the CPU: which operations, at which call sites, would make the host wait
for a CUDA device (or a GPU stream wait for the host), while the code runs on any device.

On a GPU a pipeline stays fast only while the host never waits: `.item()`, a tensor used as a
Python bool or int, boolean-mask indexing (its output size is data-dependent), a download, or
linalg's error checks each block the calling thread until the device has caught up. On the CPU
these are free, so a CPU run cannot time them; it can count them, because the CPU walks the same
code the GPU runs. `HostSyncAudit` is a `TorchFunctionMode`: entered in a thread (modes are
thread-local), it sees every torch call that thread makes and counts the syncing ones by kind
and by the first project frame that made them. The counts are what the GPU path would pay,
without a GPU.

    audit = HostSyncAudit()
    with audit.scope("swap"):
        run_the_stage(batch)
    audit.report()  # {"swap": {"calls": 1, "syncs": 12, "by_kind": {...}, "by_site": {...}}}

What counts (torch's own CUDA semantics; `torch.cuda.set_sync_debug_mode` flags the same set):
- reading values on the host: `item`, `tolist`, `numpy`, `cpu`, `to(<cpu>)`, and a tensor used as
  a Python `bool`/`int`/`float`/index (`if t:`, `x[t]` with a 0-d tensor, `range(t)`);
- data-dependent output sizes: `nonzero`/`argwhere`/one-argument `where`, boolean-mask indexing
  and assignment, `masked_select`, `unique`, `repeat_interleave` without `output_size`;
- error checks that read a device flag: `linalg.inv`/`svd`/`solve`/`cholesky` (the `_ex`
  variants do not check), and `equal`;
- host data made into a device tensor (`tensor`/`as_tensor` of Python or NumPy data with a
  `device`, `.to(device)` of a host tensor, host indices into a device tensor): an upload, which
  orders the host against the copy.

And one error the CPU cannot raise: `mixed_devices`, an op on host and device tensors together
(CUDA refuses it; 0-d host tensors are allowed). A GPU-clean path counts none.

Which tensors are on the device: the CPU run has only host memory, so the audit keeps the GPU
path's picture. A tensor is in host memory when the audited code made it so: downloaded
(`.cpu()`, `.to("cpu")`), made from NumPy, made by a factory without a `device`, or computed from
host tensors only; it is then marked, and reading it costs nothing. Every other tensor (frames
from the source, weights, results of device tensors) is on the device. The pipeline's device is
passed around as a `torch.device`, so `.to(device)` is an upload of a host tensor and nothing for
a device tensor; only the string "cpu" names the host.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from streamswap.stream.stage import Stage

_PROJECT = Path(__file__).resolve().parents[2]  # the checkout: call sites are shown relative to it
_HERE = str(Path(__file__).resolve())
_TORCH = str(Path(torch.__file__).resolve().parent)

# torch callables -> kind; the Tensor methods and the torch functions alike
_ALWAYS: dict[Any, str] = {
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.cpu: "download",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__int__: "int",
    torch.Tensor.__float__: "float",
    torch.Tensor.__index__: "index",
    torch.nonzero: "nonzero",
    torch.Tensor.nonzero: "nonzero",
    torch.argwhere: "nonzero",
    torch.Tensor.argwhere: "nonzero",
    torch.masked_select: "masked_select",
    torch.Tensor.masked_select: "masked_select",
    torch.unique: "unique",
    torch.Tensor.unique: "unique",
    torch.unique_consecutive: "unique",
    torch.Tensor.unique_consecutive: "unique",
    torch.equal: "equal",
    torch.Tensor.equal: "equal",
    torch.linalg.inv: "linalg_check",
    torch.inverse: "linalg_check",
    torch.Tensor.inverse: "linalg_check",
    torch.linalg.svd: "linalg_check",
    torch.svd: "linalg_check",
    torch.linalg.solve: "linalg_check",
    torch.linalg.cholesky: "linalg_check",
    torch.linalg.lstsq: "linalg_check",
}


# ops that may take tensors on two devices: the copies (counted as transfers above)
_MOVES = frozenset({torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.type_as})
_READS = frozenset({"item", "tolist", "numpy", "download", "bool", "int", "float", "index"})
_FACTORIES = frozenset(
    {
        torch.tensor,
        torch.as_tensor,
        torch.zeros,
        torch.ones,
        torch.empty,
        torch.full,
        torch.arange,
        torch.linspace,
        torch.eye,
        torch.rand,
        torch.randn,
        torch.randint,
        torch.zeros_like,
        torch.ones_like,
        torch.empty_like,
        torch.full_like,
    }
)
_HOST = "_streamswap_host"  # attribute on a tensor that the GPU path would hold in host memory


def is_host(t: torch.Tensor) -> bool:
    """Whether the audit holds `t` in host memory (see `mark_host`); False outside an audit's
    reach, where nothing is marked."""
    return _on_host(t)


def mark_host(t: torch.Tensor) -> torch.Tensor:
    """Declare `t` held in host memory on the GPU path too (e.g. a model's shape constants kept
    off the device): reading it is then free for the audit. Returns `t`."""
    _mark(t)
    return t


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _tensors(v)


def _on_host(t: torch.Tensor) -> bool:
    return bool(getattr(t, _HOST, False))


def _is_mask(index: Any) -> bool:
    """An index holding a boolean tensor (its selection's size is data-dependent)."""
    return any(t.dtype == torch.bool and t.dim() > 0 for t in _tensors(index))


def _target_is_host(device: Any) -> bool:
    """A `device=`/`.to()` target that names host memory: the string "cpu" (the pipeline's own
    device, passed as a torch.device, is the GPU on the GPU path)."""
    return isinstance(device, str) and device.split(":")[0] == "cpu"


def _device_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs.get("device", next((a for a in args if isinstance(a, str | torch.device)), None))


def _kind(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """What kind of host sync `func(*args, **kwargs)` would be on the GPU path, or None. Only
    device-resident tensors sync: those not marked as host memory (see `_mark`)."""
    inputs = [t for t in _tensors(list(args) + list(kwargs.values()))]
    on_device = any(not _on_host(t) for t in inputs)
    subject = args[0] if args and isinstance(args[0], torch.Tensor) else None
    kind = _ALWAYS.get(func)
    if kind is not None:
        if kind in _READS:
            return kind if subject is not None and not _on_host(subject) else None
        return kind if on_device else None
    if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
        if len(args) > 1 and _is_mask(args[1]) and on_device:
            return "mask_index"
        index = list(_tensors(list(args[1:])))
        if subject is not None and _on_host(subject) and any(not _on_host(t) for t in index):
            return "mixed_devices"  # a host tensor indexed by (or set from) device tensors: an error on CUDA
        if subject is not None and not _on_host(subject) and any(_on_host(t) and t.dim() > 0 for t in index):
            return "upload"  # host indices or values: copied to the device first
        return None
    if func is torch.where and len(args) + len(kwargs) == 1:
        return "nonzero" if on_device else None
    if func in (torch.repeat_interleave, torch.Tensor.repeat_interleave):
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
        device_repeats = isinstance(repeats, torch.Tensor) and not _on_host(repeats)
        return "repeat_interleave" if device_repeats and "output_size" not in kwargs else None
    if func is torch.Tensor.to and subject is not None:
        target = _device_arg(args[1:], kwargs)
        if target is None:
            return None
        if _target_is_host(target):
            return "download" if not _on_host(subject) else None
        return "upload" if _on_host(subject) else None
    if func in (torch.tensor, torch.as_tensor):
        device = kwargs.get("device")
        host_data = not (args and isinstance(args[0], torch.Tensor) and not _on_host(args[0]))
        return "upload" if device is not None and not _target_is_host(device) and host_data else None
    if func not in _MOVES and on_device and any(_on_host(t) and t.dim() > 0 for t in inputs):
        return "mixed_devices"  # host and device tensors in one op: an error on CUDA (0-d host tensors are allowed)
    return None


def _result_on_host(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether `func`'s result would be in host memory on the GPU path: a download, a tensor made
    from NumPy or by a factory without a device, or an op on host tensors only."""
    if func in (torch.Tensor.cpu, torch.from_numpy):
        return True
    if func is torch.Tensor.to:
        target = _device_arg(args[1:], kwargs)
        if target is not None:
            return _target_is_host(target)
    if func in _FACTORIES and not (args and isinstance(args[0], torch.Tensor)):
        device = kwargs.get("device")
        return device is None or _target_is_host(device)
    inputs = list(_tensors(list(args) + list(kwargs.values())))
    return bool(inputs) and all(_on_host(t) for t in inputs)


def _mark(result: Any) -> None:
    for t in _tensors(result):
        try:
            setattr(t, _HOST, True)
        except (AttributeError, RuntimeError):  # a tensor subclass without a __dict__
            pass


def _call_site() -> str:
    """path:line (function) of the innermost frame that is neither torch's nor this module's."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_TORCH) and name != _HERE and "/torch/" not in name:
            try:
                shown = str(Path(name).resolve().relative_to(_PROJECT))
            except ValueError:
                shown = name
            return f"{shown}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "?"


@dataclass
class ScopeCounts:
    """The syncs one named scope (a pipeline stage) made: over `calls` entries of the scope."""

    calls: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_site: Counter[str] = field(default_factory=Counter)

    @property
    def syncs(self) -> int:
        return sum(self.by_kind.values())


class _Counting(TorchFunctionMode):
    def __init__(self, counts: ScopeCounts, lock: threading.Lock) -> None:
        super().__init__()
        self._counts, self._lock = counts, lock

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kind = _kind(func, args, kwargs)
        if kind is not None:
            site = _call_site()
            with self._lock:
                self._counts.by_kind[kind] += 1
                self._counts.by_site[f"{site} {kind}"] += 1
        result = func(*args, **kwargs)
        if kind in ("upload", "download") and args and result is args[0]:
            result = result.view_as(result)  # on the CPU `.to()` answers the tensor itself; the GPU path has two
        if _result_on_host(func, args, kwargs):
            _mark(result)
        return result


class HostSyncAudit:
    """Host-sync counts per named scope, collected from any number of threads (each thread enters
    its own scopes: torch function modes are thread-local).

    Used as a context manager around the audited run: `torch.from_numpy`, which torch function
    modes do not see, is wrapped meanwhile so that its tensors are known to be host memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scopes: dict[str, ScopeCounts] = {}
        self._from_numpy: Any = None
        self._local = threading.local()  # .depth: how many of this audit's scopes this thread is in

    def __enter__(self) -> HostSyncAudit:
        if self._from_numpy is not None:
            raise RuntimeError("this HostSyncAudit is already entered")
        original = self._from_numpy = torch.from_numpy

        local = self._local

        def from_numpy(array: Any) -> torch.Tensor:
            t = original(array)
            # inside an audited stage: host memory. Outside (the decoder's thread): the frames,
            # which NVDEC delivers on the device, as the GPU path has them
            if getattr(local, "depth", 0):
                _mark(t)
            return t

        torch.from_numpy = from_numpy  # type: ignore[assignment]  # restored on exit
        return self

    def __exit__(self, *exc: object) -> None:
        torch.from_numpy = self._from_numpy
        self._from_numpy = None

    @contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Count the syncs this thread makes inside the block under `name` (one call)."""
        with self._lock:
            counts = self.scopes.setdefault(name, ScopeCounts())
            counts.calls += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            with _Counting(counts, self._lock):
                yield
        finally:
            self._local.depth -= 1

    def total(self) -> int:
        """All syncs counted, over every scope."""
        return sum(c.syncs for c in self.scopes.values())

    def report(self, per: float | None = None, top: int = 12) -> dict[str, dict[str, Any]]:
        """Per scope: calls, syncs, syncs divided by `per` (e.g. the number of batches; None:
        by the scope's own calls), by kind, and the `top` call sites."""
        out = {}
        for name, c in self.scopes.items():
            div = per if per is not None else c.calls
            out[name] = {
                "calls": c.calls,
                "syncs": c.syncs,
                "syncs_per_batch": c.syncs / div if div else 0.0,
                "by_kind": dict(c.by_kind.most_common()),
                "by_site": dict(c.by_site.most_common(top)),
            }
        return out


def audited(audit: HostSyncAudit, stage: Stage) -> Stage:
    """`stage` with each call of its function (and its flush) counted under the stage's name."""
    fn, flush = stage.fn, stage.flush

    def counted(batch: list[Any]) -> Any:
        with audit.scope(stage.name):
            return fn(batch)

    def counted_flush() -> Any:
        assert flush is not None
        with audit.scope(stage.name):
            return flush()

    return replace(stage, fn=counted, flush=counted_flush if flush is not None else None)
