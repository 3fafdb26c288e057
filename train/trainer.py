"""The GHOST training loop: one process, or one per GPU under `torchrun` (DistributedDataParallel).

One step follows the reference order: identity of the source (no grad) -> generator step
(G(X_t, z_s), D(Y) with D's weights out of the graph, ArcFace(Y), eye heatmaps, attribute maps
of Y; weighted loss; Adam) -> discriminator step on Y detached and X_s (hinge; Adam). Rank 0
writes TensorBoard logs and checkpoints; checkpoints hold every rank's RNG and data position,
so a resumed run continues bit for bit (on CPU; GPU kernels may not be deterministic).

A loss that turns NaN or Inf stops the run at that step with one line (`NonFiniteLossError`),
before anything of that step is saved, and a checkpoint is never written from weights that hold
NaN/Inf: the newest checkpoint on disk is always the last finite state, and `keep_checkpoints`
rotation never removes it in favour of a diverged one. Debugging aid: STREAMSWAP_TRAIN_NAN_AT=N
makes step N's generator loss NaN (as a real divergence would: the update spreads it into the weights).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from streamswap.errors import InputError, StreamSwapError
from streamswap.models.aei_net import AEINet
from train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from train.losses import (
    GeneratorTerms,
    adversarial_loss,
    attribute_loss,
    discriminator_loss,
    eye_heatmap_loss,
    identity_loss,
    reconstruction_loss,
    to_arcface,
)
from train.networks import Networks, build_networks
from train.settings import TrainSettings

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
LoaderFactory = Callable[..., Any]            # build_loader(data, rank=, world_size=, device=)
FixedBatchFn = Callable[[Any, int], Batch]    # fixed_batch(data, n)
StepCallback = Callable[[int, int, dict[str, float]], None]  # (step, total steps, losses)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAN_AT_ENV = "STREAMSWAP_TRAIN_NAN_AT"


class NonFiniteLossError(StreamSwapError):
    """Training diverged: a loss (or the weights about to be saved) became NaN or Inf. The run
    stopped without saving that state; the checkpoints already written are untouched."""

    exit_code = 6


# -- processes and devices -----------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DistInfo:
        env = dict(os.environ if env is None else env)
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def resolve_device(setting: str, info: DistInfo) -> torch.device:
    """"auto": cuda:LOCAL_RANK when CUDA exists, else CPU; "cuda" also picks LOCAL_RANK's GPU."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {setting}: no CUDA device here; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
    return device


@contextlib.contextmanager
def process_group(info: DistInfo, device: torch.device) -> Iterator[None]:
    """torch.distributed from torchrun's environment (NCCL on CUDA, gloo on CPU), torn down after."""
    if info.world_size <= 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        # no rank tears its connections down while a peer may still be in the last collective
        # (CI once saw rank 1 abort at teardown, "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), as DDP does at the start
    of each forward: after a step they differ, each rank having seen its own shard."""
    if info.world_size <= 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def _gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, in rank order (just [obj] alone)."""
    if info.world_size <= 1:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


