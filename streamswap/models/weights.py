"""Building GHOST's networks by their published names and loading their weights strictly.

`load_weights` is the one loader: a published `.pth` (a plain state_dict, or one wrapped in
{"state_dict"|"model"|"net": ...}, possibly with DataParallel "module." prefixes) or a
`.safetensors` file, read with `torch.load(weights_only=True)` (never unpickling code), then
checked key by key and shape by shape against the module. Any mismatch is a `ModelError`
naming the file and the first offending keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import torch
from torch import nn

from streamswap.errors import ModelError

log = logging.getLogger(__name__)

_WRAPPERS = ("state_dict", "model", "net")
_SHOW = 5  # keys listed per kind of mismatch

# Published weight name -> (network kind, constructor settings). Data only.
MODEL_BUILDS: Mapping[str, tuple[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "G_unet_1block": ("aei_net", {"num_blocks": 1}),
        "G_unet_2blocks": ("aei_net", {"num_blocks": 2}),
        "G_unet_3blocks": ("aei_net", {"num_blocks": 3}),
        "D_unet_1block": ("discriminator", {}),
        "D_unet_2blocks": ("discriminator", {}),
        "D_unet_3blocks": ("discriminator", {}),
        "backbone": ("iresnet", {"depth": "r100"}),
        "10_net_G": ("sr", {}),
        "WFLW_4HG": ("awl_fan", {"num_modules": 4, "num_landmarks": 98, "end_relu": True}),
    }
)

# Network kind -> its inputs (name -> shape without the batch dimension) and what it returns.
MODEL_INPUTS: Mapping[str, Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        "aei_net": {"x_t": (3, 256, 256), "z_id": (512,)},
        "discriminator": {"x": (3, 256, 256)},
        "iresnet": {"x": (3, 112, 112)},
        "sr": {"x": (3, 256, 256)},
        "awl_fan": {"x": (3, 256, 256)},
    }
)


def _construct(kind: str, settings: Mapping[str, Any]) -> nn.Module:
    # imports here: building one network should not import the others' modules
    if kind == "aei_net":
        from streamswap.models.aei_net import AEINet, AEINetConfig

        return AEINet(AEINetConfig(**settings))
    if kind == "discriminator":
        from streamswap.models.discriminator import MultiscaleDiscriminator

        return MultiscaleDiscriminator(**settings)
    if kind == "iresnet":
        from streamswap.models.arcface import IResNet

        return IResNet(**settings)
    if kind == "sr":
        from streamswap.models.sr import SRConfig, SRGenerator

        return SRGenerator(SRConfig(**settings))
    if kind == "awl_fan":
        from streamswap.models.awl_fan import FAN

        return FAN(**settings)
    raise ValueError(f"unknown network kind {kind!r}")


def model_kind(name: str) -> str:
    """The network kind of a published model name (e.g. "G_unet_2blocks" -> "aei_net")."""
    name = _plain_name(name)
    if name not in MODEL_BUILDS:
        raise ModelError(f"unknown model {name!r}: choose one of {', '.join(MODEL_BUILDS)}")
    return MODEL_BUILDS[name][0]


def _plain_name(name: str) -> str:
    return name.removesuffix(".pth").removesuffix(".safetensors")


def build_model(
    name: str, weights: str | Path | None = None, *, device: str | torch.device = "cpu", **overrides: Any
) -> nn.Module:
    """Build the network published as `name` (see `MODEL_BUILDS`; ".pth" may be included), on
    CPU in float32, in eval mode. With `weights`, its parameters come from that file (strictly
    checked) and random initialisation is skipped. `overrides` change constructor settings
    (e.g. `encoder="linknet"`)."""
    kind = model_kind(name)
    settings = {**MODEL_BUILDS[_plain_name(name)][1], **overrides}
    if weights is None:
        return _construct(kind, settings).to(device).eval()
    with torch.device("meta"):  # no init cost: every tensor comes from the file
        model = _construct(kind, settings)
    load_weights(model, weights)
    return model.to(device).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_model(name: str) -> dict[str, Any]:
    """What `streamswap models info NAME` shows: kind, class, parameter count, size, and the
    input/output shapes ("B" = batch). Computed on the meta device: no memory, no weights."""
    kind = model_kind(name)
    plain = _plain_name(name)
    with torch.device("meta"):
        model = _construct(kind, MODEL_BUILDS[plain][1]).eval()
        inputs = {k: torch.empty(1, *s) for k, s in MODEL_INPUTS[kind].items()}
        with torch.no_grad():
            out = model(*inputs.values())
    n = count_parameters(model)
    return {
        "name": plain,
        "kind": kind,
        "class": type(model).__name__,
        "settings": dict(MODEL_BUILDS[plain][1]),
        "parameters": n,
        "parameters_millions": round(n / 1e6, 2),
        "float32_megabytes": round(sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 2**20, 1),
        "state_dict_entries": len(model.state_dict()),
        "inputs": {k: ["B", *s] for k, s in MODEL_INPUTS[kind].items()},
        "outputs": _shapes(out),
    }


def _shapes(out: Any) -> Any:
    if torch.is_tensor(out):
        return ["B", *out.shape[1:]]
    if isinstance(out, (tuple, list)):
        return [_shapes(o) for o in out]
    return repr(out)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and without "module." prefixes. Never runs
    pickled code. Raises ModelError when the file is absent, corrupt or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file (fetch it with `streamswap models fetch`)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"{path.name}: not a readable safetensors file ({_first_line(exc)}); re-download it"
            ) from exc
    else:
        obj = _torch_load(path)
    return _unwrap(obj, path)


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as first:  # noqa: BLE001 - every failure becomes one ModelError below
        exc: BaseException = first
        if "mmap" in str(first).lower() or "zip" in str(first).lower():
            try:  # legacy (pre-zip) checkpoints cannot be memory-mapped
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as second:  # noqa: BLE001
                exc = second
    text = str(exc)
    if "weights only load failed" in text.lower() or "unsupported global" in text.lower():
        # name what it wanted to run; torch's own advice (weights_only=False) is not for us
        found = re.search(r"Unsupported (global: GLOBAL \S+|operand \d+)", text)
        why = found.group(0) if found else "not a tensors-only pickle"
        raise ModelError(
            f"{path.name}: refused to load - it holds pickled code or objects, not only "
            f"tensors ({why[:200]}); use the published file or a .safetensors copy"
        ) from exc
    raise ModelError(
        f"{path.name}: not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)}); re-download it"
    ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    )


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        if _is_tensor_dict(obj):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj, Mapping) and k in obj), None)
        if inner is None:
            break
        obj = inner
    if not _is_tensor_dict(obj):
        what = f"keys {sorted(map(str, obj))[:_SHOW]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise ModelError(
            f"{path.name}: holds no state_dict ({what}); expected tensors by name "
            f"or one wrapped in {'/'.join(_WRAPPERS)}"
        )
    out = {}
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ModelError unless `state` has exactly `module`'s keys with the same shapes.
    BatchNorm `num_batches_tracked` counters may be absent (older checkpoints lack them)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped (file vs model)", misshaped)):
        if keys:
            more = f", +{len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOW])}{more}")
    raise ModelError(
        f"{source} does not fit {type(module).__name__} - {'; '.join(parts)}. "
        "Is it the right model file for this network?"
    )


_M = TypeVar("_M", bound=nn.Module)


def load_weights(module: _M, path: str | Path) -> _M:
    """Load a published checkpoint (`.pth` or `.safetensors`) into `module`, strictly.

    Works for a module built on the meta device too (its tensors are then taken from the file).
    Floating tensors are cast to the module's dtypes. Returns `module`. Raises ModelError."""
    path = Path(path)
    state = read_state_dict(path)
    check_state_dict(module, state, path.name)
    own = module.state_dict()
    on_meta = any(t.is_meta for t in own.values())
    fixed = {}
    for key, ref in own.items():
        value = state.get(key)
        if value is None:  # an absent num_batches_tracked counter
            value = torch.zeros((), dtype=torch.long)
        if value.is_floating_point() and value.dtype != ref.dtype:
            value = value.to(ref.dtype)
        fixed[key] = value.to(ref.device) if not on_meta else value
    module.load_state_dict(fixed, strict=True, assign=on_meta)
    log.debug("loaded %d tensors from %s into %s", len(fixed), path, type(module).__name__)
    return module
