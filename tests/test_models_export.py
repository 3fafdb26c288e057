"""ONNX export of the generator: onnxruntime computes the same function, at any batch size."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from golden_values import aei_1block_golden  # noqa: F401 (fixture)
from streamswap.models.export import ExportSettings, export_generator_onnx


def test_onnx_generator_matches_torch_on_the_golden_input_with_a_dynamic_batch(golden_dir, tmp_path,
                                                                              aei_1block_golden):
    net = aei_1block_golden
    # exported with batch 1, run with batch 2: the batch axis must be dynamic; weights beside
    # the graph (external data), as a model past protobuf's 2 GiB would need
    path = export_generator_onnx(net, tmp_path / "G_unet_1block.onnx",
                                 ExportSettings(example_batch=1, external_data=True))
    assert (tmp_path / "G_unet_1block.onnx.data").stat().st_size > 400 * 2**20
    graph = onnx.load(str(path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["x_t", "z_id"] and [o.name for o in graph.output] == ["y"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    with np.load(golden_dir / "aei_net_unet_1blocks.io.npz") as d:
        x_t, z_id, y_ref = d["x_t"], d["z_id"], d["y"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    (y_onnx,) = sess.run(["y"], {"x_t": x_t, "z_id": z_id})
    assert y_onnx.shape == (2, 3, 256, 256)
    assert np.abs(y_onnx - y_ref).max() <= 1e-3  # both rows: the reference's torch outputs
    # each row of a batch is computed alone (no batch statistics in the generator)
    (y_one,) = sess.run(["y"], {"x_t": x_t[1:], "z_id": z_id[1:]})
    assert np.abs(y_one[0] - y_onnx[1]).max() <= 1e-4
    # and our torch module computes it too (on that row: a batch of two would double the test's
    # costliest step after the export, for a row the reference already pins)
    with torch.no_grad():
        y_torch, _ = net(torch.from_numpy(x_t[1:]), torch.from_numpy(z_id[1:]))
    assert np.abs(y_onnx[1:] - y_torch.numpy()).max() <= 1e-3
    assert np.abs(y_one - y_torch.numpy()).max() <= 1e-3
