"""The lite engine on real faces: it swaps, it leaves the background alone, it keeps an open
target mouth, and the swapped face looks like the source to an independent identity model."""

from __future__ import annotations

import av
import pytest
import torch

from streamswap.engines.lite import LiteSwapper, LiteSwapSettings, mouth_openness, prepare_source
from streamswap.errors import InputError, NoFaceError
from streamswap.faces.image import read_image
from streamswap.faces.lite import DlibDetector, DlibIdentity


@pytest.fixture(scope="module")
def detector():
    return DlibDetector()


@pytest.fixture(scope="module")
def singer(shared_data):
    """Four frames of nggyup.mp4, (4, 3, 720, 1280) uint8."""
    frames = []
    with av.open(str(shared_data / "videos" / "nggyup.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 50 == 10:
                frames.append(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1))
            if len(frames) == 4:
                break
    return torch.stack(frames)


@pytest.fixture(scope="module")
def singer_faces(detector, singer):
    return detector(singer)


@pytest.fixture(scope="module")
def mark(shared_data, detector):
    image = read_image(shared_data / "images" / "mark.jpg")
    return image, detector(image)


def test_swap_changes_the_face_and_nothing_outside_it(mark, singer, singer_faces):
    swapper = LiteSwapper(prepare_source(*mark))
    faces = singer_faces
    assert len(faces) == 4
    out = swapper(singer, faces, list(range(4)))
    assert out.shape == singer.shape and out.dtype == torch.uint8
    changed = (out.int() - singer.int()).abs().amax(1) > 0  # (N, H, W)
    for i in range(4):
        x0, y0, x1, y1 = faces.boxes[i].tolist()
        w, h = x1 - x0, y1 - y0
        inside = changed[i, int(y0):int(y1), int(x0):int(x1)].float().mean()
        assert inside > 0.5, f"frame {i}: only {inside:.0%} of the face box changed"
        # nothing changes far from the face (2 face sizes away)
        far = torch.ones_like(changed[i])
        far[max(0, int(y0 - 2 * h)):int(y1 + 2 * h), max(0, int(x0 - 2 * w)):int(x1 + 2 * w)] = False
        assert not changed[i][far].any()


def test_swapped_faces_look_like_the_source_to_dlibs_identity_model(mark, detector, singer, singer_faces):
    ident = DlibIdentity(detector)
    source_emb = ident.embed(*mark)
    out = LiteSwapper(prepare_source(*mark))(singer, singer_faces, list(range(4)))
    before, after = ident.embed(singer, singer_faces), ident.embed(out, singer_faces)
    closer = (after @ source_emb.T).flatten() > (after * before).sum(1)
    assert closer.float().mean() >= 0.75, closer


def test_open_target_mouth_is_kept_when_the_source_mouth_is_closed(mark, singer, singer_faces):
    faces = singer_faces
    open_rows = mouth_openness(faces.landmarks) > LiteSwapSettings().mouth_open
    if not bool(open_rows.any()):
        pytest.skip("no open mouth in the sampled frames")
    source = prepare_source(*mark)
    closed = source.__class__(source.image, source.points, source.triangles, mouth_open=False)
    out = LiteSwapper(closed, LiteSwapSettings(colour_match=False))(singer, faces, list(range(len(faces))))
    i = int(open_rows.nonzero()[0])
    lips = faces.landmarks[i, 60:68]
    cx, cy = lips.mean(0).round().long().tolist()
    centre = (out[i, :, cy - 1:cy + 2, cx - 1:cx + 2].int() - singer[i, :, cy - 1:cy + 2, cx - 1:cx + 2].int()).abs()
    assert centre.max() <= 3, "the inside of the open target mouth should stay the target's"


def test_source_errors_are_clear(mark, detector):
    blank = torch.zeros((1, 3, 200, 200), dtype=torch.uint8)
    with pytest.raises(NoFaceError, match="no face found in the source image"):
        prepare_source(blank, detector(blank))
    group = torch.cat([mark[0]] * 2, dim=3)  # two faces side by side
    faces = detector(group)
    assert len(faces) == 2
    with pytest.raises(InputError, match="--source-face-index"):
        prepare_source(group, faces)
    right = prepare_source(group, faces, index=1)
    assert right.points[:, 0].min() > group.shape[-1] / 2 - 20
