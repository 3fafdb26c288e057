"""GPU backends without a GPU: the choice logic, NV12 colour maths, and the NVDEC/NVENC glue run
against stand-ins for PyNvVideoCodec (the one thing that cannot exist here) built on FFmpeg."""

from __future__ import annotations

import random
import types
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from helpers_media import video_facts
from nvc_fakes import fake_nvc
from streamswap.bench.media import make_video
from streamswap.errors import InputError
from streamswap.frames import Frame
from streamswap.video.color import rgb_to_nv12, surface_to_rgb
from streamswap.video.nv import BackendChoice, GpuProbe, choose_decoder, choose_encoder, import_nvcodec, probe_nvenc
from streamswap.video.nvdec_support import StreamFacts
from streamswap.video.sinks import EncodeSettings, FileSink
from streamswap.video.sources import NvDecFileSource, PyAVFileSource, SourceOptions

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
H100 = GpuProbe(True, "NVIDIA H100 80GB HBM3", True, "ok", False, "NVIDIA H100 80GB HBM3 has no NVENC", (9, 0))
L4 = GpuProbe(True, "NVIDIA L4", True, "ok", True, "NVENC H.264 available", (8, 9))
NO_GPU = GpuProbe(False, None, False, "no CUDA device", False, "no CUDA device")
NO_NVC = GpuProbe(True, "NVIDIA L4", False, "PyNvVideoCodec unavailable (RuntimeError: no driver)", False, "x")


def _facts(codec: str, pix_fmt: str = "yuv420p", size: tuple[int, int] = (1280, 720)) -> StreamFacts:
    return StreamFacts.of(codec, None, pix_fmt, *size)


def test_decoder_choice():
    assert choose_decoder("auto", kind="file", facts=_facts("h264"), device=CUDA, gpu=L4).backend == "nvdec"
    for gpu, dev, kind, codec, why in [
        (NO_GPU, CPU, "file", "h264", "no CUDA device"),
        (L4, CPU, "file", "h264", "runs on cpu"),
        (NO_NVC, CUDA, "file", "h264", "no driver"),
        (L4, CUDA, "network", "h264", "not network"),
        (L4, CUDA, "file", "prores", "does not decode prores"),
        (H100, CUDA, "file", "av1", "Hopper NVDEC has no av1"),
    ]:
        choice = choose_decoder("auto", kind=kind, facts=_facts(codec), device=dev, gpu=gpu)
        assert choice.backend == "pyav" and why in choice.reason, (choice, why)
        with pytest.raises(InputError, match="--decoder nvdec is not possible"):
            choose_decoder("nvdec", kind=kind, facts=_facts(codec), device=dev, gpu=gpu)
    forced = choose_decoder("pyav", kind="file", facts=_facts("h264"), device=CUDA, gpu=L4)
    assert forced.reason == "forced by --decoder pyav"
    with pytest.raises(InputError, match="unknown decoder"):
        choose_decoder("ffmpeg", kind="file", facts=None, device=CPU, gpu=NO_GPU)


def test_encoder_choice_falls_back_to_x264_on_gpus_without_nvenc_and_says_so():
    assert choose_encoder("auto", device=CUDA, gpu=L4) == BackendChoice("nvenc", "NVENC on NVIDIA L4")
    h100 = choose_encoder("auto", device=CUDA, gpu=H100)
    assert h100.backend == "x264" and "H100" in h100.reason and "no NVENC" in h100.reason
    assert choose_encoder("auto", device=CPU, gpu=NO_GPU).reason == "CPU libx264: no CUDA device"
    assert choose_encoder("x264", device=CUDA, gpu=L4).backend == "x264"
    with pytest.raises(InputError, match="--encoder nvenc is not possible: .*H100.*no NVENC"):
        choose_encoder("nvenc", device=CUDA, gpu=H100)


def test_nvenc_probe_asks_the_driver_and_knows_the_gpus_without_encoder():
    def fake(caps):
        def get(codec):
            if isinstance(caps, Exception):
                raise caps
            return caps
        return types.SimpleNamespace(GetEncoderCaps=get)

    assert probe_nvenc(fake({"num_encoder_engines": 2}), "NVIDIA L4") == (True, "NVENC H.264 available")
    assert probe_nvenc(fake({}), "NVIDIA L4")[0] is False
    ok, why = probe_nvenc(fake(RuntimeError("NV_ENC_ERR_NO_ENCODE_DEVICE")), "NVIDIA A10")
    assert not ok and "NV_ENC_ERR_NO_ENCODE_DEVICE" in why
    assert probe_nvenc(fake({"num_encoder_engines": 1}), "NVIDIA H200") == (False, "NVIDIA H200 has no NVENC")
    assert probe_nvenc(None, None) == (False, "PyNvVideoCodec unavailable")


