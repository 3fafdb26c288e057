"""The published ONNX face models, run by one of two runtimes behind one interface.

- "torch": the ONNX graph converted at load time with onnx2torch into a torch module that runs
  on the frames' device (fp16 on CUDA), no host copies, any batch size.
- "onnxruntime": an InferenceSession on the CPU EP, or the CUDA EP with IOBinding on torch CUDA
  tensors where onnxruntime-gpu is installed.

Both take a float input (B, C, H, W) and return the graph's outputs as float32 tensors on the
input's device. The published graphs fix batch 1 in their ONNX signature, but most flatten
their outputs with reshape(-1, ...), so they take a batch once the batch dimension is relaxed.
`load_onnx_runner` proves that per model at load: it runs batch 1 and batch 2 and checks that
batch 2 gives twice the rows and the same rows for the repeated item; where not, the runner
loops over the batch one item at a time (`runner.batched` is False) and says so in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from streamswap.compat.onnx2torch import hold_shape_constants_on_host, import_onnx2torch
from streamswap.errors import ModelError
from streamswap.transfer import to_device

log = logging.getLogger(__name__)

Runtime = Literal["torch", "onnxruntime"]
RUNTIMES: tuple[Runtime, ...] = ("torch", "onnxruntime")


# ---------------------------------------------------------------- model file and signature


@dataclass(frozen=True)
class OnnxSignature:
    """What a model file must look like. None in a shape means "any size".

    input_shape: the one input's (N, C, H, W); outputs: each output's trailing dims (the dims
    after the leading row/batch dim), checked where the file declares them as numbers.
    """

    kind: str
    input_shape: tuple[int | None, ...]
    outputs: tuple[tuple[int | None, ...], ...]


def _dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def load_onnx_model(path: str | Path, signature: OnnxSignature) -> Any:
    """Read and check an ONNX file against `signature`; returns the onnx.ModelProto.

    Raises ModelError when the file is missing, is not ONNX, or is not the expected kind of model.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{signature.kind} model not found: {path} (fetch it with `streamswap models fetch`)")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable ONNX file ({exc}); re-download it") from exc
    check_signature(model, signature, path)
    return model


def check_signature(model: Any, signature: OnnxSignature, path: str | Path) -> None:
    """Raise ModelError unless `model`'s inputs and outputs match `signature`."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    outputs = list(model.graph.output)
    where = f"{path} is not the expected {signature.kind}"
    if len(inputs) != 1:
        raise ModelError(f"{where}: it has {len(inputs)} inputs, expected 1")
    in_dims = _dims(inputs[0])
    if len(in_dims) != len(signature.input_shape) or any(
        want is not None and have is not None and want != have
        for want, have in zip(signature.input_shape, in_dims, strict=True)
    ):
        raise ModelError(f"{where}: input shape {in_dims}, expected {list(signature.input_shape)}")
    if len(outputs) != len(signature.outputs):
        raise ModelError(f"{where}: it has {len(outputs)} outputs, expected {len(signature.outputs)}")
    for out, want in zip(outputs, signature.outputs, strict=True):
        have = _dims(out)
        if not have:
            continue  # undeclared shape: the load-time probe checks it
        trailing = have[-len(want) :] if want else []
        if len(have) < len(want) + 1 or any(
            w is not None and h is not None and w != h for w, h in zip(want, trailing, strict=True)
        ):
            raise ModelError(f"{where}: output {out.name!r} has shape {have}, expected (rows, *{list(want)})")


def relax_batch_dims(model: Any) -> Any:
    """A copy of `model` for onnxruntime whose input has symbolic batch and spatial dims and whose
    outputs have symbolic dims but the last.

    The published files declare batch 1 (and SCRFD 640x640); onnxruntime would reject any other
    input before running a single node. Intermediate shape annotations are dropped for the same reason.
    """
    import onnx

    relaxed = onnx.ModelProto()
    relaxed.CopyFrom(model)
    del relaxed.graph.value_info[:]
    initializers = {i.name for i in relaxed.graph.initializer}
    for i, value in enumerate([v for v in relaxed.graph.input if v.name not in initializers]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = f"batch_{i}"
        for axis in range(2, len(dims)):  # spatial size may differ from the file's (detector size)
            dims[axis].dim_param = f"in_{i}_{axis}"
    for i, value in enumerate(relaxed.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis == 0 or axis < len(value.type.tensor_type.shape.dim) - 1:
                dim.dim_param = f"out_{i}_{axis}"
    return relaxed


# ---------------------------------------------------------------- runners


class OnnxRunner(Protocol):
    """Runs one ONNX model. x: (B, C, H, W) float on `device` -> list of float32 tensors on `device`."""

    runtime: Runtime
    provider: str  # what actually runs: "torch:cpu", "torch:cuda:0", "CPUExecutionProvider", ...
    device: torch.device
    batched: bool

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]: ...


class _RunnerBase:
    runtime: Runtime
    provider: str
    device: torch.device
    batched: bool = True
    # per output, the shape for one batch item (rows first), learnt by the load-time probe
    item_shapes: tuple[tuple[int, ...], ...] = ()

    def _run(self, x: torch.Tensor, quiet: bool = False) -> list[torch.Tensor]:
        """One forward pass on the whole of x. quiet: an expected failure (the probe) logs nothing."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) input, got {tuple(x.shape)}")
        if self.batched or x.shape[0] == 1:
            return self._run(x)
        parts = [self._run(x[i : i + 1]) for i in range(x.shape[0])]
        return [torch.cat(rows) for rows in zip(*parts, strict=True)]


