"""Preparing the AEI-Net generator for fast inference: device, precision, memory format, compile.

Precision notes (measured on the golden fixtures, CPU emulation of fp16):
- AEI-Net: every activation of the golden 2-block network stays below 4 in magnitude, far from
  fp16's 65504; GHOST itself runs the whole generator in fp16. The whole 1-block generator in
  float16 is off the float32 output by at most 1.5e-2 (mean 8e-4) on the [-1, 1] scale; with
  the AAD instance norms in float32 (`FP32_MODULES`) at most 9e-3 (mean 6e-4; one uint8
  step is 2/255 = 7.8e-3). Keeping the identity fcs or whole AAD layers in float32 gains nothing more.
  bfloat16 is ~7x worse (max 7e-2) and is never chosen automatically.
- IResNet-100 (identity): with the golden weights activations pass 65504 from `layer3.18` on
  (up to 4e6 at `layer4`); insightface also runs its trunk in fp16 but the `fc` in float32.
  Identity embeddings are computed once per source, so `prepare_identity` keeps float32.
- SR (LIP-SPADE): float32; `prepare_sr` picks GHOST's "reference" mode by default (sr.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import nn

from streamswap.models.aei_net import AEINet, AEINetImage
from streamswap.models.arcface import IResNet
from streamswap.models.sr import SRGenerator, SRMode, set_sr_mode

log = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "float16", "bfloat16"]

# Module types run in float32 inside a reduced-precision generator (their inputs are upcast,
# their outputs cast back). Instance-norm statistics are the precision-sensitive step.
FP32_MODULES: tuple[type[nn.Module], ...] = (nn.InstanceNorm2d,)


@dataclass(frozen=True)
class InferenceSettings:
    """How to run the generator. `precision="auto"`: float16 on CUDA, float32 elsewhere.
    The batch size is the caller's choice (GHOST uses 40 on GPU)."""

    device: str = "cpu"
    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None  # e.g. "max-autotune"; None = torch's default
    cudnn_benchmark: bool = True
    fp32_modules: tuple[type[nn.Module], ...] = FP32_MODULES

    def dtype(self) -> torch.dtype:
        """The dtype the generator's weights and activations use."""
        if self.precision == "auto":
            return torch.float16 if torch.device(self.device).type == "cuda" else torch.float32
        return getattr(torch, self.precision)


def _upcast(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def keep_float32(model: nn.Module, types: tuple[type[nn.Module], ...], dtype: torch.dtype) -> int:
    """Make every submodule of `types` compute in float32 inside a model running in `dtype`:
    its parameters go to float32, its inputs are upcast and its output cast back to `dtype`.
    State_dict keys are unchanged (hooks, no wrappers). Returns how many modules."""
    count = 0
    for mod in model.modules():
        if isinstance(mod, types):
            mod.float()
            mod.register_forward_pre_hook(_upcast)
            mod.register_forward_hook(lambda m, args, out: out.to(dtype))
            count += 1
    return count


def prepare_generator(net: AEINet, settings: InferenceSettings) -> nn.Module:
    """An inference-ready generator `g(x_t, z_id) -> image` built from a loaded AEI-Net.

    Moves `net` (in place) to the device and precision, eval mode, no grads, channels_last,
    cudnn.benchmark on CUDA, optionally torch.compile. Call it under `run_generator` or
    `torch.inference_mode()`; inputs must match the returned dtype/device (`run_generator` does it).
    """
    device = torch.device(settings.device)
    dtype = settings.dtype()
    net = net.eval().requires_grad_(False).to(device=device, dtype=dtype)
    if dtype != torch.float32 and settings.fp32_modules:
        n = keep_float32(net, settings.fp32_modules, dtype)
        log.debug("generator in %s, %d modules kept in float32", dtype, n)
    if settings.channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented; the stubs omit it
    if device.type == "cuda":
        # process-wide cuDNN switch: autotunes conv algorithms per input shape (fixed batches)
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    model: nn.Module = AEINetImage(net)
    if settings.compile:
        # a Module in, an OptimizedModule (a Module) out; the stub types the result as a Callable
        model = cast(nn.Module, torch.compile(model, mode=settings.compile_mode))
    return model


def run_generator(
    model: nn.Module | Callable[..., torch.Tensor], x_t: torch.Tensor, z_id: torch.Tensor, settings: InferenceSettings
) -> torch.Tensor:
    """Swap one batch. x_t: (B, 3, 256, 256) RGB in [-1, 1]; z_id: (B, 512) identity embeddings,
    any float dtype/device. Returns (B, 3, 256, 256) float32 in [-1, 1] on the settings' device."""
    device, dtype = torch.device(settings.device), settings.dtype()
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    with torch.inference_mode():
        x = x_t.to(device=device, dtype=dtype, memory_format=fmt, non_blocking=True)
        z = z_id.to(device=device, dtype=dtype, non_blocking=True)
        return model(x, z).float()


def prepare_identity(net: IResNet, device: str = "cpu") -> IResNet:
    """The identity encoder for inference: eval, no grads, float32 on `device` (in place).
    Input (B, 3, 112, 112) float32 RGB in [-1, 1] on `device`; output (B, 512) raw embeddings."""
    return net.eval().requires_grad_(False).to(device=torch.device(device), dtype=torch.float32)


def prepare_sr(net: SRGenerator, device: str = "cpu", mode: SRMode = "reference") -> SRGenerator:
    """The face SR generator for inference: float32 on `device`, no grads, in `mode` (default
    "reference" = GHOST's train-mode batch statistics; see sr.py). Input (B, 3, 256, 256) RGB in
    [0, 1]; output in [-1, 1], which GHOST clamps to [0, 1]."""
    net = net.requires_grad_(False).to(device=torch.device(device), dtype=torch.float32)
    return set_sr_mode(net, mode)
