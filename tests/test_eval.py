"""`streamswap eval` on real media: calibrated (the original scores as itself), sensitive (synthetic
damage moves each metric the right way), a real lite swap between the two, and its outputs and errors.

One module fixture makes a 30-frame clip of nggyup.mp4 (a scene cut at frame 22), synthetic
outputs from it (one of them shorter than the clip), and a lite swap, and runs the real CLI once
on all of them (--json --csv --plot).
Eval's cost is per frame and per output (a dlib shape and descriptor on a 150-pixel chip for
each, whatever the video's size: measured ~1 CPU-s a frame for these outputs, the same at 360p
as at 720p), so the clip is short rather than small; 30 frames keep 8 after the cut, enough for
each shot's ratios.
"""

from __future__ import annotations

import csv
import json
import math
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from streamswap.bench.media import make_video
from streamswap.eval import metrics
from streamswap.eval.report import SERIES, summary_rows
from streamswap.faces.lite import DlibDetector, LiteSettings

CLIP_FRAMES = 30
SHORT_FRAMES = 20  # the "short" output: the clip's first 20 frames, re-encoded
NOISE = (3.0, 6.0, 12.0)  # per-frame brightness noise in the face box, grey levels (standard deviation)
NAMES = ("same", *(f"noise{int(n)}" for n in NOISE), "shift", "paste", "lite", "short")


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _first_frames(src: Path, dst: Path, frames: int) -> Path:
    """The first `frames` frames of `src` and its audio over that time, packets copied (the very
    frames of the original, no re-encoding and no CLI start-up; nggyup.mp4 has no B-frames, so
    the packets before a time are the frames before it)."""
    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        video = c.streams.video[0]
        end = Fraction(frames) / video.average_rate
        streams = [video, *c.streams.audio[:1]]
        outs = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in c.demux(streams):
            if packet.dts is None or packet.dts * packet.time_base >= end:
                continue
            packet.stream = outs[packet.stream.index]
            out.mux(packet)
    return dst


def _boxes(frames: list[np.ndarray]) -> list[tuple[int, int, int, int] | None]:
    """The largest face box per frame (an independent dlib pass, not eval's own)."""
    detector = DlibDetector(LiteSettings(max_side=640))
    out: list[tuple[int, int, int, int] | None] = []
    for img in frames:
        faces = detector(torch.from_numpy(img).permute(2, 0, 1)[None])
        if len(faces) == 0:
            out.append(None)
            continue
        b = faces.boxes.round().long().tolist()
        out.append(tuple(max(b, key=lambda r: (r[2] - r[0]) * (r[3] - r[1]))))
    return out


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    return make_video(path, frames=len(frames), size=(w, h), fps=30, images=frames)


