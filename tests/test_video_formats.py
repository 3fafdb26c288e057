"""Which decoder reads which stream (NVDEC's support matrix, decided once at open), and the colours
of 10-bit and 4:4:4 inputs on both paths against FFmpeg's own conversion (a filter graph's
`format=rgb24`, what `ffmpeg -pix_fmt rgb24` does)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from nvc_fakes import fake_nvc, nvdec_surface
from streamswap.bench.media import make_video, sample_video_frames
from streamswap.errors import InputError
from streamswap.video.color import surface_to_rgb
from streamswap.video.nv import BackendChoice, GpuProbe, choose_decoder, decoder_pts
from streamswap.video.nvdec_support import StreamFacts, generation, nvdec_refusal, pixel_layout, surface_for
from streamswap.video.sources import NvDecFileSource, PyAVFileSource, SourceOptions

CUDA = torch.device("cuda")
MAXWELL, PASCAL, VOLTA, TURING, GA100, AMPERE, ADA, HOPPER, BLACKWELL = (
    (5, 2), (6, 1), (7, 0), (7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (12, 0))


@pytest.mark.parametrize("pix_fmt, bits, chroma", [
    ("yuv420p", 8, "420"), ("yuvj420p", 8, "420"), ("nv12", 8, "420"), ("yuv420p10le", 10, "420"),
    ("p010le", 10, "420"), ("yuv420p12le", 12, "420"), ("yuv422p10le", 10, "422"), ("yuv444p", 8, "444"),
    ("yuv444p10le", 10, "444"), ("gray", 8, "400"), ("gray10le", 10, "400"), ("", 8, "420"),
])
def test_bit_depth_and_chroma_come_from_the_pixel_format(pix_fmt, bits, chroma):
    assert pixel_layout(pix_fmt) == (bits, chroma)


# (codec, profile, pix_fmt, width x height, GPU generation) -> None (NVDEC) or a phrase of the refusal
DECISIONS = [
    ("h264", "High", "yuv420p", (1920, 1080), HOPPER, None),
    ("h264", "High", "yuv420p", (1920, 1080), MAXWELL, None),
    ("h264", "High 10", "yuv420p10le", (1920, 1080), HOPPER, "Hopper NVDEC has no h264 High 10 10-bit 4:2:0"),
    ("h264", "High 10", "yuv420p10le", (1920, 1080), BLACKWELL, None),
    ("h264", "High 4:2:2", "yuv422p", (1920, 1080), HOPPER, "Hopper NVDEC has no h264"),
    ("h264", "High 4:2:2", "yuv422p10le", (1920, 1080), BLACKWELL, "surfaces are not converted here"),
    ("h264", "High 4:4:4 Predictive", "yuv444p", (1920, 1080), HOPPER, "NVDEC has no h264"),
    ("h264", "High", "yuv420p", (4096, 2160), HOPPER, None),
    ("h264", "High", "yuv420p", (7680, 4320), HOPPER, "above Hopper NVDEC's 4096x4096 for h264"),
    ("hevc", "Main", "yuv420p", (7680, 4320), HOPPER, None),
    ("hevc", "Main", "yuv420p", (7680, 4320), MAXWELL, "above Maxwell NVDEC's 4096x2304 for hevc"),
    ("hevc", "Main 10", "yuv420p10le", (3840, 2160), HOPPER, None),
    ("hevc", "Main 10", "yuv420p10le", (3840, 2160), MAXWELL, "Maxwell NVDEC has no hevc Main 10 10-bit"),
    ("hevc", "Main 12", "yuv420p12le", (3840, 2160), PASCAL, None),
    ("hevc", "Rext", "yuv444p", (1920, 1080), HOPPER, None),
    ("hevc", "Rext", "yuv444p10le", (1920, 1080), TURING, None),
    ("hevc", "Rext", "yuv444p", (1920, 1080), VOLTA, "Volta NVDEC has no hevc Rext 8-bit 4:4:4"),
    ("hevc", "Rext", "yuv422p10le", (1920, 1080), HOPPER, "Hopper NVDEC has no hevc"),
    ("vp9", "Profile 2", "yuv420p10le", (3840, 2160), PASCAL, None),
    ("vp9", "Profile 1", "yuv444p", (1920, 1080), HOPPER, "NVDEC has no vp9"),
    ("av1", "Main", "yuv420p", (1920, 1080), AMPERE, None),
    ("av1", "Main", "yuv420p10le", (3840, 2160), ADA, None),
    ("av1", "Main", "yuv420p", (1920, 1080), GA100, "Ampere NVDEC has no av1"),
    ("av1", "Main", "yuv420p", (1920, 1080), HOPPER, "Hopper NVDEC has no av1"),
    ("av1", "Main", "yuv420p", (1920, 1080), TURING, "Turing NVDEC has no av1"),
    ("mpeg2video", "Main", "yuv420p", (720, 576), HOPPER, None),
    ("prores", None, "yuv422p10le", (1920, 1080), HOPPER, "NVDEC does not decode prores"),
    ("h264", "High", "yuv420p", (641, 360), HOPPER, "641x360 picture has an odd side"),
    ("h264", "High", "yuv420p", (32, 16), HOPPER, "below NVDEC's 48x16"),
    ("h264", "High", "gray", (640, 360), HOPPER, "NVDEC has no h264 High 8-bit 4:0:0"),
    ("h264", "High", "yuv420p", (640, 360), None, "generation (compute capability) is unknown"),
]


@pytest.mark.parametrize("codec, profile, pix_fmt, size, capability, refusal", DECISIONS)
def test_the_nvdec_decision_follows_the_support_matrix(codec, profile, pix_fmt, size, capability, refusal):
    facts = StreamFacts.of(codec, profile, pix_fmt, *size)
    got = nvdec_refusal(facts, capability)
    if refusal is None:
        assert got is None and surface_for(facts) is not None
    else:
        assert got is not None and refusal in got, got


def test_auto_falls_back_at_open_with_the_reason_and_a_forced_nvdec_refuses_in_one_line():
    h100 = GpuProbe(True, "NVIDIA H100 80GB HBM3", True, "ok", False, "no NVENC", HOPPER)
    high10 = StreamFacts.of("h264", "High 10", "yuv420p10le", 1920, 1080)
    choice = choose_decoder("auto", kind="file", facts=high10, device=CUDA, gpu=h100)
    assert choice == BackendChoice(
        "pyav", "PyAV (FFmpeg) on the CPU: NVIDIA H100 80GB HBM3: Hopper NVDEC has no h264 High 10 10-bit 4:2:0")
    with pytest.raises(InputError, match=r"^--decoder nvdec is not possible: .*High 10.*; use --decoder pyav$"):
        choose_decoder("nvdec", kind="file", facts=high10, device=CUDA, gpu=h100)
    main10 = StreamFacts.of("hevc", "Main 10", "yuv420p10le", 1920, 1080)
    assert choose_decoder("auto", kind="file", facts=main10, device=CUDA, gpu=h100).backend == "nvdec"
    assert surface_for(main10) == "p016"


def test_generation_names():
    assert [generation(c) for c in (MAXWELL, PASCAL, VOLTA, TURING, GA100, AMPERE, ADA, HOPPER, BLACKWELL)] == [
        "Maxwell", "Pascal", "Volta", "Turing", "Ampere", "Ampere", "Ada", "Hopper", "Blackwell"]


def test_a_missing_decoder_timestamp_reads_as_none():
    assert [decoder_pts(v) for v in (None, -(2**63), -1, 0, 3003)] == [None, None, None, 0, 3003]


# --- colours of 10-bit and 4:4:4 inputs ------------------------------------------------------------

# (encoder, pixel format, what NVDEC hands over)
FORMATS = [
    ("libx265", "yuv420p10le", "p016"),      # HEVC Main 10
    ("libx265", "yuv444p", "yuv444"),        # HEVC Rext 4:4:4
    ("libx265", "yuv444p10le", "yuv444_16bit"),
    ("libx264", "yuv444p", "yuv444"),        # H.264 High 4:4:4
]


@pytest.fixture(scope="module")
def real_pictures(shared_data):
    """Six frames of a real video at 320x180, as the pictures of the test clips."""
    frames = sample_video_frames(shared_data / "videos" / "nggyup.mp4", 6)[:, :, ::4, ::4]
    return [np.ascontiguousarray(f.permute(1, 2, 0).numpy()) for f in frames]


def _ffmpeg_rgb(path) -> list[np.ndarray]:
    """FFmpeg's own conversion of every frame: a filter graph ending in format=rgb24."""
    out = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        graph = av.filter.Graph()
        buf, fmt, sink = graph.add_buffer(template=stream), graph.add("format", "rgb24"), graph.add("buffersink")
        buf.link_to(fmt)
        fmt.link_to(sink)
        graph.configure()
        for frame in c.decode(stream):
            graph.push(frame)
            out.append(graph.pull().to_ndarray())
    return out


