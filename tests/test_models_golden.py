"""Our networks are GHOST's networks: same state_dict layout, same function (golden fixtures).

Each network is filled with the fixtures' deterministic golden values and run on the stored
inputs; the outputs must match the reference's stored outputs within the README's tolerances.
These tests are the compatibility contract with the published weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from golden_values import (aei_1block_golden, golden_module, load_manifest,  # noqa: F401 (fixture)
                           manifest_layout, state_dict_layout)
from streamswap.models import aei_net
from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.arcface import IResNet
from streamswap.models.awl_fan import FAN
from streamswap.models.discriminator import MultiscaleDiscriminator
from streamswap.models.inference import (InferenceSettings, prepare_generator, prepare_identity,
                                        prepare_sr, run_generator)
from streamswap.models.sr import SRGenerator
from streamswap.models.weights import MODEL_BUILDS, describe_model

BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "aei_net_unet_1blocks": lambda: AEINet(AEINetConfig(num_blocks=1)),
    "aei_net_unet_2blocks": lambda: AEINet(AEINetConfig(num_blocks=2)),
    "aei_net_unet_3blocks": lambda: AEINet(AEINetConfig(num_blocks=3)),
    "iresnet100": lambda: IResNet("r100"),
    "sr_lipspade": SRGenerator,
    "multiscale_discriminator": MultiscaleDiscriminator,
    "awl_fan_4hg_wflw98": lambda: FAN(num_modules=4, num_landmarks=98, end_relu=True),
}
MAX_ABS = 1e-4  # README: aei y, sr, discriminator
MAX_REL = 1e-4  # README: iresnet and awl, relative to the largest reference magnitude


def io(golden_dir, name: str) -> dict[str, np.ndarray]:
    with np.load(golden_dir / f"{name}.io.npz") as f:
        return {k: f[k] for k in f.files}


def max_abs(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().float().numpy() - b).max())


# --- layout: exactly the reference state_dict -------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_state_dict_has_exactly_the_reference_keys_shapes_and_dtypes(golden_dir, name):
    with torch.device("meta"):  # layout only: no memory, no init
        ours = state_dict_layout(BUILDERS[name]())
    ref = manifest_layout(load_manifest(golden_dir, name))
    assert sorted(set(ref) - set(ours)) == [], "keys the published weights have and we lack"
    assert sorted(set(ours) - set(ref)) == [], "keys we have and the published weights lack"
    assert {k: v for k, v in ours.items() if ref[k] != v} == {}, "shape/dtype differences"


def test_published_names_build_the_networks_the_manifests_describe(golden_dir):
    fixture_of = {"G_unet_1block": "aei_net_unet_1blocks", "G_unet_2blocks": "aei_net_unet_2blocks",
                  "G_unet_3blocks": "aei_net_unet_3blocks", "backbone": "iresnet100",
                  "10_net_G": "sr_lipspade", "WFLW_4HG": "awl_fan_4hg_wflw98",
                  **{f"D_unet_{s}": "multiscale_discriminator" for s in ("1block", "2blocks", "3blocks")}}
    assert sorted(fixture_of) == sorted(MODEL_BUILDS)
    for published, fixture in fixture_of.items():
        info = describe_model(published)
        assert info["state_dict_entries"] == len(load_manifest(golden_dir, fixture)), published


# --- function: the reference's outputs ---------------------------------------------------------

def golden_aei(golden_dir, name: str, one_block: nn.Module) -> nn.Module:
    """`golden_module` for a deeper AEI-Net, taking the golden values of the entries it shares (same
    key and shape) with the 1-block net from that net: a golden value depends only on key and
    shape, so they are the same numbers, not generated again (122 M of its 184 M or 240 M).
    Cloned, so the shared 1-block net is never touched; still a strict load of every entry."""
    from golden_values import golden_value

    have = one_block.state_dict()
    state = {k: have[k].clone() if k in have and list(have[k].shape) == list(shape)
             else torch.from_numpy(golden_value(k, tuple(shape)))
             for k, shape, _ in load_manifest(golden_dir, name)}
    with torch.device("meta"):
        module = BUILDERS[name]()
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval()


@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_aei_net_matches_reference_outputs(golden_dir, blocks, aei_1block_golden):
    name = f"aei_net_unet_{blocks}blocks"
    net = aei_1block_golden if blocks == 1 else golden_aei(golden_dir, name, aei_1block_golden)
    d = io(golden_dir, name)
    with torch.no_grad():
        y, attrs = net(torch.from_numpy(d["x_t"]), torch.from_numpy(d["z_id"]))
    assert y.shape == (2, 3, 256, 256) and len(attrs) == 8
    assert [a.shape[1:] for a in attrs] == [(1024, 2, 2), (2048, 4, 4), (1024, 8, 8), (512, 16, 16),
                                            (256, 32, 32), (128, 64, 64), (64, 128, 128), (64, 256, 256)]
    assert max_abs(y, d["y"]) <= MAX_ABS
    assert max_abs(attrs[0], d["attr_0"]) <= MAX_ABS
    assert max_abs(attrs[7].mean(dim=(2, 3)), d["attr_7_mean"]) <= MAX_ABS
    with torch.no_grad():
        again = net.get_attr(torch.from_numpy(d["x_t"]))
    assert all(torch.equal(a, b) for a, b in zip(attrs, again))


def test_iresnet100_matches_reference_embeddings(golden_dir):
    net = prepare_identity(golden_module(BUILDERS["iresnet100"], load_manifest(golden_dir, "iresnet100")))
    d = io(golden_dir, "iresnet100")
    with torch.no_grad():
        y = net(torch.from_numpy(d["x"])).numpy()
    ref = d["y"]
    assert y.shape == (2, 512)
    assert np.abs(y - ref).max() <= MAX_REL * np.abs(ref).max()
    cos = (y / np.linalg.norm(y, axis=1, keepdims=True) * ref / np.linalg.norm(ref, axis=1, keepdims=True)).sum(1)
    assert cos.min() >= 0.99999


@pytest.fixture(scope="module")
def sr_golden_state(golden_dir) -> dict[str, torch.Tensor]:
    from golden_values import golden_state_dict

    return golden_state_dict(load_manifest(golden_dir, "sr_lipspade"))


def fresh_sr(state: dict[str, torch.Tensor]) -> SRGenerator:
    with torch.device("meta"):
        net = SRGenerator()
    # clones: reference mode updates spectral-norm vectors and BN statistics in place
    net.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    return net


def test_sr_default_reference_mode_matches_ghost_train_mode_output(golden_dir, sr_golden_state):
    net = prepare_sr(fresh_sr(sr_golden_state), "cpu")  # default mode: "reference"
    assert net.training
    u_before = net.head_0.conv_0.weight_u.clone()
    d = io(golden_dir, "sr_lipspade")
    with torch.inference_mode():
        y = net(torch.from_numpy(d["x"]))
    assert max_abs(y, d["y_train_mode"]) <= MAX_ABS
    # what "reference" means: one power iteration per call, updating the stored vectors
    assert not torch.equal(net.head_0.conv_0.weight_u, u_before)


def test_sr_eval_mode_matches_ghost_eval_output_and_keeps_its_state(golden_dir, sr_golden_state):
    net = prepare_sr(fresh_sr(sr_golden_state), "cpu", mode="eval")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    d = io(golden_dir, "sr_lipspade")
    with torch.inference_mode():
        y = net(torch.from_numpy(d["x"]))
    # (the fixture's eval output is saturated at +-1 everywhere: this pins signs only)
    assert max_abs(y, d["y_eval_mode"]) <= MAX_ABS
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with torch.inference_mode():  # and each face is restored independently of its batch
        alone = net(torch.from_numpy(d["x"][1:]))
    assert torch.allclose(alone[0], y[1], atol=1e-5)


def test_multiscale_discriminator_matches_reference_maps_full_resolution_first(golden_dir):
    net = golden_module(MultiscaleDiscriminator, load_manifest(golden_dir, "multiscale_discriminator")).eval()
    d = io(golden_dir, "multiscale_discriminator")
    x = torch.from_numpy(d["x"])
    with torch.no_grad():
        maps = net(x)
        layer0_on_full = net.layer0(x)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 11, 11), (2, 1, 7, 7), (2, 1, 5, 5)]
    for i, m in enumerate(maps):
        assert max_abs(m, d[f"scale{i}"]) <= MAX_ABS
    # the contract can fail: pix2pixHD runs its LAST stored net on the full image, not layer0
    assert max_abs(layer0_on_full, d["scale0"]) > 1e-2


def test_awl_fan_matches_reference_heatmaps(golden_dir):
    net = golden_module(BUILDERS["awl_fan_4hg_wflw98"], load_manifest(golden_dir, "awl_fan_4hg_wflw98")).eval()
    d = io(golden_dir, "awl_fan_4hg_wflw98")
    with torch.no_grad():
        heat = net(torch.from_numpy(d["x"]))
    assert len(heat) == 4 and heat[-1].shape == (2, 99, 64, 64)
    for got, key in ((heat[0], "heatmaps_first"), (heat[-1], "heatmaps_last")):
        ref = d[key]
        assert max_abs(got, ref) <= MAX_REL * np.abs(ref).max(), key
    assert float(heat[-1].min()) >= 0.0  # GHOST's truthy "False" flag: heatmaps pass a ReLU


# --- the contract can fail: small changes to the generator break it ----------------------------

def _bilinear_without_align_corners(*args, **kwargs):
    kwargs["align_corners"] = False
    return _INTERPOLATE(*args, **kwargs)


_INTERPOLATE = F.interpolate


class _SkipFirst(aei_net._Up):
    def forward(self, x, skip):  # concatenation in the other order
        return torch.cat((skip, self.lrelu(self.bn(self.deconv(x)))), dim=1)


@pytest.mark.parametrize("mutation", ["align_corners=False", "skip concatenated first"])
def test_golden_comparison_detects_a_changed_generator(golden_dir, aei_1block_golden, monkeypatch, mutation):
    net = aei_1block_golden
    if mutation == "align_corners=False":
        monkeypatch.setattr(aei_net.F, "interpolate", _bilinear_without_align_corners)
    else:
        for i in range(1, 7):
            monkeypatch.setattr(getattr(net.encoder, f"deconv{i}"), "__class__", _SkipFirst)
    d = io(golden_dir, "aei_net_unet_1blocks")
    with torch.no_grad():
        y, _ = net(torch.from_numpy(d["x_t"]), torch.from_numpy(d["z_id"]))
    assert max_abs(y, d["y"]) > 10 * MAX_ABS


# --- inference preparation keeps the function ----------------------------------------------------

def test_prepared_generator_in_float32_on_cpu_is_the_golden_function(golden_dir, aei_1block_golden):
    settings = InferenceSettings(device="cpu", channels_last=True)
    g = prepare_generator(copy.deepcopy(aei_1block_golden), settings)
    d = io(golden_dir, "aei_net_unet_1blocks")
    y = run_generator(g, torch.from_numpy(d["x_t"]), torch.from_numpy(d["z_id"]), settings)
    assert y.dtype == torch.float32 and y.shape == (2, 3, 256, 256)
    assert max_abs(y, d["y"]) <= MAX_ABS


def test_float16_generator_stays_within_a_grey_level_on_average(golden_dir, aei_1block_golden):
    # fp16 as on a GPU, emulated on CPU; instance norms run in float32 (FP32_MODULES). Emulated
    # fp16 is slow, so on one golden face, the second: the one fp16 moves more (measured, in the
    # batch of two or alone alike, the generator having no batch statistics: mean error 0.188/255
    # and max 0.0111 on it, 0.145/255 and 0.0105 on the first)
    settings = InferenceSettings(device="cpu", precision="float16")
    g = prepare_generator(copy.deepcopy(aei_1block_golden), settings)
    norm = g.net.generator.AADBlk1.add_blocks[0].norm
    d = io(golden_dir, "aei_net_unet_1blocks")
    y = run_generator(g, torch.from_numpy(d["x_t"][1:]), torch.from_numpy(d["z_id"][1:]), settings)
    err = np.abs(y.numpy() - d["y"][1:])
    assert g.net.encoder.conv1[0].weight.dtype == torch.float16 and len(norm._forward_pre_hooks) == 1
    assert bool(torch.isfinite(y).all())
    assert err.mean() < 1 / 255 and err.max() < 0.03  # [-1, 1] scale: one uint8 step is 2/255


@pytest.mark.gpu
def test_cuda_fp16_channels_last_generator_matches_float32(golden_dir, aei_1block_golden):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    d = io(golden_dir, "aei_net_unet_1blocks")
    x, z = torch.from_numpy(d["x_t"]), torch.from_numpy(d["z_id"])
    for compile_ in (False, True):
        settings = InferenceSettings(device="cuda", compile=compile_)
        g = prepare_generator(copy.deepcopy(aei_1block_golden), settings)
        y = run_generator(g, x, z, settings).cpu()
        assert np.abs(y.numpy() - d["y"]).mean() < 1 / 255


# --- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,millions", [("G_unet_1block", 128.5), ("G_unet_2blocks", 184.3),
                                           ("G_unet_3blocks", 240.2), ("backbone", 65.2),
                                           ("10_net_G", 72.2), ("D_unet_2blocks", 33.5),
                                           ("WFLW_4HG", 24.2)])
def test_parameter_counts_match_the_published_networks(name, millions):
    info = describe_model(name)
    print(f"{name}: {info['parameters_millions']} M parameters, outputs {info['outputs']}")
    assert info["parameters_millions"] == pytest.approx(millions, rel=0.005)


def test_describe_model_reports_io_shapes():
    info = describe_model("G_unet_2blocks.pth")
    assert info["inputs"] == {"x_t": ["B", 3, 256, 256], "z_id": ["B", 512]}
    assert info["outputs"][0] == ["B", 3, 256, 256] and len(info["outputs"][1]) == 8
    assert describe_model("backbone")["outputs"] == ["B", 512]
    assert describe_model("D_unet_1block")["outputs"] == [["B", 1, 11, 11], ["B", 1, 7, 7], ["B", 1, 5, 5]]


def test_linknet_encoder_variant_adds_skips_and_still_generates():
    with torch.device("meta"):  # skip the slow default init of 128 M parameters
        net = AEINet(AEINetConfig(num_blocks=1, encoder="linknet"))
    net = net.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.02)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1
    with torch.no_grad():
        y, attrs = net(torch.rand(1, 3, 256, 256) * 2 - 1, torch.randn(1, 512))
    assert [a.shape[1] for a in attrs] == list(AEINetConfig(encoder="linknet").attr_channels())
    assert y.shape == (1, 3, 256, 256) and float(y.abs().max()) <= 1.0