def _noisy(frames, boxes, sigma: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for img, box in zip(frames, boxes, strict=True):
        img = img.copy()
        if box is not None:
            x0, y0, x1, y1 = box
            region = img[y0:y1, x0:x1].astype(np.float32) + rng.normal(0.0, sigma)
            img[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)
        out.append(img)
    return out


def _shifted(frames, boxes, seed: int = 1) -> list[np.ndarray]:
    """The face region moved by a random 0-4 pixels each frame (a jittery paste)."""
    rng = np.random.default_rng(seed)
    out = []
    for img, box in zip(frames, boxes, strict=True):
        img = img.copy()
        if box is not None:
            x0, y0, x1, y1 = box
            dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
            src = frames[len(out)][y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            if src.shape == img[y0:y1, x0:x1].shape:
                img[y0:y1, x0:x1] = src
        out.append(img)
    return out


def _pasted(frames, boxes, photo: np.ndarray) -> list[np.ndarray]:
    """The source photo's face (its box grown by 20%) pasted, static, over each face box grown alike."""
    (b,) = [bb for bb in _boxes([photo]) if bb is not None]
    gx, gy = (b[2] - b[0]) // 5, (b[3] - b[1]) // 5
    face = photo[max(0, b[1] - gy):b[3] + gy, max(0, b[0] - gx):b[2] + gx]
    out = []
    for img, box in zip(frames, boxes, strict=True):
        img = img.copy()
        if box is not None:
            x0, y0, x1, y1 = box
            ex, ey = (x1 - x0) // 5, (y1 - y0) // 5
            x0, y0 = max(0, x0 - ex), max(0, y0 - ey)
            x1, y1 = min(img.shape[1], x1 + ex), min(img.shape[0], y1 + ey)
            img[y0:y1, x0:x1] = cv2.resize(face, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        out.append(img)
    return out


@pytest.fixture(scope="module")
def evaluated(shared_data, tmp_path_factory):
    """(paths by name, the --json report, csv path, plot path, the CLI result) of one eval run."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("eval")
    mark = shared_data / "images" / "mark.jpg"
    clip = tmp / "clip.mp4"
    _first_frames(shared_data / "videos" / "nggyup.mp4", clip, CLIP_FRAMES)
    frames = _frames(clip)
    assert len(frames) == CLIP_FRAMES
    boxes = _boxes(frames)
    photo = cv2.cvtColor(cv2.imread(str(mark)), cv2.COLOR_BGR2RGB)
    paths = {"same": clip}
    for i, sigma in enumerate(NOISE):
        paths[f"noise{int(sigma)}"] = _write(tmp / f"noise{int(sigma)}.mp4", _noisy(frames, boxes, sigma, seed=i))
    paths["shift"] = _write(tmp / "shift.mp4", _shifted(frames, boxes))
    paths["paste"] = _write(tmp / "paste.mp4", _pasted(frames, boxes, photo))
    paths["short"] = _write(tmp / "short.mp4", frames[:SHORT_FRAMES])  # re-encoded (x264 CRF 23)
    paths["lite"] = tmp / "lite.mp4"
    swap = run_cli("swap", "-s", str(mark), "-t", str(clip), "-o", str(paths["lite"]), "--engine", "lite",
                   "--preset", "ultrafast", "--quiet")
    assert swap.returncode == 0, swap.stderr
    csv_path, plot = tmp / "series.csv", tmp / "plot.png"
    # a gallery of other people, and the singer herself (frame 10 of the clip): ID retrieval among them and mark
    gallery = tmp / "gallery"
    gallery.mkdir()
    for name in ("beckham.jpg", "elon_musk.jpg", "murakami.jpg"):
        (gallery / name).write_bytes((shared_data / "images" / name).read_bytes())
    cv2.imwrite(str(gallery / "singer.png"), cv2.cvtColor(frames[10], cv2.COLOR_RGB2BGR))
    (gallery / "notes.txt").write_text("not a photo: ignored")
    result = run_cli("eval", "--source", str(mark), "--target", str(clip), *(str(paths[n]) for n in NAMES),
                     "--json", "--csv", str(csv_path), "--plot", str(plot), "--gallery", str(gallery), timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return paths, report, csv_path, plot, result


def _summary(report: dict, name: str) -> dict:
    (out,) = [o for o in report["outputs"] if Path(o["output"]).stem == ("clip" if name == "same" else name)]
    return out["summary"]


def test_the_original_scores_as_itself(evaluated):
    _, report, *_ = evaluated
    s = _summary(report, "same")
    print("calibration:", s)
    assert s["frames"] >= 0.8 * CLIP_FRAMES
    # the same pixels give the same descriptors, landmarks and flows: exact up to float rounding
    assert abs(s["identity_gain"]) < 1e-6 and abs(s["sim_original"] - 1) < 1e-5
    assert s["closer_to_source"] == 0.0
    assert abs(s["flicker_ratio"] - 1) <= 0.02 and abs(s["jitter_ratio"] - 1) <= 0.02
    for name in ("pose_error_deg", "expression_error", "eye_error_px", "background"):
        assert abs(s[name]) < 1e-6, (name, s[name])
    assert abs(s["mouth_open_corr"] - 1) < 1e-6


def test_flicker_rises_with_the_noise_in_the_face(evaluated):
    _, report, *_ = evaluated
    ratios = [_summary(report, f"noise{int(n)}")["flicker_ratio"] for n in NOISE]
    print("flicker ratios for noise", NOISE, ratios)
    assert 1.0 < ratios[0] < ratios[1] < ratios[2], ratios
    assert ratios[2] > 1.5, ratios  # 12 grey levels per frame: measured ~2-3x the original's own


def test_a_shaking_face_raises_the_landmark_jitter(evaluated):
    _, report, *_ = evaluated
    s, same = _summary(report, "shift"), _summary(report, "same")
    print("shift:", s["jitter_ratio"], "flicker", s["flicker_ratio"])
    assert s["jitter_ratio"] > 1.3 > same["jitter_ratio"], s["jitter_ratio"]


def test_a_pasted_photo_gains_identity_but_loses_expression_and_pose(evaluated):
    _, report, *_ = evaluated
    paste, same = _summary(report, "paste"), _summary(report, "same")
    print("paste:", {k: paste[k] for k in ("identity_gain", "closer_to_source", "mouth_open_corr", "pose_error_deg")})
    assert paste["identity_gain"] > 0.05 and paste["closer_to_source"] > 0.8
    assert paste["mouth_open_corr"] < 0.5 < same["mouth_open_corr"]
    assert paste["pose_error_deg"] > 2.0 and paste["expression_error"] > 0.02


def test_a_real_lite_swap_lands_between_the_extremes(evaluated):
    _, report, *_ = evaluated
    lite, strongest = _summary(report, "lite"), _summary(report, f"noise{int(NOISE[-1])}")
    print("lite:", lite)
    assert lite["identity_gain"] > 0 and lite["closer_to_source"] > 0.5
    assert 1.0 < lite["flicker_ratio"] < strongest["flicker_ratio"]
    paste = _summary(report, "paste")
    assert lite["mouth_open_corr"] > paste["mouth_open_corr"]
    assert lite["background"] < 3.0  # the swap leaves the background alone (encoder noise only)


def test_id_retrieval_against_a_gallery(evaluated):
    _, report, *_ = evaluated
    got = {name: _summary(report, name)["id_retrieval"] for name in ("same", "paste", "lite")}
    print("id retrieval:", got)
    assert got["same"] < 0.2  # the singer's own face finds the singer's photo, not mark
    assert got["paste"] > 0.9  # mark's own photo pasted finds mark
    assert got["lite"] > 0.5 > got["same"]
    series = report["outputs"][NAMES.index("lite")]["series"]["id_retrieved"]
    assert set(v for v in series if v is not None) <= {0.0, 1.0}


def test_json_fields(evaluated):
    paths, report, *_ = evaluated
    assert report["recogniser"] == "dlib_resnet_128"
    assert report["original"] == str(paths["same"])
    assert report["frames_evaluated"] == CLIP_FRAMES == len(report["frame_index"]) == len(report["frame_time"])
    assert report["cuts"] == [22], report["cuts"]  # nggyup.mp4's first cut
    assert [o["output"] for o in report["outputs"]] == [str(paths[n]) for n in NAMES]
    for out in report["outputs"]:
        assert list(out["summary"]) == summary_rows()
        assert set(out["series"]) == set(SERIES)
        assert all(len(v) == CLIP_FRAMES for v in out["series"].values())
    # no flicker or jitter measured across the cut
    same = report["outputs"][0]["series"]
    cut = report["frame_index"].index(22)
    assert same["flicker"][cut] is None and same["jitter"][cut] is None and same["jitter"][cut - 1] is None
    assert same["flicker"][cut + 2] is not None and same["jitter"][cut + 2] is not None


def test_csv_has_one_row_per_output_and_frame(evaluated):
    paths, report, csv_path, *_ = evaluated
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(NAMES) * CLIP_FRAMES
    assert list(rows[0]) == ["output", "frame", "time", *SERIES]
    lite = [r for r in rows if r["output"] == str(paths["lite"])]
    series = report["outputs"][NAMES.index("lite")]["series"]
    for r, sim in zip(lite, series["sim_source"], strict=True):
        assert (r["sim_source"] == "") == (sim is None)
        if sim is not None:
            assert math.isclose(float(r["sim_source"]), sim, rel_tol=1e-5)


def test_plot_is_a_real_png(evaluated):
    *_, plot, _ = evaluated
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 600
    assert img.std() > 20  # lines and text, not a blank canvas


def test_every_and_frames_choose_the_frames(evaluated, shared_data, tmp_path, cli):
    paths, *_ = evaluated
    mark = str(shared_data / "images" / "mark.jpg")
    args = ["eval", "-s", mark, "-t", str(paths["same"]), str(paths["noise3"]), "--json"]
    every = cli(*args, "--every", "4")
    assert every.returncode == 0, every.stderr
    assert json.loads(every.stdout)["frame_index"] == list(range(0, CLIP_FRAMES, 4))
    assert json.loads(every.stdout)["outputs"][0]["summary"]["id_retrieval"] is None  # no --gallery
    # without --json: the table on stderr (one column per output), nothing on stdout
    table = tmp_path / "first.csv"
    first = cli(*args[:-1], "--frames", "6", "--csv", str(table))
    assert first.returncode == 0, first.stderr
    assert first.stdout == "" and "identity gain" in first.stderr and "noise3.mp4" in first.stderr
    assert "done: 6 frames" in first.stderr
    with open(table, newline="") as fh:
        assert [int(r["frame"]) for r in csv.DictReader(fh)] == list(range(6))


def test_a_shorter_output_is_paired_by_timestamp_with_a_note(evaluated):
    """The module run's "short" output (the clip's first 20 frames, re-encoded) beside the others."""
    paths, report, *_ = evaluated
    note = f"{paths['short']} has {SHORT_FRAMES} frames, the original {CLIP_FRAMES}"
    assert any(note in n for n in report["notes"]), report["notes"]
    sims = report["outputs"][NAMES.index("short")]["series"]["sim_original"]
    assert len(sims) == CLIP_FRAMES and all(v is None for v in sims[SHORT_FRAMES:])
    # a re-encoded copy (CRF 23) of the same frames, paired frame for frame: measured 20 of 20 paired,
    # min 0.9953 (0.99 with the CRF 18 copy of the 40-frame clip this test used before)
    paired = [v for v in sims[:SHORT_FRAMES] if v is not None]
    print("short: paired", len(paired), "min sim_original", min(paired, default=None))
    assert len(paired) >= SHORT_FRAMES - 3 and min(paired) > 0.97, paired


def test_metrics_of_known_landmarks():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (68, 2))
    pts[36:42] += [-30, 0]
    pts[42:48] += [30, 0]
    theta = np.radians(20)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 1.7 * pts @ rot.T + [12, -5]  # a similarity: no expression change
    assert max(metrics.expression_errors(moved, pts)) < 1e-9
    assert metrics.angle_error(np.array([179.0]), np.array([-179.0]))[0] == pytest.approx(2.0)
    assert metrics.correlation([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert metrics.correlation([1, 1, 1, 1], [2, 4, 6, 8]) == 0.0


def _one_line_error(result, expected: str, code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and expected in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_errors_are_one_line(shared_data, tmp_path, cli):
    mark = str(shared_data / "images" / "mark.jpg")
    video = str(shared_data / "videos" / "dance.mp4")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    # no face in the source: NoFaceError, exit 4, as `swap` says it
    _one_line_error(cli("eval", "-s", str(blank), "-t", video, video), "no face found in", 4)
    _one_line_error(cli("eval", "-s", mark, "-t", video, str(broken)), f"cannot read {broken}", 2)
    _one_line_error(cli("eval", "-s", mark, "-t", str(tmp_path / "missing.mp4"), video), "does not exist", 2)
    _one_line_error(cli("eval", "-s", mark, "-t", video, video, "--frames", "3", "--every", "2"), "not both", 2)
    _one_line_error(cli("eval", "-s", mark, "-t", video, video, "--gallery", str(tmp_path / "none")), "not a folder", 2)


def test_the_ghost_engines_arcface_judges_identity_when_asked(evaluated, shared_data):
    """--recogniser arcface/auto: GHOST's backbone (here an IResNet-18 with random weights, the
    published one not being in this cache) on GHOST's crop of 5 keypoints from dlib's 68."""
    import torch

    from streamswap.eval.arcface import ArcFaceRecogniser
    from streamswap.eval.frames import FrameSelection
    from streamswap.eval.run import EvalSettings, evaluate
    from streamswap.models.arcface import IResNet

    paths = evaluated[0]
    torch.manual_seed(0)
    arc = ArcFaceRecogniser(IResNet("r18").eval(), name="arcface_r18_random")
    settings = EvalSettings((str(shared_data / "images" / "mark.jpg"),), str(paths["same"]),
                            (str(paths["same"]), str(paths["paste"])), FrameSelection(frames=8), recogniser="arcface")
    report = evaluate(settings, arcface=arc)
    assert report.recogniser == "arcface_r18_random"
    same, paste = (o.summary for o in report.outputs)
    # measured: the original against itself 1.0000000 (gain 0.0); the pasted photo 0.686 with these weights
    assert same.sim_original == pytest.approx(1.0, abs=1e-5) and same.identity_gain == pytest.approx(0.0, abs=1e-5)
    assert paste.sim_original < 0.95
    from streamswap.errors import InputError

    with pytest.raises(InputError, match="choose auto, dlib or arcface"):
        evaluate(EvalSettings(settings.sources, settings.original, settings.outputs, recogniser="vgg"))


def test_arcface_without_the_backbone_in_the_cache_is_a_one_line_error(shared_data, tmp_path, cli):
    video = str(shared_data / "videos" / "dance.mp4")
    result = cli("eval", "-s", str(shared_data / "images" / "mark.jpg"), "-t", video, video, "--frames", "2",
                 "--recogniser", "arcface", env={"STREAMSWAP_HOME": str(tmp_path / "empty-home")})
    _one_line_error(result, "GHOST's ArcFace backbone is not in the model cache", 2)


def test_flicker_and_jitter_are_also_given_per_shot(evaluated):
    """The clip has nggyup's cut at frame 22: two shots, each with its own ratios."""
    _, report, *_ = evaluated
    assert report["cuts"] == [22]
    by_name = {Path(o["output"]).stem: o for o in report["outputs"]}
    for out in by_name.values():
        shots = out["shots"]
        assert [s["first_frame"] for s in shots] == [0, 22]
        assert sum(s["frames"] for s in shots) == report["frames_evaluated"]
    for shot in by_name["clip"]["shots"]:  # the original as its own output: 1 in every shot
        assert abs(shot["flicker_ratio"] - 1) <= 0.02 and abs(shot["jitter_ratio"] - 1) <= 0.02
    for shot in by_name["noise12"]["shots"]:  # the strongest synthetic flicker shows in both shots
        assert shot["flicker_ratio"] > 2, shot