class TorchRunner(_RunnerBase):
    """The ONNX graph converted to a torch module (onnx2torch), on `device`; fp16 if asked."""

    runtime: Runtime = "torch"

    def __init__(self, model: Any, device: torch.device, fp16: bool) -> None:
        onnx2torch = import_onnx2torch()
        try:
            module = onnx2torch.convert(model)
        except Exception as exc:  # noqa: BLE001 - any converter failure means this model cannot run here
            raise ModelError(f"onnx2torch cannot convert this model ({exc}); use the onnxruntime runtime") from exc
        hold_shape_constants_on_host(module)  # else every call reads them back from the GPU
        self.dtype = torch.float16 if fp16 else torch.float32
        # channels-last: faster convolutions with oneDNN on CPU and tensor cores on CUDA
        self.module = module.to(device=device, dtype=self.dtype, memory_format=torch.channels_last).eval()
        self.device = device
        self.provider = f"torch:{device}{':fp16' if fp16 else ''}"

    def _run(self, x: torch.Tensor, quiet: bool = False) -> list[torch.Tensor]:
        x = x.to(device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.module(x)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return [o.float() for o in outs]


class OrtRunner(_RunnerBase):
    """An onnxruntime session. On a CUDA device with onnxruntime-gpu it binds torch CUDA tensors
    (IOBinding: no host copies); otherwise it copies through host numpy arrays."""

    runtime: Runtime = "onnxruntime"

    def __init__(self, model: Any, device: torch.device, threads: int = 0) -> None:
        import onnxruntime as ort

        self.device = device
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        providers: list[Any] = ["CPUExecutionProvider"]
        self._stream: torch.cuda.Stream | None = None
        if device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                if hasattr(ort, "preload_dlls"):
                    ort.preload_dlls()
                # a stream of its own: onnxruntime reads a user_compute_stream of "0" (the legacy
                # default stream) as "none given", and the caller's stream is not known yet
                self._stream = torch.cuda.Stream(device)
                providers = [
                    (
                        "CUDAExecutionProvider",
                        {
                            "device_id": device.index or 0,
                            "cudnn_conv_algo_search": "HEURISTIC",  # EXHAUSTIVE re-tunes on every new shape
                            "user_compute_stream": str(self._stream.cuda_stream),
                        },
                    ),
                    "CPUExecutionProvider",
                ]
            else:
                log.warning("onnxruntime has no CUDA EP here (install onnxruntime-gpu); running on its CPU EP")
        data = relax_batch_dims(model).SerializeToString()
        try:
            self.session = ort.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own unrelated exception types
            raise ModelError(f"onnxruntime cannot load this model ({exc})") from exc
        self.provider = self.session.get_providers()[0]  # what actually runs (CUDA may silently fall back)
        self.io_binding = self.provider == "CUDAExecutionProvider"
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._quiet = ort.RunOptions()
        self._quiet.log_severity_level = 4
        self._async = ort.RunOptions()  # the IOBinding run: ordered by streams, not by a host wait
        self._async.add_run_config_entry("disable_synchronize_execution_providers", "1")

    def _run(self, x: torch.Tensor, quiet: bool = False) -> list[torch.Tensor]:
        if self.io_binding and x.is_cuda and self.item_shapes:
            return self._run_bound(x)
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = self.session.run(self.output_names, {self.input_name: array}, self._quiet if quiet else None)
        return to_device([np.asarray(o, dtype=np.float32) for o in outs], x.device, torch.float32)  # one copy

    def _run_bound(self, x: torch.Tensor) -> list[torch.Tensor]:
        # IOBinding on torch tensors (see GPU-NOTES): inputs and preallocated outputs stay on the GPU.
        x = x.detach().to(torch.float32).contiguous()
        b = x.shape[0] if self.batched else 1
        outs = [
            torch.empty((shape[0] * b, *shape[1:]), dtype=torch.float32, device=x.device) for shape in self.item_shapes
        ]
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", x.device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
        for name, out in zip(self.output_names, outs, strict=True):
            binding.bind_output(name, "cuda", out.device.index or 0, np.float32, tuple(out.shape), out.data_ptr())
        # ORT runs on its own stream: it waits for the caller's work on x, the caller for ORT's on
        # the outputs, both on the device; ORT does not wait for the device itself (run option)
        assert self._stream is not None  # io_binding implies the CUDA provider and its stream
        current = torch.cuda.current_stream(x.device)
        self._stream.wait_stream(current)
        x.record_stream(self._stream)
        self.session.run_with_iobinding(binding, self._async)
        current.wait_stream(self._stream)
        return outs


def _probe(runner: _RunnerBase, probe_shape: Sequence[int], kind: str) -> None:
    """Decide at load whether the runner takes a batch, and learn each output's per-item shape.

    Runs item A alone, then the batch [A, B]: a batching graph gives twice the rows, the first
    half equal to A's output. Anything else (an error, other row counts) means the graph hard-codes
    the batch: the runner then loops over items.
    """
    gen = torch.Generator().manual_seed(0)
    pair = (torch.rand((2, *probe_shape[1:]), generator=gen) * 2 - 1).to(runner.device)
    runner.batched = True
    try:
        single = runner._run(pair[:1])
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"the {kind} model does not run on a {tuple(probe_shape[1:])} input ({exc})") from exc
    runner.item_shapes = tuple(tuple(o.shape) for o in single)
    reason = ""
    try:
        double = runner._run(pair, quiet=True)
    except Exception as exc:  # noqa: BLE001
        double, reason = [], f"batch 2 fails ({str(exc).splitlines()[0][:120]})"
    if not reason:
        tol = 2e-2 if runner.provider.endswith("fp16") else 1e-3
        for s, d in zip(single, double, strict=True):
            if d.shape[0] != 2 * s.shape[0] or d.shape[1:] != s.shape[1:]:
                reason = f"batch 2 gives output shape {tuple(d.shape)} for {tuple(s.shape)} at batch 1"
                break
            scale = float(s.abs().max()) + 1.0
            if float((d[: s.shape[0]] - s).abs().max()) > tol * scale:
                reason = "batch 2 does not reproduce batch 1 row for row"
                break
    if reason:
        runner.batched = False
        log.warning("%s model: %s; the graph hard-codes its batch, running it one item at a time", kind, reason)
    else:
        log.info("%s model takes a batch (%s)", kind, runner.provider)


