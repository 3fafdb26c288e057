"""Face counts padded to powers of two for the per-face networks (`models.buckets`): a bounded set
of shapes, and no result changed by the padding."""

from __future__ import annotations

import pytest
import torch

from streamswap.models.buckets import bucket, in_buckets

# measured: padding 3 -> 4 and 5 -> 8 rows moves outputs by at most 9.8e-7 (AEI-Net, outputs ~0.06),
# 1.6e-7 (IResNet) and 4.8e-6 (the 2d106 stand-in, outputs ~6) on the CPU: another batch size
# picks other float kernels
ATOL = 1e-5


def test_buckets_are_powers_of_two_and_a_run_of_face_counts_sees_few_shapes():
    assert [bucket(n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 31, 33)] == [0, 1, 2, 4, 4, 8, 8, 16, 32, 64]
    seen = set()

    def record(x):
        seen.add(x.shape[0])
        return x * 2

    for n in range(1, 33):
        x = torch.arange(n, dtype=torch.float32)[:, None]
        assert torch.equal(in_buckets(record, x, enabled=True), x * 2)
    assert seen == {1, 2, 4, 8, 16, 32}
    seen.clear()
    in_buckets(record, torch.zeros(5, 1))  # on the CPU: off unless asked
    assert seen == {5}


@pytest.mark.parametrize("n", [3, 5])
def test_padding_changes_no_generator_or_identity_result(n):
    from streamswap.models.aei_net import AEINet, AEINetConfig
    from streamswap.models.arcface import IResNet
    from streamswap.models.inference import InferenceSettings, prepare_generator, run_generator

    torch.manual_seed(0)
    settings = InferenceSettings(device="cpu")
    net = prepare_generator(AEINet(AEINetConfig(num_blocks=1, width=0.125)), settings)
    x, z = torch.rand(n, 3, 256, 256) * 2 - 1, torch.nn.functional.normalize(torch.randn(n, 512), dim=1)
    alone = run_generator(net, x, z, settings)
    padded = in_buckets(lambda a, b: run_generator(net, a, b, settings), x, z, enabled=True)
    assert padded.shape == alone.shape and torch.allclose(padded, alone, atol=ATOL, rtol=0)
    ident = IResNet("r18").eval()
    crops = torch.rand(n, 3, 112, 112) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(in_buckets(ident, crops, enabled=True), ident(crops), atol=ATOL, rtol=0)


def test_padding_changes_no_landmark(tmp_path):
    from streamswap.faces.landmarks import Landmark106
    from streamswap.models.stand_ins import export_fake_2d106

    torch.manual_seed(0)
    lm = Landmark106.load(export_fake_2d106(tmp_path / "2d106.onnx"), runtime="torch")
    crops = torch.rand(5, 3, 192, 192) * 255
    alone = lm.runner(crops)[0]
    padded = in_buckets(lm.runner, crops, enabled=True)[0]
    assert padded.shape == alone.shape and torch.allclose(padded, alone, atol=ATOL, rtol=0)
