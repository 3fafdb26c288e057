"""ONNX export of the AEI-Net generator (for onnxruntime / TensorRT deployments).

Graph: inputs `x_t` (B, 3, 256, 256) float32 RGB in [-1, 1] and `z_id` (B, 512) float32;
output `y` (B, 3, 256, 256) in [-1, 1]. The batch axis is dynamic. Uses torch's TorchScript-
based exporter (the dynamo exporter needs `onnxscript`, which is not a dependency).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from streamswap.errors import ModelError
from streamswap.models.aei_net import AEINet, AEINetImage

log = logging.getLogger(__name__)

# protobuf cannot hold more than 2 GiB: larger graphs must keep their weights beside the .onnx
_PROTO_LIMIT = 2 * 1024**3 - 1


@dataclass(frozen=True)
class ExportSettings:
    """`external_data`: None = only when the weights would pass protobuf's 2 GiB limit."""

    opset: int = 17
    dynamic_batch: bool = True
    external_data: bool | None = None
    example_batch: int = 1


def export_generator_onnx(net: AEINet, path: str | Path, settings: ExportSettings | None = None) -> Path:
    """Write `net` (float32, any device; exported from a CPU copy) as an ONNX graph at `path`.
    With external data, the weights go to `path` + ".data" in the same folder. Returns `path`."""
    s = settings or ExportSettings()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = AEINetImage(net).eval().float().cpu()
    id_dim = net.config.id_dim
    x = torch.zeros(s.example_batch, 3, 256, 256)
    z = torch.zeros(s.example_batch, id_dim)
    axes = {n: {0: "batch"} for n in ("x_t", "z_id", "y")} if s.dynamic_batch else None
    nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    external = s.external_data if s.external_data is not None else nbytes > _PROTO_LIMIT * 0.9
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter warns that it is legacy, and that InstanceNorm uses input
        # statistics in eval mode (it does: that is InstanceNorm)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x, z),
            str(path),
            dynamo=False,
            input_names=["x_t", "z_id"],
            output_names=["y"],
            dynamic_axes=axes,
            opset_version=s.opset,
            do_constant_folding=True,
        )
    if external:
        _move_weights_outside(path)
    log.info("exported generator (%d MB of weights) to %s", nbytes // 2**20, path)
    return path


def _move_weights_outside(path: Path) -> None:
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path.name}: the exported graph could not be re-read ({exc})") from exc
    data = path.name + ".data"
    (path.parent / data).unlink(missing_ok=True)
    onnx.save_model(
        proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=1024
    )
