"""The trainer on real crops: a 30-step CPU smoke run with tiny networks (every loss term finite
and in TensorBoard, a real learning signal), exact resume, precisions, fine-tune loading,
export in the swap engine's format, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from streamswap.errors import InputError, ModelError
from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.discriminator import MultiscaleDiscriminator
from streamswap.models.weights import load_weights
from train.checkpoint import list_checkpoints, load_checkpoint
from train.data import DataSettings
from train.export import export_generator
from train.networks import build_discriminator, build_generator
from train.settings import LossWeights, ModelSettings, TrainSettings
from train.trainer import Trainer, fit, state_digest

LOSS_TAGS = ("loss/adv", "loss/id", "loss/attr", "loss/rec", "loss/eyes", "loss/G", "loss/D")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the 2-core CI machine is shared: one intra-op thread avoids OpenMP stalls under load
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(one_thread, shared_data, tmp_path_factory) -> Path:
    """training_pairs' 12 crops (one identity each) + 3 crops `train prepare` made from a video."""
    from train.prepare import PrepareSettings, prepare_dataset

    root = tmp_path_factory.mktemp("train_data")
    videos = tmp_path_factory.mktemp("train_videos")
    (videos / "nggyup").mkdir()
    (videos / "nggyup" / "nggyup.mp4").symlink_to(shared_data / "videos" / "nggyup.mp4")
    report = prepare_dataset(PrepareSettings(input=videos, output=root, every=25, max_per_video=3))
    assert report.crops == 3
    for png in sorted((shared_data / "training_pairs").glob("*.png")):
        (root / png.name).symlink_to(png)
    return root


def _settings(out: Path, steps: int, **kw) -> TrainSettings:
    base = {"out_dir": out, "steps": steps, "batch_size": 4, "model": ModelSettings.tiny(),
            "weights": LossWeights(eyes=1.0),  # GHOST's default is 0: on here so every term runs
            "checkpoint_every": 10, "keep_checkpoints": 0, "log_every": 1, "image_every": 30, "device": "cpu",
            "fixed_batch_size": 4, "seed": 3}
    return TrainSettings(**{**base, **kw})


def _data(root: Path) -> DataSettings:
    return DataSettings(root=root, batch_size=4, same_person=0.2, seed=3)