def load_onnx_runner(
    path: str | Path,
    signature: OnnxSignature,
    runtime: Runtime | None,
    device: torch.device | str,
    probe_shape: Sequence[int],
    fp16: bool | None = None,
    threads: int = 0,
    model: Any = None,
) -> _RunnerBase:
    """Load, check and probe one ONNX model.

    runtime: "torch" (onnx2torch) or "onnxruntime" (None: `default_runtime(device)`); device:
    where inputs and outputs live; fp16: torch runtime only, default True on CUDA; probe_shape:
    an input shape (B, C, H, W) the model must accept (B is ignored); threads: onnxruntime
    intra-op threads (0 = its default); model: `path` already read by `load_onnx_model` (a caller
    that reads the graph itself, e.g. for its normalisation, need not parse it twice).
    """
    device = torch.device(device)
    runtime = runtime or default_runtime(device)
    if model is None:
        model = load_onnx_model(path, signature)
    if runtime == "torch":
        runner: _RunnerBase = TorchRunner(model, device, fp16=device.type == "cuda" if fp16 is None else fp16)
    elif runtime == "onnxruntime":
        runner = OrtRunner(model, device, threads=threads)
    else:
        raise ValueError(f"unknown ONNX runtime {runtime!r}; choose one of {RUNTIMES}")
    _probe(runner, probe_shape, signature.kind)
    log.info(
        "%s: %s runtime on %s (%s)",
        Path(path).name,
        runtime,
        runner.provider,
        "batched" if runner.batched else "looping over the batch",
    )
    return runner


def default_runtime(device: torch.device | str) -> Runtime:
    """The runtime used when none is asked for.

    CUDA: torch (frames stay on the GPU, fp16, any batch, nothing beyond torch to install).
    CPU: onnxruntime, which measured faster there: on a stand-in with scrfd_10g's compute
    (10.7 GFLOPs per 640x640 frame) on 2 shared cores, best of interleaved rounds, 43-75 ms per
    frame against torch's 90-240 ms at batch 1, and still ahead at batch 4-8
    (streamswap/bench/detect.py, benchmarks/results/detect.json)."""
    return "torch" if torch.device(device).type == "cuda" else "onnxruntime"


def model_node_names(model: Any, first: int = 8) -> list[str]:
    """The names of the graph's first nodes (insightface reads input normalisation off them)."""
    return [n.name for n in model.graph.node[:first]]
