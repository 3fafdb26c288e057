"""The training commands: `python -m train ...` and `streamswap train ...` (the same typer app).

fit     train GHOST (from scratch, fine-tune with --init-g/--init-d, or --resume); under
        `torchrun --nproc-per-node N -m train fit ...` one process per GPU (DDP).
export  write a checkpoint's generator as `G_unet_N...pth`, the file `swap --engine ghost` loads.
prepare (from train/prepare_cli.py) aligned 224 crops from photos/videos.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from streamswap.app import run_app
from streamswap.errors import InputError

train_app = typer.Typer(help="Train the GHOST generator: prepare data, fit, export.", no_args_is_help=True,
                        add_completion=False, pretty_exceptions_enable=False)


@train_app.callback()
def _group() -> None:
    """Training GHOST's AEI-Net (losses, DDP, checkpoints, TensorBoard, export)."""


def _settings(**o: Any) -> tuple[Any, Any]:
    from train.data import DataSettings
    from train.settings import PRECISIONS, LossWeights, ModelSettings, TrainSettings

    if not o["data"].is_dir():
        raise InputError(f"--data {o['data']}: no such folder; give a dataset made by `train prepare` "
                         "(identity sub-folders of 224 crops)")
    if o["precision"] not in PRECISIONS:
        raise InputError(f"--precision {o['precision']}: choose one of {', '.join(PRECISIONS)}")
    for flag in ("init_g", "init_d", "arcface", "eye_net"):
        if o[flag] is not None and not o[flag].is_file():
            raise InputError(f"--{flag.replace('_', '-')} {o[flag]}: no such file")
    if o["tiny"]:
        model = ModelSettings.tiny(blocks=o["blocks"])
    else:
        model = ModelSettings(blocks=o["blocks"], arcface_weights=o["arcface"], eye_weights=o["eye_net"])
    weights = LossWeights(adv=o["w_adv"], attr=o["w_attr"], id=o["w_id"], rec=o["w_rec"], eyes=o["w_eyes"])
    try:
        settings = TrainSettings(
            out_dir=o["out"], steps=o["steps"], batch_size=o["batch_size"], lr=o["lr"], scheduler=o["scheduler"],
            weights=weights, model=model, precision=o["precision"], checkpoint_every=o["checkpoint_every"],
            keep_checkpoints=o["keep"], log_every=o["log_every"], image_every=o["image_every"], seed=o["seed"],
            device=o["device"], init_g=o["init_g"], init_d=o["init_d"], resume=o["resume"],
            models_dir=o["models_dir"])
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    data = DataSettings(root=o["data"], batch_size=o["batch_size"], same_person=o["same_person"],
                        augment=o["augment"], workers=o["workers"], seed=o["seed"], loader=o["loader"])
    return settings, data


