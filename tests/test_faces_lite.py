"""The lite backend (dlib HOG + 68 landmarks + 128-d descriptor) on real faces: videos, portraits,
blank frames, and identity that tells people apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from streamswap.bench.media import sample_video_frames
from streamswap.errors import InputError, NoFaceError
from streamswap.faces.identity import cosine_similarity, largest_face
from streamswap.faces.image import read_image
from streamswap.faces.lite import (
    LITE_MATCH_THRESHOLD,
    DlibDetector,
    DlibIdentity,
    LiteSettings,
    kps_from_68,
    lite_model_path,
)

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = ("beckham.jpg", "elon_musk.jpg", "mark.jpg", "murakami.jpg", "tgt1.png", "tgt2.png")


@pytest.fixture(scope="module")
def detector() -> DlibDetector:
    return DlibDetector()


@pytest.fixture(scope="module")
def rick(shared_data: Path, detector: DlibDetector) -> tuple[torch.Tensor, object]:
    frames = sample_video_frames(shared_data / "videos/nggyup.mp4", 10)
    return frames, detector.detect(frames)


def test_a_face_in_every_sampled_frame_of_a_single_face_video(rick: tuple[torch.Tensor, object]) -> None:
    frames, faces = rick
    assert frames.shape == (10, 3, 720, 1280)
    assert faces.n_frames == 10
    assert (faces.counts() >= 1).all(), faces.counts().tolist()
    assert faces.landmarks is not None and faces.landmarks.shape == (len(faces), 68, 2)
    # keypoints: derived from the 68 points, inside the box, eyes above the mouth, left eye left
    assert torch.equal(faces.kps, kps_from_68(faces.landmarks))
    b, k = faces.boxes, faces.kps
    margin = 0.1 * (b[:, 2] - b[:, 0])[:, None]
    assert ((k[..., 0] > b[:, :1] - margin) & (k[..., 0] < b[:, 2:3] + margin)).all()
    assert (k[:, 0, 0] < k[:, 1, 0]).all() and (k[:, 3, 0] < k[:, 4, 0]).all()
    assert (k[:, :2, 1].max(1).values < k[:, 3:, 1].min(1).values).all()
    views = faces.faces()
    assert views[0].landmarks is not None and views[0].landmarks.shape == (68, 2) and views[0].area > 0


@pytest.fixture(scope="module")
def crowd(shared_data: Path) -> torch.Tensor:
    return sample_video_frames(shared_data / "videos/dirtydancing.mp4", 10)


def test_several_faces_in_a_crowd_video(crowd: torch.Tensor, detector: DlibDetector) -> None:
    faces = detector.detect(crowd)
    assert len(faces) >= 3, faces.counts().tolist()
    assert int(faces.counts().max()) >= 2, "at least one frame with more than one face"


def test_blank_frames_have_no_face(detector: DlibDetector) -> None:
    blank = torch.zeros((2, 3, 360, 640), dtype=torch.uint8)
    blank[1] = 200
    faces = detector.detect(blank)
    assert len(faces) == 0 and faces.n_frames == 2
    with pytest.raises(NoFaceError):
        largest_face(faces, 0, what="a blank frame")


def test_same_person_is_closer_than_different_people(shared_data: Path, detector: DlibDetector,
                                                     rick: tuple[torch.Tensor, object]) -> None:
    frames, faces = rick
    identity = DlibIdentity(detector)
    one = largest_face(faces, 0)
    video = torch.cat([identity.embed(frames, largest_face(faces, i)) for i in (0, 4, 9)])
    assert video.shape == (3, 128)
    refs = []
    for name in PORTRAITS:
        image = read_image(shared_data / "images" / name)
        refs.append(identity.embed(image, largest_face(detector.detect(image), 0, what=name)))
    portraits = torch.cat(refs)
    same = cosine_similarity(video, video)[np.triu_indices(3, 1)]
    different = cosine_similarity(video, portraits)
    assert float(same.min()) > float(different.max()), (same, different.max(dim=1))
    assert float(same.min()) > LITE_MATCH_THRESHOLD > float(different.max())
    assert torch.allclose(identity.embed(frames, one), video[:1], atol=1e-6), "deterministic"


def test_settings_cap_faces_per_frame(crowd: torch.Tensor) -> None:
    frames = crowd[5:7]
    capped = DlibDetector(LiteSettings(max_faces=1)).detect(frames)
    assert capped.counts().max() <= 1 and len(capped) >= 1
    with pytest.raises(InputError):
        LiteSettings(upsample=7)


def test_unreadable_or_missing_image_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(InputError, match="not a readable image"):
        read_image(bad)
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nobody.png")


def test_model_files_are_found_without_importing_face_recognition_models() -> None:
    code = ("import sys\nfrom streamswap.faces.lite import DlibIdentity\nDlibIdentity()\n"
            "assert 'face_recognition_models' not in sys.modules\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert lite_model_path("shape_predictor_68_face_landmarks.dat").stat().st_size > 1_000_000
