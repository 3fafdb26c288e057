"""Identity-bound tracking on real crowd footage: dirtydancing.mp4 frames 140-199 follow one man
through a crowd while other dancers pass beside and in front of him. Bound to a reference of
him, the tracker must keep its binding on him, and never on anyone else."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from streamswap.faces.lite import DlibDetector, DlibIdentity, LiteSettings
from streamswap.engines.lite import ENGINE as LITE
from streamswap.tracking import Detections, Tracker, TrackerSettings, box_iou


@pytest.fixture(scope="module")
def crowd(shared_data):
    """Detections (with dlib embeddings) of every 2nd frame 140..198, and the lead's box per frame."""
    frames = []
    with av.open(str(shared_data / "videos" / "dirtydancing.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= 200:
                break  # the 103 frames after these need no decoding
            if i >= 140 and i % 2 == 0:
                frames.append(torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1))
    detector = DlibDetector(LiteSettings(max_side=640))
    identity = DlibIdentity(detector)
    dets, lead = [], []
    for frame in frames:
        faces = detector(frame[None])
        emb = identity.embed(frame[None], faces).numpy()
        boxes = faces.boxes.numpy()
        dets.append(Detections(boxes, faces.kps.numpy(), faces.scores.numpy(), emb))
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        lead.append(boxes[area.argmax()] if len(boxes) else None)  # he is the largest face in this shot
    return dets, lead


def test_a_track_bound_to_a_person_stays_on_him_through_the_crowd(crowd):
    dets, lead = crowd
    assert sum(len(d) >= 3 for d in dets) >= 15  # a crowd, not a portrait
    first = dets[0]
    reference = first.embeddings[np.argmax((first.boxes[:, 2] - first.boxes[:, 0]) * (first.boxes[:, 3] - first.boxes[:, 1]))]
    # the lite engine's identity thresholds for dlib's descriptors, as a lite job runs the tracker
    tracker = Tracker(TrackerSettings(mode="file", target_threshold=LITE.defaults.similarity, **LITE.defaults.tracker),
                      targets=reference[None])
    outputs = tracker.run(dets, frame_size=(1280, 720))
    on_him = judged = 0
    for faces, box in zip(outputs, lead, strict=True):
        bound = [f for f in faces if f.target == 0]
        assert len(bound) <= 1, "two faces bound to one person"
        if box is None or not bound:
            continue
        judged += 1
        on_him += box_iou(bound[0].box[None], box[None])[0, 0] > 0.3
    assert judged >= 0.8 * len(dets) and on_him >= 0.9 * judged, (judged, on_him)