def test_pynvvideocodec_import_is_guarded():
    module, why = import_nvcodec()  # absent here (or raising RuntimeError without a driver)
    assert module is None or why == "PyNvVideoCodec imported"
    if module is None:
        assert why.startswith("PyNvVideoCodec unavailable (")


def test_nv12_surfaces_convert_like_ffmpeg_on_real_frames(shared_data):
    for name in ("nggyup.mp4", "dance.mp4"):
        with av.open(str(shared_data / "videos" / name)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i == 20:
                    break
        ref = frame.to_ndarray(format="rgb24").astype(np.int16)
        nv12 = torch.from_numpy(frame.reformat(format="nv12").to_ndarray())
        ours = surface_to_rgb(nv12, "nv12", frame.height, frame.width).numpy().astype(np.int16)
        assert ours.shape == ref.shape and np.abs(ours - ref).mean() < 1.5, name
        back = surface_to_rgb(rgb_to_nv12(torch.from_numpy(ref.astype(np.uint8))), "nv12", frame.height, frame.width)
        assert np.abs(back.numpy().astype(np.int16) - ref).mean() < 1.0


def test_rgb_to_nv12_honours_the_matrix_and_range():
    rgb = torch.tensor([[[255, 0, 0]]], dtype=torch.uint8).repeat(2, 2, 1)  # pure red
    y601 = rgb_to_nv12(rgb)[0, 0].item()
    y709 = rgb_to_nv12(rgb, matrix="ITU709")[0, 0].item()
    assert (y601, y709) == (81, 63)  # the textbook limited-range values
    assert rgb_to_nv12(torch.full((2, 2, 3), 255, dtype=torch.uint8))[0, 0].item() == 235
    assert rgb_to_nv12(torch.full((2, 2, 3), 255, dtype=torch.uint8), full_range=True)[0, 0].item() == 255
    with pytest.raises(ValueError, match="even"):
        rgb_to_nv12(torch.zeros(3, 4, 3, dtype=torch.uint8))


# --- NVDEC and NVENC glue against stand-ins for PyNvVideoCodec, built on FFmpeg ------------------

@pytest.mark.parametrize("pts", ["real", "absent", "nopts", "negative"])
def test_nvdec_source_turns_nv12_surfaces_into_upright_rgb_frames_with_pts(tmp_path, pts):
    """A missing timestamp (none, INT64_MIN as PyNvVideoCodec passes AV_NOPTS_VALUE on, or
    negative) is replaced by the stream's own, as for PyAV."""
    path = str(make_video(tmp_path / "rot.mp4", frames=12, size=(96, 64), rotation=270))
    ref = PyAVFileSource(path, SourceOptions(), BackendChoice("pyav", "reference"))
    expected = list(ref)
    ref.close()
    src = NvDecFileSource(path, SourceOptions(), BackendChoice("nvdec", "test"), ref.info,
                          nvc=fake_nvc(pts))  # type: ignore[arg-type]
    frames = list(src)
    assert [f.pts for f in frames] == [f.pts for f in expected]
    assert frames[0].image.shape == (96, 64, 3)  # rotated upright
    for a, b in zip(frames, expected):
        assert (a.image.float() - b.image.float()).abs().mean() < 3  # sharp synthetic edges: chroma upsampling differs a little


class _FakeNvenc:
    """Quacks like NvEncoder: NV12 in, an H.264 Annex B byte stream out in arbitrary chunks
    (x264 without B-frames standing in for NVENC)."""

    def __init__(self, width, height, *, fps, crf, preset, gop):
        cc = av.CodecContext.create("libx264", "w")
        cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
        cc.time_base, cc.framerate = Fraction(1, int(fps)), int(fps)
        cc.options = {"preset": "ultrafast", "bframes": "0", "g": str(gop), "crf": str(crf)}
        self._cc, self._n, self._held = cc, 0, b""
        self._rng = random.Random(0)
        self.w, self.h = width, height

    def _emit(self, data: bytes) -> bytes:
        data = self._held + data  # hand back a random prefix, keep the rest for later
        cut = self._rng.randint(0, len(data))
        self._held = data[cut:]
        return data[:cut]

    def encode(self, nv12: torch.Tensor) -> bytes:
        assert nv12.shape == (self.h * 3 // 2, self.w) and nv12.dtype == torch.uint8
        f = av.VideoFrame.from_ndarray(nv12.numpy(), format="nv12").reformat(format="yuv420p")
        f.pts = self._n
        self._n += 1
        return self._emit(b"".join(bytes(p) for p in self._cc.encode(f)))

    def flush(self) -> bytes:
        rest = b"".join(bytes(p) for p in self._cc.encode(None))
        data, self._held = self._held + rest, b""
        return data


def test_nvenc_file_sink_muxes_the_annexb_stream_with_source_timestamps(tmp_path):
    src_path = make_video(tmp_path / "in.mp4", frames=40, size=(128, 72), fps=25, audio=True)
    src = PyAVFileSource(str(src_path), SourceOptions(), BackendChoice("pyav", "t"))
    out = tmp_path / "out.mp4"
    sink = FileSink(out, src.info, EncodeSettings(gop=10), BackendChoice("nvenc", "test"),
                    audio_from=str(src_path), nvenc_factory=_FakeNvenc)
    frames = list(src)
    for f in frames:
        sink.write(f)
    sink.close(None)
    facts = video_facts(out)
    assert facts["frames"] == 40 and (facts["width"], facts["height"]) == (128, 72)
    assert facts["times"] == pytest.approx(video_facts(src_path)["times"])
    with av.open(str(out)) as c:
        keys = [p.is_keyframe for p in c.demux(video=0) if p.size]
        assert keys[0] and sum(keys) == 4  # every 10th frame is an IDR, marked as a sync sample
    with av.open(str(out)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert np.abs(decoded[5].astype(int) - frames[5].image.numpy().astype(int)).mean() < 4
    assert sink.report.audio_packets > 0 and sink.report.encoder == "nvenc"


def test_frame_record_keeps_hwc_uint8_and_time():
    img = torch.zeros(4, 6, 3, dtype=torch.uint8)
    f = Frame(3, 3003, Fraction(1, 30000), img)
    assert (f.height, f.width, f.time) == (4, 6, pytest.approx(0.1001))
    g = f.with_faces(("face",))
    assert g.faces == ("face",) and g.pts == f.pts and f.faces == ()


def test_nvenc_that_fails_to_start_falls_back_to_x264_and_says_so(tmp_path):
    src_path = make_video(tmp_path / "in.mp4", frames=10, size=(64, 48))
    src = PyAVFileSource(str(src_path), SourceOptions(), BackendChoice("pyav", "t"))

    def broken(*args, **kwargs):
        raise RuntimeError("NV_ENC_ERR_UNSUPPORTED_DEVICE")

    sink = FileSink(tmp_path / "out.mp4", src.info, EncodeSettings(preset="ultrafast"),
                    BackendChoice("nvenc", "probe said yes"), nvenc_factory=broken)
    for f in src:
        sink.write(f)
    sink.close(None)
    assert video_facts(tmp_path / "out.mp4")["frames"] == 10
    assert sink.report.encoder == "x264" and "NV_ENC_ERR_UNSUPPORTED_DEVICE" in sink.report.notes[0]


def test_a_forced_nvenc_that_fails_to_start_stops_with_one_line_and_leaves_no_output(tmp_path):
    src_path = make_video(tmp_path / "in.mp4", frames=4, size=(64, 48))
    src = PyAVFileSource(str(src_path), SourceOptions(), BackendChoice("pyav", "t"))

    def broken(*args, **kwargs):
        raise RuntimeError("NV_ENC_ERR_UNSUPPORTED_DEVICE")

    sink = FileSink(tmp_path / "out.mp4", src.info, EncodeSettings(encoder="nvenc", preset="ultrafast"),
                    BackendChoice("nvenc", "forced by --encoder nvenc"), nvenc_factory=broken)
    frame = next(iter(src))
    with pytest.raises(InputError, match=r"^--encoder nvenc: NVENC failed to start .*UNSUPPORTED_DEVICE.*x264"):
        sink.write(frame)
    sink.close(InputError("stopped"))
    assert not (tmp_path / "out.mp4").exists()
