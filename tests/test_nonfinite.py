"""NaN and Inf: a generator output with non-finite values leaves that face unswapped (counted, and
said in the summary) instead of pasting a black face; training stops on a non-finite loss with one
line and never writes a diverged checkpoint, so the last finite one is never rotated out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_cli
from onnx_fakes import export_fake_2d106, export_fake_scrfd
from streamswap.api import SwapOptions, swap_video
from streamswap.engines.ghost import GhostParts, ghost_models
from streamswap.faces.detect import DetectSettings, SCRFDDetector
from streamswap.faces.identity import TorchArcFace
from streamswap.faces.landmarks import Landmark106
from streamswap.models.arcface import IResNet
from train.checkpoint import list_checkpoints, load_checkpoint

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# -- the swap: a generator that gives NaN -----------------------------------------------------------
class SometimesNaN(nn.Module):
    """A tiny generator ((B, 3, 256, 256) [-1, 1], (B, 512)) -> (B, 3, 256, 256) whose output row
    `row` is NaN on the calls in `calls` (None: every call). Counts the faces it made."""

    def __init__(self, row: int | None = 0, calls: set[int] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(512, 3)
        self.row, self.calls, self.n_calls, self.faces = row, calls, 0, 0

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = torch.tanh(self.conv(x) + self.fc(z)[:, :, None, None])
        if self.row is not None and (self.calls is None or self.n_calls in self.calls) and self.row < len(y):
            y = y.clone()
            y[self.row, :, 8:] = float("nan")  # most of the face: partly non-finite counts as non-finite
        self.n_calls += 1
        self.faces += len(y)
        return y


class AllNaN(SometimesNaN):
    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return super().forward(x, z) * float("inf") * 0  # inf * 0: NaN everywhere


@pytest.fixture(scope="module")
def face_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ghost_nan")
    torch.manual_seed(0)
    return (SCRFDDetector.load(export_fake_scrfd(tmp / "scrfd.onnx"), DetectSettings(max_faces=2)),
            Landmark106.load(export_fake_2d106(tmp / "2d106.onnx")), TorchArcFace(IResNet("r18"), fp16=False))


def _parts(face_models, generator: nn.Module) -> GhostParts:
    detector, landmarker, identity = face_models
    torch.manual_seed(1)
    return GhostParts(detector=detector, landmarker=landmarker, identity=identity, generator=generator.eval())


def _swap(shared_data, face_models, generator, target: Path, out: Path):
    options = SwapOptions(sources=(str(shared_data / "images" / "mark.jpg"),), source_face_index=0, batch_size=4,
                          preset="ultrafast")
    return swap_video(options, str(target), str(out), models=ghost_models(_parts(face_models, generator)))


def _black(path: Path) -> int:
    return int((cv2.imread(str(path)).max(-1) == 0).sum())


def test_a_face_the_generator_spoils_is_left_unswapped_counted_and_noted(shared_data, face_models, tmp_path):
    target = shared_data / "images" / "tgt1.png"  # the stand-in detector finds 2 faces in it
    good = _swap(shared_data, face_models, SometimesNaN(row=None), target, tmp_path / "good.png")
    assert good.faces_swapped == 2 and good.faces_skipped_nonfinite == 0
    # the first face NaN: only the second is pasted, and no black patch appears (NaN -> uint8 is 0:
    # without the check, 8154 pixels of tgt1 came out black here)
    gen = SometimesNaN(row=0)
    one = _swap(shared_data, face_models, gen, target, tmp_path / "one.png")
    assert gen.faces == 2 and one.faces_skipped_nonfinite == 1 and one.faces_swapped == 1
    assert any("1 face(s) left unswapped" in n and "NaN" in n for n in one.notes), one.notes
    before, after = cv2.imread(str(target)), cv2.imread(str(tmp_path / "one.png"))
    assert not np.array_equal(before, after)  # the other face was swapped
    assert _black(tmp_path / "one.png") <= _black(target) + 20
    # every face NaN: the output is the input, bit for bit (PNG is lossless)
    both = _swap(shared_data, face_models, AllNaN(), target, tmp_path / "none.png")
    assert both.faces_skipped_nonfinite == 2 and both.faces_swapped == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "none.png")), before)


def test_in_a_video_one_spoilt_face_is_the_only_one_skipped(shared_data, face_models, tmp_path):
    clip = tmp_path / "clip.mp4"
    assert run_cli("transcode", str(shared_data / "videos" / "nggyup.mp4"), str(clip), "--max-frames", "8",
                   "--preset", "ultrafast", "-q", timeout=60).returncode == 0
    gen = SometimesNaN(row=0, calls={0})  # the first face of the first batch only
    report = _swap(shared_data, face_models, gen, clip, tmp_path / "out.mp4")
    assert report.frames == 8 and gen.faces > 1
    assert report.faces_skipped_nonfinite == 1 and report.faces_swapped == gen.faces - 1
    assert sum("left unswapped" in n for n in report.notes) == 1


# -- training ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory) -> Path:
    """training_pairs' 12 crops, one identity each."""
    root = tmp_path_factory.mktemp("nan_data")
    for png in sorted((shared_data / "training_pairs").glob("*.png")):
        (root / png.name).symlink_to(png)
    return root