# -- small helpers -------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[None]:
    """Parameters out of the autograd graph for a while (gradients still reach the inputs)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def preserved_buffers(module: nn.Module) -> Iterator[None]:
    """Undo BatchNorm running-statistic updates made inside (evaluation in train mode)."""
    saved = {k: v.clone() for k, v in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in module.named_buffers():
                v.copy_(saved[k])


def _instance_norm_fp32(norm: nn.Module) -> None:
    # AAD's instance-norm statistics are the precision-sensitive step (models/inference.py)
    inner = norm.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return inner(x.float())

    norm.forward = forward


def norms_in_float32(model: nn.Module) -> int:
    """Run every InstanceNorm2d of `model` in float32 under autocast. Returns how many."""
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    for m in norms:
        _instance_norm_fp32(m)
    return len(norms)


def state_digest(*modules: nn.Module) -> str:
    """SHA-256 over the modules' state_dict tensors (names and bytes): equal iff bitwise equal."""
    h = hashlib.sha256()
    for module in modules:
        for key, value in sorted(module.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def batch_digest(batch: Batch) -> str:
    h = hashlib.sha256()
    for key in sorted(batch):
        h.update(batch[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def image_grid(source: torch.Tensor, target: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """One row per sample: source | target | result. Inputs (B, 3, S, S) in [-1, 1] -> (3, B*S, 3*S)
    float32 in [0, 1] on CPU (TensorBoard's CHW image)."""
    rows = torch.cat([source, target, result], dim=3).float().cpu()     # (B, 3, S, 3S)
    return (torch.cat(list(rows), dim=1) * 0.5 + 0.5).clamp(0, 1)       # (3, B*S, 3S)


class GeneratorStep(nn.Module):
    """G's whole forward for one step, so DDP sees one call: result and both attribute maps.
    x_t (B, 3, 256, 256) in [-1, 1], z_id (B, id_dim) -> (Y, z_attr(X_t), z_attr(Y))."""

    def __init__(self, generator: AEINet) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x_t: torch.Tensor, z_id: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...],
                                                                       tuple[torch.Tensor, ...]]:
        y, attrs_t = self.generator(x_t, z_id)
        return y, attrs_t, self.generator.get_attr(y)


# -- the report ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FitReport:
    """What a run did (rank 0's view; the per-rank lists hold every rank's value)."""

    start_step: int
    end_step: int
    seconds: float
    steps_per_s: float
    device: str
    precision: str
    world_size: int
    losses: dict[str, float]                 # the last step's terms, "G" and "D"
    fixed_rec_start: float                   # reconstruction loss on the fixed batch, before...
    fixed_rec_end: float                     # ... and after this run's steps
    checkpoint: str | None
    log_dir: str
    rank_weights_sha256: list[str] = field(default_factory=list)   # G+D after the run, per rank
    rank_first_batch_sha256: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the trainer ---------------------------------------------------------------------------
class Trainer:
    """Builds the networks, optimisers and data for `settings`, then `fit()` runs the steps.

    data: a `train.data.DataSettings` (its batch size is replaced by settings.batch_size).
    loader_factory / fixed_batch_fn: `train.data.build_loader` / `fixed_batch` by default."""

    def __init__(self, settings: TrainSettings, data: Any, *, loader_factory: LoaderFactory | None = None,
                 fixed_batch_fn: FixedBatchFn | None = None, info: DistInfo | None = None) -> None:
        if loader_factory is None or fixed_batch_fn is None:
            from train.data import build_loader, fixed_batch

            loader_factory = loader_factory or build_loader
            fixed_batch_fn = fixed_batch_fn or fixed_batch
        self.settings = settings
        self.data = replace(data, batch_size=settings.batch_size)
        self.loader_factory, self.fixed_batch_fn = loader_factory, fixed_batch_fn
        self.info = info or DistInfo.from_env()
        self.device = resolve_device(settings.device, self.info)
        self.dtype = _DTYPES[settings.precision]
        self.step = 0
        nan_at = os.environ.get(NAN_AT_ENV, "").strip()
        self._nan_at = int(nan_at) if nan_at.isdigit() else None  # debugging aid: see the module docstring

    # building ---------------------------------------------------------------------------
    def _build(self) -> None:
        s, dev = self.settings, self.device
        torch.manual_seed(s.seed)  # the same initial weights on every rank (DDP also broadcasts)
        nets = build_networks(s.model, eyes=s.weights.eyes > 0, init_g=s.init_g, init_d=s.init_d,
                              models_dir=s.models_dir)
        self.nets = Networks(nets.generator.to(dev).train(), nets.discriminator.to(dev).train(),
                             nets.identity.to(dev), nets.eyes.to(dev) if nets.eyes is not None else None)
        if self.dtype != torch.float32:
            norms_in_float32(self.nets.generator)
            norms_in_float32(self.nets.discriminator)
        self.g_step = GeneratorStep(self.nets.generator)
        self.g_ddp: nn.Module = self.g_step
        self.d_ddp: nn.Module = self.nets.discriminator
        if self.info.world_size > 1:
            ids = [dev.index] if dev.type == "cuda" else None
            self.g_ddp = DistributedDataParallel(self.g_step, device_ids=ids)
            self.d_ddp = DistributedDataParallel(self.nets.discriminator, device_ids=ids)

        def adam(module: nn.Module) -> torch.optim.Adam:
            return torch.optim.Adam(module.parameters(), lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)

        self.opt_g, self.opt_d = adam(self.nets.generator), adam(self.nets.discriminator)
        self.sched_g = self.sched_d = None
        if s.scheduler:
            self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, s.scheduler_step, s.scheduler_gamma)
            self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, s.scheduler_step, s.scheduler_gamma)
        fp16 = s.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(dev.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(dev.type, enabled=fp16)
        self.loader = self.loader_factory(self.data, rank=self.info.rank, world_size=self.info.world_size,
                                          device=dev)
        with _preserved_rng():  # the fixed batch must not move any random stream
            fixed = self.fixed_batch_fn(self.data, s.fixed_batch_size)
        self.fixed = {k: v.to(dev) for k, v in fixed.items()}

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _frozen_autocast(self) -> contextlib.AbstractContextManager[Any]:
        # IResNet's activations pass fp16's range (models/inference.py): frozen nets in fp32 then
        return torch.autocast(device_type=self.device.type, dtype=self.dtype, enabled=self.dtype == torch.bfloat16)

    # one step -----------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One G step then one D step on `batch`. Returns the loss values (floats)."""
        w = self.settings.weights
        xs, xt, same = batch["source"], batch["target"], batch["same"].float()
        diff = 1.0 - same
        with torch.no_grad(), self._frozen_autocast():
            z_s = self.nets.identity(to_arcface(xs)).float()

        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            y, attrs_t, attrs_y = self.g_ddp(xt, z_s)
            with frozen_parameters(self.nets.discriminator):  # G's loss trains G only
                fake_for_g = self.nets.discriminator(y)
        with self._frozen_autocast():
            z_y = self.nets.identity(to_arcface(y.float()))  # fp16 runs: frozen nets see float32
            eyes = None
            if self.nets.eyes is not None and w.eyes > 0:
                with torch.no_grad():
                    heat_t = self.nets.eyes(xt)
                eyes = eye_heatmap_loss(heat_t, self.nets.eyes(y.float()))
        terms = GeneratorTerms(adversarial_loss(fake_for_g, diff), identity_loss(z_s, z_y),
                               attribute_loss(attrs_t, attrs_y), reconstruction_loss(y, xt, same), eyes)
        loss_g = terms.total(w)
        if self._nan_at is not None and self.step + 1 == self._nan_at:
            loss_g = loss_g * float("nan")  # STREAMSWAP_TRAIN_NAN_AT: a divergence on purpose
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        if self.sched_g is not None:
            self.sched_g.step()

        self.opt_d.zero_grad(set_to_none=True)
        n = xs.shape[0]
        with self._autocast():
            logits = self.d_ddp(torch.cat([y.detach().to(xs.dtype), xs]))  # one call: instance norms are per sample
        loss_d = discriminator_loss([d[:n] for d in logits], [d[n:] for d in logits], diff)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        if self.sched_d is not None:
            self.sched_d.step()
        return {**terms.as_floats(), "G": float(loss_g.detach()), "D": float(loss_d.detach())}

    # the fixed batch ------------------------------------------------------------------------
    @torch.no_grad()
    def fixed_reconstruction(self) -> tuple[float, torch.Tensor]:
        """Reconstruction loss of the fixed batch's targets with their own identity (train-mode
        statistics, buffers restored), and the swap grid source | target | G(target, id(source))."""
        f, g = self.fixed, self.nets.generator
        with preserved_buffers(g), self._autocast():
            z_t = self.nets.identity(to_arcface(f["target"])).float()
            rec, _ = g(f["target"], z_t)
            z_s = self.nets.identity(to_arcface(f["source"])).float()
            swap, _ = g(f["target"], z_s)
        loss = reconstruction_loss(rec, f["target"], torch.ones_like(f["same"]))
        return float(loss), image_grid(f["source"], f["target"], swap)

    # checkpoints ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        per_rank = _gather({"rng": rng_state(), "loader": _loader_state(self.loader)}, self.info)
        return {
            "format": "streamswap-train-1",
            "step": self.step,
            "settings": json.dumps(_jsonable(asdict(self.settings))),
            "world_size": self.info.world_size,
            "generator": self.nets.generator.state_dict(),
            "discriminator": self.nets.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict() if self.sched_g else {},
            "sched_d": self.sched_d.state_dict() if self.sched_d else {},
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "ranks": per_rank,
        }

    def _check_finite(self, losses: dict[str, float]) -> None:
        """NonFiniteLossError when a loss of this step is NaN/Inf on any rank (all ranks stop together)."""
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        anywhere = bool(bad)
        if self.info.world_size > 1:  # a rank alone must not stop: the others would wait in a collective
            flag = torch.tensor([1.0 if bad else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            anywhere = bool(flag.item())
        if not anywhere:
            return
        latest = latest_checkpoint(self.settings.checkpoint_dir)
        kept = (f"the newest checkpoint, {latest}, is the last finite state (continue from it with --resume, "
                "e.g. with a lower --lr or --precision fp32)" if latest is not None else "no checkpoint was written yet")
        what = (", ".join(f"{k} {losses[k]}" for k in bad) if bad else "on another process")
        raise NonFiniteLossError(f"step {self.step}: non-finite loss ({what}); training stopped without saving "
                                 f"this step: {kept}")

    def _nonfinite_tensor(self) -> str | None:
        """The name of a generator/discriminator tensor holding NaN/Inf, or None (one host sync)."""
        tensors = [(f"{net}.{k}", v) for net, module in (("generator", self.nets.generator),
                                                        ("discriminator", self.nets.discriminator))
                   for k, v in module.state_dict().items() if v.is_floating_point()]
        flags = torch.stack([torch.isfinite(v).all() for _, v in tensors])
        if bool(flags.all()):
            return None
        return tensors[int((~flags).nonzero()[0])][0]

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (every rank must call it; rank 0 writes).
        NonFiniteLossError, and nothing written, when the weights hold NaN/Inf."""
        bad = self._nonfinite_tensor()  # DDP ranks hold the same weights: all refuse together
        if bad is not None:
            latest = latest_checkpoint(self.settings.checkpoint_dir)
            raise NonFiniteLossError(f"step {self.step}: {bad} holds NaN/Inf; not saved (the newest checkpoint, "
                                     f"{latest or 'none yet'}, is kept)")
        state = self._state()
        if not self.info.is_main:
            return None
        path = save_checkpoint(state, checkpoint_path(self.settings.checkpoint_dir, self.step),
                               keep=self.settings.keep_checkpoints)
        log.info("checkpoint %s", path)
        return path

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.nets.generator.load_state_dict(state["generator"])
        self.nets.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.sched_g is not None and state["sched_g"]:
            assert self.sched_d is not None  # made together with sched_g
            self.sched_g.load_state_dict(state["sched_g"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.scaler_g.load_state_dict(state["scaler_g"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.step = int(state["step"])
        ranks = state["ranks"]
        mine = ranks[self.info.rank] if len(ranks) == self.info.world_size else None
        if mine is None:
            log.warning("checkpoint from %d processes resumed on %d: RNG and data positions restart from "
                        "rank 0's step", len(ranks), self.info.world_size)
            mine = {"rng": ranks[0]["rng"], "loader": {**(ranks[0]["loader"] or {}), "rank": self.info.rank}}
        _load_loader_state(self.loader, mine["loader"], self.step)
        set_rng_state(mine["rng"])
        log.info("resumed from %s at step %d", path, self.step)

    # the run -------------------------------------------------------------------------------------
    def fit(self, on_step: StepCallback | None = None) -> FitReport:
        """Train until settings.steps (counted from 0, including resumed steps). Returns the report."""
        s = self.settings
        latest = latest_checkpoint(s.checkpoint_dir)
        if latest is not None and not s.resume:
            raise InputError(f"{s.out_dir} already holds checkpoints (newest {latest.name}); pass --resume "
                             "to continue that run, or choose a new --out folder")
        with process_group(self.info, self.device):
            self._build()
            if s.resume and latest is None:
                log.info("--resume: no checkpoint in %s yet; starting at step 0", s.checkpoint_dir)
            elif latest is not None:
                self._restore(latest)
            return self._run(on_step)

    def _run(self, on_step: StepCallback | None) -> FitReport:
        from torch.utils.tensorboard import SummaryWriter

        s, main = self.settings, self.info.is_main
        start = self.step
        writer = SummaryWriter(str(s.log_dir), purge_step=start if start else None) if main else None
        rec_start, grid = self.fixed_reconstruction() if main else (float("nan"), None)
        if writer is not None and start == 0:
            writer.add_scalar("fixed/rec", rec_start, 0)
            writer.add_image("images/source_target_result", grid, 0)
        losses: dict[str, float] = {}
        first_batch = ""
        saved: Path | None = None
        t0 = time.perf_counter()
        try:
            while self.step < s.steps:
                batch = next(self.loader)
                if not first_batch:
                    first_batch = batch_digest(batch)
                losses = self.train_step({k: v.to(self.device) for k, v in batch.items()})
                self.step += 1
                self._check_finite(losses)  # before anything of this step is logged or saved
                done = self.step == s.steps
                if writer is not None and (self.step % s.log_every == 0 or done):
                    for name, value in losses.items():
                        writer.add_scalar(f"loss/{name}", value, self.step)
                    writer.add_scalar("lr/G", self.opt_g.param_groups[0]["lr"], self.step)
                    writer.add_scalar("speed/steps_per_s", (self.step - start) / (time.perf_counter() - t0),
                                      self.step)
                if writer is not None and (self.step % s.image_every == 0 or done):
                    rec, grid = self.fixed_reconstruction()
                    writer.add_scalar("fixed/rec", rec, self.step)
                    writer.add_image("images/source_target_result", grid, self.step)
                if self.step % s.checkpoint_every == 0 or done:
                    saved = self.save() or saved
                if on_step is not None and main:
                    on_step(self.step, s.steps, losses)
        finally:
            if writer is not None:
                writer.close()
            close = getattr(self.loader, "close", None)
            if close is not None:
                close()
        seconds = time.perf_counter() - t0
        broadcast_buffers(self.nets.generator, self.info)
        rec_end = self.fixed_reconstruction()[0] if main else float("nan")
        digests = _gather(state_digest(self.nets.generator, self.nets.discriminator), self.info)
        batches = _gather(first_batch, self.info)
        done_steps = self.step - start
        return FitReport(start_step=start, end_step=self.step, seconds=round(seconds, 3),
                         steps_per_s=round(done_steps / seconds, 4) if seconds > 0 and done_steps else 0.0,
                         device=str(self.device), precision=s.precision, world_size=self.info.world_size,
                         losses=losses, fixed_rec_start=rec_start, fixed_rec_end=rec_end,
                         checkpoint=str(saved) if saved else None, log_dir=str(s.log_dir),
                         rank_weights_sha256=digests, rank_first_batch_sha256=batches)


def fit(settings: TrainSettings, data: Any, *, on_step: StepCallback | None = None, **kwargs: Any) -> FitReport:
    """Build a `Trainer` and run it (see Trainer for the keyword arguments)."""
    return Trainer(settings, data, **kwargs).fit(on_step)


# -- helpers for state ------------------------------------------------------------------------
@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _loader_state(loader: Any) -> dict[str, Any] | None:
    fn = getattr(loader, "state_dict", None)
    return fn() if fn is not None else None


def _load_loader_state(loader: Any, state: dict[str, Any] | None, step: int) -> None:
    fn = getattr(loader, "load_state_dict", None)
    if fn is not None and state is not None:
        fn(state)
        return
    log.warning("the data loader has no saved position: skipping %d batches to resume", step)
    for _ in range(step):
        next(loader)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
