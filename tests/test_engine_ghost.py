"""The ghost engine through the same swap graph as lite, with tiny random-initialised networks of
the real signatures (SCRFD and 2d106 ONNX exported by the tests, an IResNet-18, a small
generator): shapes and data flow, not quality."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from torch import nn

from helpers_media import audio_packets, video_facts
from onnx_fakes import export_fake_2d106, export_fake_scrfd
from streamswap.api import SwapOptions, swap_video
from streamswap.engines.ghost import GhostParts, GhostSwapper, ghost_models, source_embedding
from streamswap.faces.detect import DetectSettings, SCRFDDetector
from streamswap.faces.identity import TorchArcFace
from streamswap.faces.image import read_image
from streamswap.faces.landmarks import Landmark106
from streamswap.models.arcface import IResNet


class TinyGenerator(nn.Module):
    """(x_t (B, 3, 256, 256) in [-1, 1], z_id (B, 512)) -> (B, 3, 256, 256) in [-1, 1]; records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(512, 3)
        self.seen: list[tuple[torch.Size, torch.Size, float, float]] = []

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.shape, z.shape, float(x.min()), float(x.max())))
        return torch.tanh(self.conv(x) + self.fc(z)[:, :, None, None])


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ghost")
    torch.manual_seed(0)
    return GhostParts(
        detector=SCRFDDetector.load(export_fake_scrfd(tmp / "scrfd_10g_bnkps.onnx"), DetectSettings(max_faces=2)),
        landmarker=Landmark106.load(export_fake_2d106(tmp / "2d106det.onnx")),
        identity=TorchArcFace(IResNet("r18"), fp16=False),
        generator=TinyGenerator().eval(),
    )


def test_ghost_engine_runs_the_swap_graph_end_to_end(shared_data, tmp_path, parts):
    out = tmp_path / "ghost.mp4"
    video = shared_data / "videos" / "nggyup.mp4"
    clip = tmp_path / "clip.mp4"
    from conftest import run_cli

    assert run_cli("transcode", str(video), str(clip), "--max-frames", "20", "--preset", "ultrafast", "-q").returncode == 0
    options = SwapOptions(sources=(str(shared_data / "images" / "mark.jpg"),), source_face_index=0, batch_size=4,
                          preset="ultrafast")
    report = swap_video(options, str(clip), str(out), models=ghost_models(parts))
    assert report.engine == "ghost" and report.frames == 20 and report.frames_swapped > 0
    assert report.backends["analyse"].startswith("SCRFD on CPUExecutionProvider, 2d106 on"), report.backends
    assert report.backends["swap"] == "AEI-Net on cpu" and report.backends["decode"].startswith("pyav")
    assert video_facts(out)["frames"] == 20 and audio_packets(out) == audio_packets(clip)
    # the generator saw batches of aligned 256 crops in [-1, 1] and the source identity
    shapes = {(tuple(x[1:]), tuple(z[1:])) for x, z, _, _ in parts.generator.seen}
    assert shapes == {((3, 256, 256), (512,))}
    assert min(lo for *_, lo, _ in parts.generator.seen) >= -1 and max(hi for *_, hi in parts.generator.seen) <= 1
    with av.open(str(clip)) as a, av.open(str(out)) as b:
        diffs = [np.abs(fa.to_ndarray(format="rgb24").astype(int) - fb.to_ndarray(format="rgb24").astype(int)).mean()
                 for fa, fb in zip(a.decode(video=0), b.decode(video=0))]
    assert sum(d > 0.5 for d in diffs) >= 10


def test_ghost_swapper_pastes_the_generated_face_where_the_face_is(shared_data, parts):
    image = read_image(shared_data / "images" / "tgt1.png")
    faces = parts.landmarker(image, parts.detector.detect(image))
    assert len(faces) >= 1
    faces = faces.select(torch.tensor([0]))
    z = source_embedding(parts, read_image(shared_data / "images" / "mark.jpg"), index=0)
    assert z.shape == (512,) and abs(float(z.norm()) - 1) > 1e-3  # fed unnormalised, as GHOST does

    class White(nn.Module):
        def forward(self, x, z):
            return torch.ones_like(x)

    white = GhostParts(parts.detector, parts.landmarker, parts.identity, White())
    out = GhostSwapper(white, z)(image, faces, [0])
    changed = (out.int() - image.int()).abs().amax(1)[0] > 0
    x0, y0, x1, y1 = faces.boxes[0].round().long().tolist()
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    assert bool((out[0, :, cy, cx] >= image[0, :, cy, cx]).all())  # whiter at the face centre
    assert changed.float().mean() < 0.5 and not changed[0, 0] and not changed[-1, -1]  # corners untouched