@train_app.command("fit")
def fit_command(
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder (`train prepare` output)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints/, logs/ (TensorBoard)."),
    steps: int = typer.Option(100_000, "--steps", help="Train until this step (resumed steps count)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Per process (GHOST: 16)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 | fp16 (autocast; fp16 with GradScaler)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in --out."),
    init_g: Path = typer.Option(None, "--init-g", help="Fine-tune: a published G_unet_*.pth."),
    init_d: Path = typer.Option(None, "--init-d", help="Fine-tune: a published D_unet_*.pth."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random networks (CPU smoke runs, CI)."),
    blocks: int = typer.Option(2, "--blocks", help="AAD blocks per ResBlk: 1, 2 (GHOST's main) or 3."),
    lr: float = typer.Option(4e-4, "--lr", help="Adam learning rate (G and D)."),
    scheduler: bool = typer.Option(False, "--scheduler", help="StepLR(5000, 0.2) as GHOST's option."),
    w_adv: float = typer.Option(1.0, "--w-adv", help="Adversarial loss weight."),
    w_attr: float = typer.Option(10.0, "--w-attr", help="Attribute loss weight."),
    w_id: float = typer.Option(20.0, "--w-id", help="Identity loss weight."),
    w_rec: float = typer.Option(10.0, "--w-rec", help="Reconstruction loss weight."),
    w_eyes: float = typer.Option(0.0, "--w-eyes", help="Eye loss weight (GHOST: 0 at first; needs WFLW_4HG)."),
    same_person: float = typer.Option(0.2, "--same-person", help="Probability of a same-person pair."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="GHOST's colour jitter."),
    workers: int = typer.Option(0, "--workers", help="Data loader worker processes."),
    loader: str = typer.Option("torch", "--loader", help="torch | dali | auto."),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every", help="Steps between checkpoints."),
    keep: int = typer.Option(3, "--keep", help="Newest checkpoints kept (0: all)."),
    log_every: int = typer.Option(10, "--log-every", help="Steps between TensorBoard loss scalars."),
    image_every: int = typer.Option(500, "--image-every", help="Steps between TensorBoard image grids."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (torchrun: cuda:LOCAL_RANK)."),
    arcface: Path = typer.Option(None, "--arcface", help="backbone.pth (else the model cache)."),
    eye_net: Path = typer.Option(None, "--eye-net", help="WFLW_4HG.pth (else the model cache)."),
    models_dir: Path = typer.Option(None, "--models-dir", help="A folder holding backbone.pth / WFLW_4HG.pth."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0: torch's default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Train GHOST's generator and discriminator (all losses, checkpoints, TensorBoard)."""
    import torch

    from train.trainer import DistInfo, Trainer

    settings, data_settings = _settings(**locals())
    if threads > 0:
        torch.set_num_threads(threads)
    info = DistInfo.from_env()
    show = info.is_main and not quiet and not as_json
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                  TimeRemainingColumn(), console=console, disable=not show) as progress:
        task = progress.add_task("fit", total=settings.steps, loss="")

        def on_step(step: int, total: int, losses: dict[str, float]) -> None:
            text = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
            progress.update(task, completed=step, loss=text)

        report = Trainer(settings, data_settings, info=info).fit(on_step)
    if not info.is_main:
        return
    summary = report.as_dict()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    elif not quiet:
        Console().print(f"steps {report.start_step} -> {report.end_step} in {report.seconds:.1f} s "
                        f"({report.steps_per_s:.2f} steps/s, {report.device}, {report.precision}, "
                        f"{report.world_size} process(es)); fixed-batch reconstruction "
                        f"{report.fixed_rec_start:.4f} -> {report.fixed_rec_end:.4f}; checkpoint {report.checkpoint}; "
                        f"TensorBoard: tensorboard --logdir {report.log_dir}", highlight=False, soft_wrap=True)


@train_app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint file, or a run folder (its newest checkpoint)."),
    out: Path = typer.Argument(..., help="A folder (writes G_unet_N...pth there) or a .pth file."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write the trained generator as the file `streamswap swap --engine ghost --models-dir DIR` loads."""
    from train.export import export_generator

    report = export_generator(checkpoint, out)
    if as_json:
        typer.echo(json.dumps({"path": str(report.path), "step": report.step, "blocks": report.blocks,
                               "swap_ready": report.swap_ready, "tensors": report.tensors}))
        return
    note = (f"use it with: streamswap swap --engine ghost --blocks {report.blocks} --models-dir {report.path.parent}"
            if report.swap_ready else "tiny widths: for tests only, `swap` needs the published widths")
    Console().print(f"generator of step {report.step} -> {report.path} ({report.tensors} tensors); {note}",
                    highlight=False, soft_wrap=True)


def _register_prepare() -> None:
    try:
        from train import prepare_cli
    except ModuleNotFoundError as exc:  # the data side still being built must not break fit/export
        if exc.name != "train.prepare_cli":
            raise
        return
    prepare_cli.register(train_app)


_register_prepare()


def main(argv: list[str] | None = None) -> None:
    """`python -m train`: run the app; user-actionable errors as one line and their exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    run_app(lambda: train_app(args=argv, prog_name="python -m train"), debug)
