"""The one weight loader: published layouts load, anything else is a clear ModelError."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from golden_values import golden_state_dict, load_manifest
from streamswap.errors import ModelError
from streamswap.models.discriminator import MultiscaleDiscriminator
from streamswap.models.sr import SRConfig, SRGenerator, set_sr_mode
from streamswap.models.weights import build_model, load_weights, read_state_dict


def small_d() -> MultiscaleDiscriminator:
    return MultiscaleDiscriminator(ndf=8, n_layers=3, num_d=2)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "net", None])
def test_wrapped_checkpoint_with_module_prefixes_loads(tmp_path, wrapper):
    src = small_d()
    sd = OrderedDict(("module." + k, v) for k, v in src.state_dict().items())  # DataParallel
    path = tmp_path / "D.pth"
    torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 3, "optimizer_name": "adam"}, path)
    dst = load_weights(small_d(), path)
    assert same_state(src, dst)


def test_safetensors_file_loads_with_spectral_norm_vectors(tmp_path):
    torch.manual_seed(0)
    src = set_sr_mode(SRGenerator(SRConfig(ngf=4)), "reference")
    with torch.no_grad():  # a few power iterations: u/v as in a trained file (random ones saturate the output)
        for _ in range(3):
            src(torch.rand(2, 3, 256, 256))
    set_sr_mode(src, "eval")
    path = tmp_path / "sr.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    with torch.device("meta"):  # as build_model does: every tensor comes from the file
        dst = SRGenerator(SRConfig(ngf=4))
    dst = set_sr_mode(load_weights(dst, path), "eval")
    assert same_state(src, dst)  # every tensor, the u/v vectors included, exactly as saved
    # The outputs are compared with a tolerance, not bitwise: the loaded tensors sit at
    # safetensors' 8-byte data offsets, the originals 64-byte aligned, and the spectral norm's
    # mv/dot reduce in an alignment-dependent order (checked: src's tensors copied to dst's
    # offsets give dst's sigma exactly). Measured float32-vs-float64 error of these outputs:
    # at most 1.2e-7 in eval mode, 2.1e-6 in reference mode (3 seeds); 1e-5 is 5x the worst.
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        out = src(x)
        assert out.abs().max() < 0.99  # not saturated, so the comparison means something
        torch.testing.assert_close(dst(x), out, rtol=0, atol=1e-5)
        set_sr_mode(src, "reference"), set_sr_mode(dst, "reference")
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=1e-5)


def test_legacy_non_zip_checkpoint_loads(tmp_path):
    src = small_d()
    path = tmp_path / "old.pth"
    torch.save(src.state_dict(), path, _use_new_zipfile_serialization=False)
    assert same_state(src, load_weights(small_d(), path))


def test_missing_key_is_a_one_line_model_error_naming_file_and_key(tmp_path):
    sd = small_d().state_dict()
    del sd["layer1.2.weight"]
    path = tmp_path / "D_unet_2blocks.pth"
    torch.save(sd, path)
    with pytest.raises(ModelError) as err:
        load_weights(small_d(), path)
    msg = str(err.value)
    assert "D_unet_2blocks.pth" in msg and "1 missing: layer1.2.weight" in msg and "\n" not in msg


def test_wrong_shape_and_unexpected_keys_are_listed(tmp_path):
    sd = small_d().state_dict()
    sd["layer0.0.weight"] = torch.zeros(8, 3, 3, 3)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(ModelError) as err:
        load_weights(small_d(), path)
    msg = str(err.value)
    assert "mis-shaped" in msg and "layer0.0.weight (8, 3, 3, 3) vs (8, 3, 4, 4)" in msg
    assert "1 unexpected: extra.weight" in msg


def test_a_different_network_is_refused_with_the_first_few_keys(tmp_path):
    path = tmp_path / "G_unet_2blocks.pth"
    torch.save(SRGenerator(SRConfig(ngf=4)).state_dict(), path)
    with pytest.raises(ModelError) as err:
        load_weights(small_d(), path)
    msg = str(err.value)
    assert "+" in msg and "more" in msg and len(msg) < 1500  # lists a few, counts the rest


class _RunsCode:
    """A pickle that would create a file when unpickled (stands in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_would_execute_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ModelError, match="refused to load"):
        load_weights(small_d(), path)
    assert not marker.exists()
    # and plain pickle (not torch's zip format) too
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(ModelError):
        load_weights(small_d(), raw)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 10, "truncated"])
def test_corrupt_files_give_model_error(tmp_path, content):
    path = tmp_path / "G_unet_1block.pth"
    if content == "truncated":
        torch.save(small_d().state_dict(), path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_bytes(content)
    with pytest.raises(ModelError, match="G_unet_1block.pth"):
        load_weights(small_d(), path)
    bad_st = tmp_path / "x.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="safetensors"):
        load_weights(small_d(), bad_st)


def test_checkpoint_without_tensors_gives_model_error(tmp_path):
    path = tmp_path / "opt.pth"
    torch.save({"epoch": 3, "lr": 1e-4, "names": ["a", "b"]}, path)
    with pytest.raises(ModelError, match="holds no state_dict"):
        read_state_dict(path)


def test_absent_file_and_unknown_model_name_give_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such weights file"):
        load_weights(small_d(), tmp_path / "nope.pth")
    with pytest.raises(ModelError, match="unknown model"):
        build_model("G_unet_9blocks")


def test_older_checkpoints_without_batchnorm_counters_load(tmp_path):
    from streamswap.models.arcface import IResNet

    src = IResNet("r18")
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    assert same_state(src, load_weights(IResNet("r18"), path))


def test_published_discriminator_file_builds_by_name_and_gives_the_golden_maps(golden_dir, tmp_path):
    # a D_unet_*.pth-layout checkpoint (golden values), wrapped and DataParallel-prefixed
    sd = golden_state_dict(load_manifest(golden_dir, "multiscale_discriminator"))
    path = tmp_path / "D_unet_2blocks.pth"
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, path)
    net = build_model("D_unet_2blocks", path)
    assert not net.training and all(p.device.type == "cpu" for p in net.parameters())
    with np.load(golden_dir / "multiscale_discriminator.io.npz") as d:
        with torch.no_grad():
            maps = net(torch.from_numpy(d["x"]))
        for i, m in enumerate(maps):
            assert np.abs(m.numpy() - d[f"scale{i}"]).max() <= 1e-4
