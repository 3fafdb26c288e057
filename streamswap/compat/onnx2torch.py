"""Importing onnx2torch without torchvision.

onnx2torch imports three `torchvision.ops` at import time (nms, box_convert, roi_align), but the
face models StreamSwap converts use only NMS-free graphs; torchvision itself pulls a CUDA torch
from PyPI and does not import beside the CPU torch build. So while onnx2torch is imported, and
only then, a minimal `torchvision` module stands in: `nms` (StreamSwap's own, same semantics),
`box_convert` (the two formats onnx2torch asks for) and a `roi_align` that refuses. A real,
working torchvision, when present, is used instead; the stand-in never stays in `sys.modules`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any

import torch

from streamswap.errors import ModelError
from streamswap.faces.nms import nms as torch_nms

ONNX2TORCH_INSTALL = "pip install --no-deps onnx2torch==1.5.15"


def _torchvision_stand_in() -> tuple[types.ModuleType, types.ModuleType]:
    """A minimal `torchvision` with the three `ops` onnx2torch imports, implemented in torch."""

    def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
        if in_fmt == out_fmt:
            return boxes.clone()
        if (in_fmt, out_fmt) == ("cxcywh", "xyxy"):
            c, wh = boxes[..., :2], boxes[..., 2:]
            return torch.cat([c - wh / 2, c + wh / 2], dim=-1)
        if (in_fmt, out_fmt) == ("xyxy", "cxcywh"):
            a, b = boxes[..., :2], boxes[..., 2:]
            return torch.cat([(a + b) / 2, b - a], dim=-1)
        raise NotImplementedError(f"box_convert {in_fmt}->{out_fmt} is not in StreamSwap's torchvision stand-in")

    def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        return torch_nms(boxes, scores, iou_threshold)

    def roi_align(*args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError(
            "RoiAlign needs torchvision, which StreamSwap does not use; the face models here have no RoiAlign node"
        )

    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    # a module's attributes are its __dict__ (a module made at run time declares none to mypy)
    ops.__dict__.update(nms=nms, box_convert=box_convert, roi_align=roi_align)
    tv.__dict__.update(ops=ops, __streamswap_stand_in__=True)
    return tv, ops


def _torchvision_importable() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 - installed but broken beside this torch: use the stand-in
        return False
    return True


@contextlib.contextmanager
def _torchvision_shim() -> Iterator[None]:
    """Put the stand-in into sys.modules for the duration of the block only."""
    if "torchvision" in sys.modules or _torchvision_importable():
        yield
        return
    tv, ops = _torchvision_stand_in()
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        yield
    finally:
        for name, mod in (("torchvision", tv), ("torchvision.ops", ops)):
            if sys.modules.get(name) is mod:
                del sys.modules[name]


def import_onnx2torch() -> types.ModuleType:
    """Import onnx2torch (lazily: only the torch runtime needs it). Raises ModelError if missing."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if importlib.util.find_spec("onnx2torch") is None:
        raise ModelError(
            f"the torch runtime for ONNX models needs onnx2torch: `{ONNX2TORCH_INSTALL}` "
            "(or choose the onnxruntime runtime)"
        )
    with _torchvision_shim():
        return importlib.import_module("onnx2torch")


# Inputs that the converted op reads on the host as shapes, sizes, scales or axes (PyTorch takes
# them as Python values), by the onnx2torch module class: their positions in the call.
_HOST_READ_INPUTS: dict[str, tuple[int, ...]] = {
    "OnnxReshape": (1,),
    "OnnxResize": (1, 2, 3),
    "OnnxResizeV10": (1,),
    "OnnxExpand": (1,),
    "OnnxTile": (1,),
    "OnnxSlice": (1, 2, 3, 4),
    "OnnxUnsqueezeDynamicAxes": (1,),
    "OnnxSqueezeDynamicAxes": (1,),
    "OnnxPadDynamic": (1,),
    "OnnxConstantOfShape": (0,),
    "OnnxSplit13": (1,),
    "OnnxReduceSumDynamicAxes": (1,),
    "OnnxTopK": (1,),
}


class HostInputs(torch.nn.Module):
    """`op` with some of its inputs fixed to constants held in host memory.

    A plain attribute, not a buffer: moving the module to a GPU leaves them on the host, where the
    op reads them (`torch.Size(shape)`, `scales.tolist()`) without waiting for the device."""

    def __init__(self, op: torch.nn.Module, fixed: dict[int, torch.Tensor]) -> None:
        from streamswap.stream.host_syncs import mark_host

        super().__init__()
        self.op = op
        # by position, ascending: inserting in this order puts each back where it was
        self.fixed = [(i, mark_host(fixed[i].detach().cpu().clone())) for i in sorted(fixed)]

    def forward(self, *args: Any) -> Any:
        full = list(args)
        for i, t in self.fixed:
            full.insert(i, t)
        return self.op(*full)


def hold_shape_constants_on_host(module: torch.fx.GraphModule) -> int:
    """Rewrite an onnx2torch graph so that constant shape-like inputs (reshape shapes, resize
    scales and sizes, slice bounds, axes) stay in host memory: on CUDA, onnx2torch would read them
    back from the device on every call (a host sync each). Same ops, same values: results are
    identical. Returns how many ops were rewritten."""

    def constant_of(node: Any) -> torch.Tensor | None:
        if not isinstance(node, torch.fx.Node):
            return None
        if node.op == "get_attr":
            value: Any = module
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value if isinstance(value, torch.Tensor) else None
        if node.op == "call_module" and not node.args and not node.kwargs:
            sub = module.get_submodule(str(node.target))
            held = getattr(sub, "value", None)
            if type(sub).__name__ == "OnnxConstant" and isinstance(held, torch.Tensor):
                return held
        return None

    rewritten = 0
    for node in list(module.graph.nodes):
        if node.op != "call_module" or node.kwargs:
            continue
        op = module.get_submodule(str(node.target))
        positions = _HOST_READ_INPUTS.get(type(op).__name__, ())
        fixed = {i: c for i in positions if i < len(node.args) and (c := constant_of(node.args[i])) is not None}
        if not fixed:
            continue
        module.add_submodule(str(node.target), HostInputs(op, fixed))
        node.args = tuple(a for i, a in enumerate(node.args) if i not in fixed)
        rewritten += 1
    if rewritten:
        module.graph.eliminate_dead_code()
        module.delete_all_unused_submodules()
        module.recompile()
    return rewritten
