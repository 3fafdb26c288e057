"""GHOST's loss terms against hand computations, and the frozen eye-landmark loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.awl_fan import FAN
from train.eyes import EYE_LANDMARKS, EyeHeatmaps, tiny_fan
from train.losses import (
    GeneratorTerms,
    adversarial_loss,
    attribute_loss,
    discriminator_loss,
    eye_heatmap_loss,
    identity_loss,
    masked_mean,
    reconstruction_loss,
    to_arcface,
)
from train.settings import LossWeights


@pytest.fixture(autouse=True)
def one_thread():
    # the 2-core CI machine is shared: one intra-op thread avoids OpenMP stalls under load
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _map(values, b=2, h=1, w=2):
    return torch.tensor(values, dtype=torch.float32).reshape(b, 1, h, w)


def test_masked_mean_is_the_mean_over_selected_samples_and_zero_for_none():
    v = torch.tensor([1.0, 2.0, 4.0])
    assert float(masked_mean(v, torch.tensor([1.0, 0.0, 1.0]))) == pytest.approx(2.5)
    assert float(masked_mean(v, torch.zeros(3))) == 0.0


def test_generator_hinge_loss_sums_scales_over_different_identity_samples_only():
    # scale 0: sample 0 logits (0.5, 2.0) -> relu(1 - x) = (0.5, 0) mean 0.25; sample 1 (-1, 0) -> (2, 1) mean 1.5
    # scale 1: sample 0 (0,) -> 1; sample 1 (3,) -> 0
    fake = [_map([0.5, 2.0, -1.0, 0.0]), _map([0.0, 3.0], w=1)]
    diff = torch.tensor([1.0, 1.0])
    assert float(adversarial_loss(fake, diff)) == pytest.approx((0.25 + 1.5) / 2 + (1 + 0) / 2)
    only_second = torch.tensor([0.0, 1.0])  # sample 0 is a same-person pair: no adversarial term
    assert float(adversarial_loss(fake, only_second)) == pytest.approx(1.5 + 0.0)


def test_discriminator_hinge_loss_is_half_the_fake_plus_real_terms():
    fake = [_map([0.5, -2.0, 1.0, 0.0])]   # relu(1 + x): (1.5, 0) -> 0.75; (2, 1) -> 1.5
    real = [_map([0.5, 2.0, -1.0, 1.0])]   # relu(1 - x): (0.5, 0) -> 0.25; (2, 0) -> 1.0
    diff = torch.tensor([1.0, 0.0])        # only sample 0 counts
    assert float(discriminator_loss(fake, real, diff)) == pytest.approx(0.5 * (0.75 + 0.25))
    assert float(discriminator_loss(fake, real, torch.ones(2))) == pytest.approx(0.5 * ((0.75 + 1.5) / 2 + (0.25 + 1.0) / 2))


def test_identity_loss_is_one_minus_cosine_averaged():
    src = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    res = torch.tensor([[0.0, 2.0], [6.0, 8.0]])   # orthogonal (cos 0), parallel (cos 1)
    assert float(identity_loss(src, res)) == pytest.approx(((1 - 0) + (1 - 1)) / 2)
    res2 = torch.tensor([[1.0, 1.0], [3.0, 4.0]])  # cos 45 degrees, equal
    assert float(identity_loss(src, res2)) == pytest.approx((1 - math.cos(math.pi / 4)) / 2, rel=1e-6)


def test_attribute_loss_is_half_the_sum_over_levels_of_mean_squared_error():
    t = [torch.zeros(2, 1, 1, 1), torch.zeros(2, 2, 2, 2)]
    r = [torch.tensor([1.0, 3.0]).reshape(2, 1, 1, 1), torch.full((2, 2, 2, 2), 2.0)]
    # level 0: mean(1, 9) = 5; level 1: mean(4) = 4
    assert float(attribute_loss(t, r)) == pytest.approx(0.5 * (5 + 4))


def test_reconstruction_loss_counts_same_person_samples_only():
    target = torch.zeros(3, 3, 2, 2)
    result = torch.stack([torch.full((3, 2, 2), v) for v in (1.0, 2.0, 0.5)])  # per-sample MSE 1, 4, 0.25
    same = torch.tensor([1.0, 0.0, 1.0])
    assert float(reconstruction_loss(result, target, same)) == pytest.approx(0.5 * (1 + 0.25) / 2)
    assert float(reconstruction_loss(result, target, torch.zeros(3))) == 0.0


def test_eye_heatmap_loss_is_left_mse_plus_right_mse():
    t = torch.zeros(1, 2, 2, 2)
    r = torch.zeros(1, 2, 2, 2)
    r[0, 0, 0, 0] = 2.0   # left: mean of (4, 0, 0, 0) = 1
    r[0, 1] = 1.0         # right: 1
    assert float(eye_heatmap_loss(t, r)) == pytest.approx(2.0)


def test_weighted_total_uses_ghosts_weights_and_skips_eyes_when_off():
    w = LossWeights()
    assert (w.adv, w.attr, w.id, w.rec, w.eyes) == (1.0, 10.0, 20.0, 10.0, 0.0)
    one = torch.tensor(1.0)
    terms = GeneratorTerms(adv=one, id=2 * one, attr=3 * one, rec=4 * one, eyes=None)
    assert float(terms.total(w)) == pytest.approx(1 + 20 * 2 + 10 * 3 + 10 * 4)
    with_eyes = GeneratorTerms(adv=one, id=one, attr=one, rec=one, eyes=5 * one)
    assert float(with_eyes.total(LossWeights(eyes=2.0))) == pytest.approx(1 + 20 + 10 + 10 + 2 * 5)
    assert set(terms.as_floats()) == {"adv", "id", "attr", "rec"}


def test_identity_input_is_the_256_image_resized_to_112():
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    assert to_arcface(x).shape == (2, 3, 112, 112)


# --- the eye loss through the frozen landmark network -----------------------------------------

def _tiny_generator() -> AEINet:
    torch.manual_seed(0)
    g = AEINet(AEINetConfig(num_blocks=1, width=1 / 32, id_dim=16))
    g.init_weights()
    return g


def test_eye_loss_is_zero_for_the_target_itself_and_positive_otherwise():
    torch.manual_seed(1)
    eyes = EyeHeatmaps(tiny_fan())
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    other = torch.rand(2, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        heat_x = eyes(x)
        assert heat_x.shape == (2, 2, 64, 64)
        assert float(eye_heatmap_loss(heat_x, eyes(x.clone()))) == 0.0
        assert float(eye_heatmap_loss(heat_x, eyes(other))) > 0.0


def test_eye_loss_gradient_reaches_the_generator_and_leaves_the_landmark_network_frozen():
    torch.manual_seed(2)
    fan = tiny_fan()
    eyes = EyeHeatmaps(fan)
    eyes.train()  # the trainer toggles train mode: the landmark network must stay in eval
    assert not fan.training
    before = {k: v.clone() for k, v in fan.state_dict().items()}
    g = _tiny_generator().train()
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    x_t = torch.rand(2, 3, 256, 256) * 2 - 1
    y, _ = g(x_t, torch.randn(2, 16))
    with torch.no_grad():
        heat_t = eyes(x_t)
    loss = eye_heatmap_loss(heat_t, eyes(y))
    loss.backward()
    grads = [p.grad for p in g.parameters()]
    assert all(gr is not None for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0
    assert float(g.generator.AADBlk8.add_blocks[2].weight.grad.abs().sum()) > 0  # the last conv before tanh
    assert all(p.grad is None and not p.requires_grad for p in fan.parameters())
    opt.step()
    after = fan.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics unchanged


def test_eye_heatmaps_are_landmarks_96_and_97_of_the_golden_fan_last_hourglass(golden_dir):
    # The published WFLW_4HG layout and outputs are pinned by tests/test_models_golden.py
    # (test_awl_fan_matches_reference_heatmaps); here: the eye loss reads the right channels of
    # that network, with the generator's [-1, 1] images mapped to the FAN's [0, 1].
    from golden_values import golden_module, load_manifest

    fan = golden_module(lambda: FAN(num_modules=4, num_landmarks=98, end_relu=True),
                        load_manifest(golden_dir, "awl_fan_4hg_wflw98"))
    with np.load(golden_dir / "awl_fan_4hg_wflw98.io.npz") as f:
        d = {k: f[k] for k in f.files}
    x01 = torch.from_numpy(d["x"])
    with torch.no_grad():
        heat = EyeHeatmaps(fan)(x01 * 2 - 1)
    ref = d["heatmaps_last"][:, list(EYE_LANDMARKS)]
    assert heat.shape == ref.shape
    assert float(np.abs(heat.numpy() - ref).max()) <= 1e-4 * float(np.abs(d["heatmaps_last"]).max())
