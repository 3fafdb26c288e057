"""Training pairs: GHOST's pairing (same_person 0.2, same-identity pairs), shapes and ranges,
determinism, rank shards, exact resume, and the DALI pipeline giving the torch loader's batches."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from streamswap.errors import InputError
from train.augment import IDENTITY_FACTORS, hue_matrix, jitter
from train.data import (
    DataSettings,
    PairSampler,
    build_loader,
    choose_loader,
    decode_rgb,
    fixed_batch,
    scan_dataset,
    to_generator_input,
)
from train.prepare import PrepareSettings, prepare_dataset


@pytest.fixture(scope="module")
def dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CI smoke data: the 12 shipped crops (12 different people: one identity each, loose
    files) plus one identity of 3 JPEG crops prepared from dance.mp4 (dlib, every 10th frame)."""
    pytest.importorskip("dlib")
    root = tmp_path_factory.mktemp("train_data")
    for png in sorted((shared_data / "training_pairs").glob("*.png")):
        shutil.copy(png, root)
    videos = tmp_path_factory.mktemp("videos")
    shutil.copy(shared_data / "videos" / "dance.mp4", videos)
    report = prepare_dataset(PrepareSettings(input=videos, output=root / "_prepared", every=10, max_per_video=3))
    assert report.crops == 3
    (root / "_prepared" / "dance").rename(root / "dance")
    shutil.rmtree(root / "_prepared")
    return root


def settings(root: Path, **kw: object) -> DataSettings:
    return replace(DataSettings(root=root, image_size=64, batch_size=4, seed=7), **kw)


def test_index_reads_identity_folders_and_loose_crops(dataset: Path) -> None:
    index = scan_dataset(dataset)
    assert len(index) == 15 and len(index.names) == 13
    dance = index.names.index("dance")
    assert [p.name for p in index.files[index.start[dance]:index.start[dance + 1]]] == [
        "dance_f000000.jpg", "dance_f000010.jpg", "dance_f000020.jpg"]
    with pytest.raises(InputError, match="does not exist"):
        scan_dataset(dataset / "nowhere")


def test_batches_are_source_target_same_in_minus_one_to_one(dataset: Path) -> None:
    batch = next(build_loader(settings(dataset)))
    assert set(batch) == {"source", "target", "same"}
    for key in ("source", "target"):
        assert batch[key].shape == (4, 3, 64, 64) and batch[key].dtype == torch.float32
        assert batch[key].min() >= -1.0 and batch[key].max() <= 1.0
        assert batch[key].min() < -0.8 and batch[key].max() > 0.8  # real images use the range
    assert batch["same"].shape == (4,) and batch["same"].dtype == torch.float32
    assert set(batch["same"].tolist()) <= {0.0, 1.0}


def test_same_rate_is_same_person_and_flags_tell_the_truth(dataset: Path) -> None:
    index = scan_dataset(dataset)
    sampler = PairSampler(index, settings(dataset, batch_size=50))
    plans = [sampler.plan(k) for k in range(100)]  # 5000 pairs
    same = np.concatenate([p.same for p in plans])
    src = np.concatenate([p.source for p in plans])
    tgt = np.concatenate([p.target for p in plans])
    sigma = (0.2 * 0.8 / len(same)) ** 0.5
    assert abs(same.mean() - 0.2) < 4 * sigma
    # same_identity: "same" exactly when both photos show one identity; dance pairs differ in photo
    assert np.array_equal(same == 1, index.identity[src] == index.identity[tgt])
    dance = index.names.index("dance")
    in_dance = (index.identity[src] == dance) & (same == 1)
    assert (src[in_dance] != tgt[in_dance]).any() and (src[in_dance] == tgt[in_dance]).any()
    # without identities: "same" is the same photo, and different pairs never repeat the photo
    plain = PairSampler(index, settings(dataset, batch_size=50, same_identity=False))
    p = plain.plan(3)
    assert np.array_equal(p.same == 1, p.source == p.target)


def test_same_photo_pairs_are_equal_before_augmentation_and_jittered_apart_after(dataset: Path) -> None:
    plain = settings(dataset, same_identity=False, augment=False, same_person=0.5, batch_size=8)
    batch = next(build_loader(plain))
    same = batch["same"] == 1
    assert same.any() and (~same).any()
    assert torch.equal(batch["source"][same], batch["target"][same])
    assert all(not torch.equal(s, t) for s, t in zip(batch["source"][~same], batch["target"][~same], strict=True))
    jittered = next(build_loader(replace(plain, augment=True)))
    assert torch.equal(jittered["same"], batch["same"])
    diff = (jittered["source"][same] - jittered["target"][same]).abs().mean()
    assert 0 < diff < 0.2  # independent colour jitter of one photo: close, not equal


def test_a_seed_fixes_the_batches_and_another_seed_changes_them(dataset: Path) -> None:
    a, b = build_loader(settings(dataset)), build_loader(settings(dataset))
    c = build_loader(settings(dataset, seed=8))
    for _ in range(2):
        x, y, z = next(a), next(b), next(c)
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(x["source"], z["source"])