def _levels(ours: list[np.ndarray], ref: list[np.ndarray]) -> np.ndarray:
    assert len(ours) == len(ref) and ours[0].shape == ref[0].shape
    return np.abs(np.stack(ours).astype(np.int16) - np.stack(ref).astype(np.int16))


@pytest.mark.parametrize("encoder, pix_fmt, surface", FORMATS)
def test_10_bit_and_4_4_4_inputs_keep_ffmpegs_colours_on_both_decode_paths(tmp_path, real_pictures, encoder,
                                                                          pix_fmt, surface):
    path = make_video(tmp_path / f"{pix_fmt}.mp4", frames=6, size=(320, 180), codec=encoder, images=real_pictures,
                      pix_fmt=pix_fmt, bt709=True)
    ref = _ffmpeg_rgb(path)
    src = PyAVFileSource(str(path), SourceOptions(), BackendChoice("pyav", "test"))
    facts, info = src.info.facts, src.info
    pyav = [f.image.numpy() for f in src]
    src.close()
    assert (facts.bit_depth, facts.chroma) == pixel_layout(pix_fmt) and surface_for(facts) == surface
    assert info.colorspace == "ITU709"
    # The PyAV path is swscale itself: measured mean 0.31 levels (10-bit 4:2:0, a different
    # chroma filter than the filter graph's) and 0 (4:4:4).
    diff = _levels(pyav, ref)
    assert diff.mean() <= 2.0, diff.mean()
    # The GPU path's conversion, run here on the surfaces NVDEC would hand over. Measured: 4:4:4
    # max 1 level; 10-bit 4:2:0 mean 1.50 (swscale's 10-bit path maps Y 940 to 253, not 255, and
    # upsamples chroma with another filter: p99 5 levels at chroma edges).
    with av.open(str(path)) as c:
        gpu = [surface_to_rgb(nvdec_surface(f), surface, f.height, f.width, bit_depth=facts.bit_depth,
                              matrix=info.colorspace, full_range=info.full_range).numpy() for f in c.decode(video=0)]
    diff = _levels(gpu, ref)
    assert diff.mean() <= 2.0, diff.mean()
    if facts.chroma == "444":
        assert diff.max() <= 1, diff.max()