@pytest.fixture(scope="module")
def smoke(one_thread, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    report = fit(_settings(out, 30), _data(dataset))
    return out, report


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    out["__images__"] = [(len(acc.Images(t)), 0.0) for t in tags["images"]]  # type: ignore[assignment]
    return out


def test_smoke_run_logs_every_finite_loss_term_and_learns_to_reconstruct(smoke):
    out, report = smoke
    assert (report.start_step, report.end_step) == (0, 30)
    scalars = _scalars(out / "logs")
    for tag in LOSS_TAGS:
        steps = [s for s, _ in scalars[tag]]
        assert steps == list(range(1, 31)), tag
        assert all(math.isfinite(v) for _, v in scalars[tag]), tag
    assert any(v > 0 for _, v in scalars["loss/rec"])       # same-person pairs were drawn
    assert any(v > 0 for _, v in scalars["loss/eyes"])
    assert scalars["__images__"] and scalars["__images__"][0][0] == 2  # source|target|result at 0 and 30
    fixed = dict(scalars["fixed/rec"])
    assert fixed[0] == pytest.approx(report.fixed_rec_start) and fixed[30] == pytest.approx(report.fixed_rec_end)
    # a real learning signal: the same fixed batch reconstructs better after 30 steps
    assert report.fixed_rec_end < report.fixed_rec_start * 0.95
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [10, 20, 30]
    assert report.steps_per_s > 0


def test_resumed_run_is_bitwise_the_uninterrupted_run(smoke, dataset, tmp_path):
    out_a, _ = smoke
    first = fit(_settings(tmp_path, 10), _data(dataset))       # stop after 10 steps
    assert first.end_step == 10
    second = fit(_settings(tmp_path, 20, resume=True), _data(dataset))  # a new process would do the same
    assert (second.start_step, second.end_step) == (10, 20)
    a = load_checkpoint(out_a / "checkpoints" / "step_000000020.pt")
    b = load_checkpoint(tmp_path / "checkpoints" / "step_000000020.pt")
    for net in ("generator", "discriminator"):
        assert a[net].keys() == b[net].keys()
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    for opt in ("opt_g", "opt_d"):
        for key, st in a[opt]["state"].items():
            assert all(torch.equal(st[n], b[opt]["state"][key][n]) for n in st), opt
    assert a["ranks"][0]["loader"]["step"] == b["ranks"][0]["loader"]["step"] == 20
    # and the resumed run's losses at steps 11..20 are the uninterrupted run's
    sa, sb = _scalars(out_a / "logs"), _scalars(tmp_path / "logs")
    assert [v for s, v in sa["loss/G"] if 10 < s <= 20] == [v for s, v in sb["loss/G"] if 10 < s <= 20]


def test_a_run_folder_with_checkpoints_needs_resume(smoke, dataset):
    out, _ = smoke
    with pytest.raises(InputError, match="--resume"):
        fit(_settings(out, 40), _data(dataset))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_are_finite_on_cpu(dataset, tmp_path, precision):
    trainer = Trainer(_settings(tmp_path, 2, precision=precision), _data(dataset))
    trainer._build()
    for _ in range(2):
        losses = trainer.train_step(next(trainer.loader))
        assert all(math.isfinite(v) for v in losses.values()), losses
    assert all(p.dtype == torch.float32 for p in trainer.nets.generator.parameters())  # fp32 master weights
    assert trainer.scaler_g.is_enabled() == (precision == "fp16")


def test_export_writes_the_generator_as_the_swap_engine_loads_it(smoke, tmp_path):
    out, _ = smoke
    report = export_generator(out, tmp_path)  # a run folder: its newest checkpoint
    assert report.path == tmp_path / "G_unet_1block.pth" and report.step == 30 and not report.swap_ready
    state = torch.load(report.path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    # exactly the published G_unet_1block's keys: swap's strict loader takes a full-width export
    with torch.device("meta"):
        full = AEINet(AEINetConfig(num_blocks=1))
    assert set(state) == set(full.state_dict())
    tiny = load_weights(AEINet(AEINetConfig(num_blocks=1, width=1 / 32, id_dim=64)), report.path)
    ckpt = load_checkpoint(out / "checkpoints" / "step_000000030.pt")
    assert all(torch.equal(tiny.state_dict()[k], ckpt["generator"][k]) for k in ckpt["generator"])


def test_fine_tuning_loads_published_layouts_strictly(tmp_path):
    torch.manual_seed(0)
    published_d = MultiscaleDiscriminator()  # D_unet_*'s layout: ndf 64, 5 layers, 3 scales
    torch.save({"state_dict": {f"module.{k}": v for k, v in published_d.state_dict().items()}}, tmp_path / "D.pth")
    loaded = build_discriminator(ModelSettings(), init=tmp_path / "D.pth")
    assert state_digest(loaded) == state_digest(published_d)
    torch.save(AEINet(AEINetConfig(num_blocks=1, width=1 / 32)).state_dict(), tmp_path / "G_small.pth")
    with pytest.raises(ModelError, match="mis-shaped"):
        build_generator(ModelSettings(blocks=1), init=tmp_path / "G_small.pth")
    with pytest.raises(InputError, match="--tiny"):
        build_generator(ModelSettings.tiny(), init=tmp_path / "G_small.pth")


def test_cli_fits_exports_and_reports_bad_input_in_one_line(cli, dataset, tmp_path):
    env = ONE_THREAD
    run = cli("train", "fit", "--data", str(dataset), "--out", str(tmp_path / "run"), "--steps", "2",
              "--batch-size", "2", "--tiny", "--device", "cpu", "--image-every", "1", "--json", env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["end_step"] == 2 and summary["world_size"] == 1
    assert Path(summary["checkpoint"]).is_file()
    assert set(summary["losses"]) == {"adv", "id", "attr", "rec", "G", "D"}  # eye loss off by default
    exp = cli("train", "export", str(tmp_path / "run"), str(tmp_path / "models"), "--json", env=env)
    assert exp.returncode == 0, exp.stderr
    # --blocks defaults to 2 (GHOST's main model): the file swap --blocks 2 looks for
    assert json.loads(exp.stdout)["path"] == str(tmp_path / "models" / "G_unet_2blocks.pth")
    assert (tmp_path / "models" / "G_unet_2blocks.pth").is_file()
    bad = cli("train", "fit", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2"), env=env)
    assert bad.returncode == InputError.exit_code
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0], bad.stderr
    again = cli("train", "fit", "--data", str(dataset), "--out", str(tmp_path / "run"), "--steps", "3", "--tiny",
                env=env)
    assert again.returncode == InputError.exit_code and "--resume" in again.stderr
