"""Preparing the AEI-Net generator for fast inference: device, precision, memory format, compile.

Precision notes (measured on the golden fixtures, see tests/test_models_golden.py):
- AEI-Net: every activation of the golden 2-block network stays below 4 in magnitude, far from
  fp16's 65504; GHOST itself runs the whole generator in fp16. Running it in float16 on CPU
  gives a max error of ~1.5e-2 on the [-1, 1] output; the AAD instance norms dominate it, so
  they are kept in float32 (`FP32_MODULES`), which brings the error down (see `fp16_error`
  in the report). bfloat16 is ~7x worse (~1e-1) and is not used by default.
- IResNet-100 (identity): with the golden weights activations pass 65504 from `layer3.18` on
  (up to 4e6 at `layer4`); insightface also runs its trunk in fp16 but the `fc` in float32.
  Identity embeddings are computed once per source, so `prepare_identity` keeps float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from streamswap.models.aei_net import AEINet, AEINetImage

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


def _to_float32(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def keep_float32(model: nn.Module, types: tuple[type[nn.Module], ...]) -> int:
    """Make every submodule of `types` compute in float32 inside a reduced-precision model: its
    parameters go to float32, its inputs are upcast and its output cast back to the dtype of its
    first input. State_dict keys are unchanged (hooks, no wrappers). Returns how many modules."""
    count = 0
    for mod in model.modules():
        if isinstance(mod, types):
            mod.float()
            dtypes: list[torch.dtype] = []

            def pre(m: nn.Module, args: tuple, _d: list[torch.dtype] = dtypes) -> tuple:
                _d[:] = [args[0].dtype]
                return _to_float32(m, args)

            def post(m: nn.Module, args: tuple, out: torch.Tensor, _d: list[torch.dtype] = dtypes) -> torch.Tensor:
                return out.to(_d[0])

            mod.register_forward_pre_hook(pre)
            mod.register_forward_hook(post)
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
        n = keep_float32(net, settings.fp32_modules)
        log.debug("generator in %s, %d modules kept in float32", dtype, n)
    if settings.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        # process-wide cuDNN switch: autotunes conv algorithms per input shape (fixed batches)
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    model: nn.Module = AEINetImage(net)
    if settings.compile:
        model = torch.compile(model, mode=settings.compile_mode)  # type: ignore[assignment]
    return model


def run_generator(model: nn.Module | Callable[..., torch.Tensor], x_t: torch.Tensor,
                  z_id: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """Swap one batch. x_t: (B, 3, 256, 256) RGB in [-1, 1]; z_id: (B, 512) identity embeddings,
    any float dtype/device. Returns (B, 3, 256, 256) float32 in [-1, 1] on the settings' device."""
    device, dtype = torch.device(settings.device), settings.dtype()
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    with torch.inference_mode():
        x = x_t.to(device=device, dtype=dtype, memory_format=fmt, non_blocking=True)
        z = z_id.to(device=device, dtype=dtype, non_blocking=True)
        return model(x, z).float()