def test_two_ranks_get_disjoint_shards_covering_an_epoch(dataset: Path) -> None:
    index = scan_dataset(dataset)  # 15 images: 3 ranks x batch 1 x 5 steps = one epoch
    ranks = [PairSampler(index, settings(dataset, batch_size=1), rank=r, world_size=3) for r in range(3)]
    shards = [{int(s.plan(k).source[0]) for k in range(5)} for s in ranks]
    assert all(len(sh) == 5 for sh in shards)
    assert set.union(*shards) == set(range(15)) and sum(len(s) for s in shards) == 15
    two = [next(build_loader(settings(dataset), rank=r, world_size=2)) for r in (0, 1)]
    assert not torch.equal(two[0]["source"], two[1]["source"])


def test_loader_state_resumes_with_the_identical_next_batch(dataset: Path) -> None:
    first = build_loader(settings(dataset))
    for _ in range(3):
        next(first)
    state = first.state_dict()
    assert state["step"] == 3
    want = next(first)
    again = build_loader(settings(dataset))
    again.load_state_dict(state)
    got = next(again)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_worker_processes_give_the_same_batches(dataset: Path) -> None:
    plain = build_loader(settings(dataset))
    workers = build_loader(settings(dataset, workers=2))
    workers.load_state_dict({"step": 1})
    next(plain)
    for _ in range(2):
        x, y = next(plain), next(workers)
        assert all(torch.equal(x[k], y[k]) for k in x)
    workers.close()


def test_fixed_batch_is_deterministic_unaugmented_and_holds_a_same_pair(dataset: Path) -> None:
    s = settings(dataset)
    a, b = fixed_batch(s, 4), fixed_batch(s, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["same"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert torch.equal(a["source"][0], a["target"][0])
    first = to_generator_input(decode_rgb(scan_dataset(dataset).files[0]), 64)
    assert torch.equal(a["source"][0], first)


def test_colour_jitter_follows_torchvision_definitions() -> None:
    x = np.random.default_rng(0).random((3, 8, 8), dtype=np.float32) * 255
    assert np.allclose(jitter(x, IDENTITY_FACTORS), x, atol=1e-3)
    assert np.allclose(jitter(x, np.array([1.1, 1, 1, 0])), np.clip(x * 1.1, 0, 255), atol=1e-3)
    gray = 0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    want = np.clip(0.8 * x + 0.2 * gray.mean(), 0, 255)
    assert np.allclose(jitter(x, np.array([1, 0.8, 1, 0])), want, atol=1e-3)
    assert np.allclose(jitter(x, np.array([1, 1, 0, 0])), np.broadcast_to(gray, x.shape), atol=1e-3)
    assert np.allclose(hue_matrix(0.0), np.eye(3), atol=1e-6)
    grey = np.array([100.0, 100.0, 100.0])
    assert np.allclose(hue_matrix(0.01) @ grey, grey, atol=1e-3)  # hue leaves greys alone
    assert not np.allclose(hue_matrix(0.01) @ np.array([200.0, 50, 50]), [200, 50, 50], atol=1)


def test_auto_loader_is_torch_without_a_gpu(dataset: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert choose_loader("auto", None)[0] == "torch"
    assert type(build_loader(settings(dataset, loader="auto"))).__name__ == "TorchPairLoader"


def test_missing_dali_is_a_one_line_input_error(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what an install without DALI looks like
    with pytest.raises(InputError, match="needs NVIDIA DALI") as err:
        build_loader(settings(dataset, loader="dali"))
    assert "\n" not in str(err.value)


def _compare(torch_loader, dali_loader, steps: int) -> float:
    """Largest pixel difference (grey levels, 0..255) over `steps` batches; flags must agree."""
    worst = 0.0
    for _ in range(steps):
        a, b = next(torch_loader), next(dali_loader)
        assert set(b) == set(a)
        for k in a:
            assert b[k].shape == a[k].shape and b[k].dtype == a[k].dtype and b[k].device == a[k].device
        assert torch.equal(a["same"], b["same"])
        for k in ("source", "target"):
            assert b[k].min() >= -1 and b[k].max() <= 1
            worst = max(worst, float((a[k] - b[k]).abs().max()) * 127.5)
    return worst


def test_dali_cpu_pipeline_gives_the_torch_loaders_batches(dataset: Path) -> None:
    pytest.importorskip("nvidia.dali")
    # with augmentation off the pixels tell which files were paired. Measured (DALI 2.4 CPU vs
    # OpenCV + torch, PNG and JPEG crops, 224 -> 256): at most 2e-5 grey levels unaugmented, 6e-5
    # augmented -- float rounding only: both decoders are libjpeg-turbo, both resizes are linear
    plain = settings(dataset, augment=False, image_size=256)
    assert _compare(build_loader(plain), build_loader(replace(plain, loader="dali")), 4) < 0.01
    # the jitter factors come from the same plan: the same augmented batches, to float rounding
    jittered = settings(dataset, image_size=256)
    t, d = build_loader(jittered), build_loader(replace(jittered, loader="dali"))
    assert _compare(t, d, 2) < 0.01
    # and the DALI loader resumes like the torch one
    state = d.state_dict()
    want = next(d)
    d2 = build_loader(replace(jittered, loader="dali"))
    d2.load_state_dict(state)
    got = next(d2)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.gpu
def test_dali_gpu_pipeline_gives_the_torch_loaders_batches(dataset: Path) -> None:
    pytest.importorskip("nvidia.dali")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cuda = torch.device("cuda", 0)
    s = settings(dataset, image_size=256)
    worst = _compare(build_loader(s, device=cuda), build_loader(replace(s, loader="dali"), device=cuda), 3)
    assert worst < 3.0  # nvJPEG's IDCT differs from libjpeg-turbo's by a few grey levels at most