def _finite(ckpt: Path) -> bool:
    state = load_checkpoint(ckpt)
    return all(torch.isfinite(v).all() for net in ("generator", "discriminator") for v in state[net].values()
               if v.is_floating_point())


def test_training_stops_on_a_nan_loss_and_keeps_the_last_finite_checkpoints(crops, tmp_path):
    out = tmp_path / "run"
    args = ("train", "fit", "--data", str(crops), "--out", str(out), "--steps", "12", "--batch-size", "2", "--tiny",
            "--device", "cpu", "--checkpoint-every", "2", "--keep", "2", "--image-every", "100", "--log-every", "1", "-q")
    run = run_cli(*args, env={**ONE_THREAD, "STREAMSWAP_TRAIN_NAN_AT": "7"}, timeout=120)
    assert run.returncode == 6, run.stderr
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), run.stderr
    assert "step 7" in lines[0] and "non-finite loss" in lines[0] and "G nan" in lines[0]
    assert "step_000000006.pt" in lines[0] and "--resume" in lines[0]
    kept = list_checkpoints(out / "checkpoints")
    assert [s for s, _ in kept] == [4, 6]  # rotation (keep 2) never reached a diverged step
    assert all(_finite(p) for _, p in kept)
    # the run continues from the last finite state
    again = run_cli(*args[:6], "--steps", "8", *args[8:], "--resume", "--json", env=ONE_THREAD, timeout=120)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["start_step"], summary["end_step"]) == (6, 8)
    assert all(math.isfinite(v) for v in summary["losses"].values())
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [6, 8]


def test_a_checkpoint_is_never_written_from_non_finite_weights(crops, tmp_path, monkeypatch):
    from train.data import DataSettings
    from train.settings import ModelSettings, TrainSettings
    from train.trainer import NonFiniteLossError, Trainer

    monkeypatch.delenv("STREAMSWAP_TRAIN_NAN_AT", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = TrainSettings(out_dir=tmp_path, steps=2, batch_size=2, model=ModelSettings.tiny(), device="cpu",
                                 checkpoint_every=1, keep_checkpoints=1, image_every=100, fixed_batch_size=2)
        trainer = Trainer(settings, DataSettings(root=crops, batch_size=2, seed=0))
        trainer._build()
        trainer.step = 1
        assert trainer.save() is not None
        with torch.no_grad():
            next(trainer.nets.generator.parameters()).view(-1)[0] = float("inf")
        trainer.step = 2
        with pytest.raises(NonFiniteLossError, match=r"step 2: generator\..* holds NaN/Inf; not saved"):
            trainer.save()
        assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [1]
        assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    finally:
        torch.set_num_threads(before)
