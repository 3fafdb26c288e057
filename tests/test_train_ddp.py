"""Data-parallel training as users launch it: `torchrun --nproc-per-node 2 -m train fit ...` on CPU
(gloo). Each rank trains on its own shard; after the step every rank holds the same weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from streamswap.models.aei_net import AEINet, AEINetConfig
from streamswap.models.discriminator import MultiscaleDiscriminator
from train.checkpoint import load_checkpoint
from train.networks import build_generator
from train.settings import ModelSettings
from train.trainer import state_digest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run_gives_both_ranks_the_same_weights(shared_data, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "train", "fit", "--data", str(shared_data / "training_pairs"),
           "--out", str(out), "--steps", "2", "--batch-size", "2", "--tiny", "--blocks", "1", "--device", "cpu",
           "--threads", "1", "--image-every", "100", "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["world_size"] == 2 and summary["end_step"] == 2
    batches = summary["rank_first_batch_sha256"]
    weights = summary["rank_weights_sha256"]
    assert len(batches) == len(weights) == 2
    assert batches[0] != batches[1]     # distinct shards: equal weights need synchronised gradients
    assert weights[0] == weights[1]
    # the digest is of the weights rank 0 saved
    ckpt = load_checkpoint(out / "checkpoints" / "step_000000002.pt")
    ms = ModelSettings.tiny(blocks=1)
    g = AEINet(AEINetConfig(num_blocks=1, width=ms.g_width, id_dim=ms.id_dim))
    d = MultiscaleDiscriminator(ndf=ms.d_ndf, n_layers=ms.d_layers, num_d=ms.d_scales)
    g.load_state_dict(ckpt["generator"])
    d.load_state_dict(ckpt["discriminator"])
    assert state_digest(g, d) == weights[0]
    assert len(ckpt["ranks"]) == 2 and [r["loader"]["rank"] for r in ckpt["ranks"]] == [0, 1]
    # and training moved them: the seeded initial generator is not the saved one
    torch.manual_seed(0)
    initial = build_generator(ms)
    assert any(not torch.equal(v, ckpt["generator"][k]) for k, v in initial.state_dict().items()
               if v.is_floating_point())