def test_the_nvdec_source_reads_p016_and_4_4_4_surfaces_like_pyav(tmp_path, real_pictures):
    for encoder, pix_fmt, _ in FORMATS[:2]:
        path = str(make_video(tmp_path / f"{pix_fmt}.mp4", frames=4, size=(320, 180), codec=encoder,
                              images=real_pictures, pix_fmt=pix_fmt, bt709=True))
        ref = PyAVFileSource(path, SourceOptions(), BackendChoice("pyav", "reference"))
        expected = list(ref)
        ref.close()
        src = NvDecFileSource(path, SourceOptions(), BackendChoice("nvdec", "test"), ref.info, nvc=fake_nvc())
        frames = list(src)
        assert [f.pts for f in frames] == [f.pts for f in expected]
        diff = _levels([f.image.numpy() for f in frames], [f.image.numpy() for f in expected])
        assert diff.mean() <= 2.0, (pix_fmt, diff.mean())


def test_a_white_10_bit_picture_converts_within_two_levels_of_ffmpeg():
    """Flat patches at the ends of the range: swscale's 10-bit path gives 253 for Y 940."""
    frame = av.VideoFrame(64, 32, "yuv420p10le")
    for y_code in (64, 300, 512, 940):
        for k, plane in enumerate(frame.planes):
            plane.update(np.full(plane.buffer_size // 2, y_code if k == 0 else 512, np.uint16).tobytes())
        ref = frame.to_ndarray(format="rgb24").astype(np.int16)
        ours = surface_to_rgb(nvdec_surface(frame), "p016", 32, 64, bit_depth=10).numpy().astype(np.int16)
        assert np.abs(ours - ref).max() <= 2, (y_code, ours[0, 0], ref[0, 0])


# --- encode: RGB -> YUV 4:2:0 on the frames' device --------------------------------------------------


def test_rgb_to_yuv420_in_torch_is_within_a_level_of_swscale(real_pictures):
    from streamswap.video.color import rgb_to_yuv420

    for matrix in (None, "ITU709"):
        for rgb in real_pictures:
            h, w, _ = rgb.shape
            ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=matrix, dst_color_range="MPEG").to_ndarray().astype(np.int16)
            ours = rgb_to_yuv420(torch.from_numpy(rgb), matrix=matrix).numpy().astype(np.int16)
            diff = np.abs(ours - ref)
            # measured on these frames: Y max 1, U/V max 2 at a few chroma edges, p99 1
            assert diff[:h].max() <= 1 and np.percentile(diff[h:], 99) <= 1 and diff[h:].max() <= 2, matrix


def test_the_device_yuv_path_encodes_what_swscale_would_through_its_ring(tmp_path, real_pictures):
    """The x264 sink with the conversion in torch (a GPU's path: the ring's one-frame lag, its
    buffers reused, the flush) against the swscale path, both lossless: same frames and pts, and
    YUV planes within a level."""
    from fractions import Fraction

    from streamswap.frames import Frame
    from streamswap.video.sinks import EncodeSettings, FileSink
    from streamswap.video.probe import VideoInfo

    info = VideoInfo(width=320, height=180, fps=Fraction(25), time_base=Fraction(1, 25), frames=None,
                     duration_s=None, codec="h264", colorspace="ITU709")
    planes = {}
    for in_torch in (False, True):
        out = tmp_path / f"torch{in_torch}.mp4"
        sink = FileSink(out, info, EncodeSettings(encoder="x264", crf=0, preset="ultrafast", yuv_in_torch=in_torch),
                        BackendChoice("x264", "test"))
        for i in range(10):  # more frames than the ring has buffers
            sink.write(Frame(i, i, Fraction(1, 25), torch.from_numpy(real_pictures[i % len(real_pictures)])))
        sink.close(None)
        with av.open(str(out)) as c:
            frames = list(c.decode(video=0))
        assert [round(f.time * 25) for f in frames] == list(range(10))
        assert int(frames[0].colorspace) == 1  # tagged BT.709 as converted
        planes[in_torch] = np.stack([f.to_ndarray() for f in frames]).astype(np.int16)  # yuv420p, lossless
    diff = np.abs(planes[True] - planes[False])
    assert diff[:, :180].max() <= 1 and np.percentile(diff[:, 180:], 99) <= 1, (diff.max(), diff.mean())
