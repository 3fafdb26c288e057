"""The host-sync audit counts, on the CPU, what would make the host wait for a GPU: each kind on
device-resident tensors, nothing on tensors the audited code brought to the host, per call site
and per thread's scope; and a real pipeline job reports its stages' counts."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from streamswap.stream.host_syncs import HostSyncAudit


def _site(audit: HostSyncAudit, scope: str = "s") -> dict[str, int]:
    return audit.report()[scope]["by_site"]


def test_each_kind_is_counted_on_device_tensors_only():
    device = torch.device("cpu")  # the pipeline's device object: on the GPU path, the GPU
    frame = torch.rand(4, 5)  # made outside the audit: as a decoded frame, on the device
    with HostSyncAudit() as audit, audit.scope("s"):
        x = frame * 2
        assert x.sum() > 0  # bool
        int(x[0, 0] * 10)  # int
        float(x[0, 1])  # float
        [0, 1, 2][x[0, 0].long() % 3]  # index
        x.sum().item()  # item
        x[0].tolist()  # tolist
        x[x > 0.5]  # mask_index
        x[x > 0.9] = 0  # mask_index (assignment)
        torch.nonzero(x > 0.5)  # nonzero
        torch.where(x > 0.5)  # nonzero (one argument)
        torch.where(x > 0.5, x, 0)  # three arguments: no sync
        torch.unique(x.round())  # unique
        torch.equal(x, x)  # equal
        torch.linalg.inv(torch.eye(3, device=device) + x[:3, :3] * 0)  # linalg_check
        torch.linalg.inv_ex(torch.eye(3, device=device))  # no error check: no sync
        torch.repeat_interleave(x[0], torch.tensor([1, 2, 1, 1, 1], device=device))  # repeat_interleave + upload
        torch.repeat_interleave(x[0], torch.ones(5, dtype=torch.long, device=device), output_size=5)  # no sync
        host = x.cpu()  # download
        x.to("cpu")  # download
        x.to(device)  # a device tensor to the device: nothing
        host.tolist(), host.numpy(), float(host[0, 0]), bool(host[0, 0] > 0)  # on the host: free
        torch.from_numpy(np.zeros(3)).to(device)  # upload
        torch.zeros(3).tolist()  # a host factory: free
    kinds = audit.report()["s"]["by_kind"]
    assert kinds == {"bool": 1, "int": 1, "float": 1, "index": 1, "item": 1, "tolist": 1, "mask_index": 2,
                     "nonzero": 2, "unique": 1, "equal": 1, "linalg_check": 1, "repeat_interleave": 1,
                     "upload": 2, "download": 2}, kinds
    assert audit.total() == 18
    assert all(site.startswith("tests/test_host_syncs.py:") for site in _site(audit))
    assert torch.from_numpy.__module__ is None or "host_syncs" not in repr(torch.from_numpy)  # restored


def test_scopes_are_per_thread_and_per_call():
    x = torch.rand(3)
    audit = HostSyncAudit()

    def work() -> None:
        with audit.scope("worker"):
            x.sum().item()
        x.sum().item()  # outside any scope: not counted

    with audit:
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        with audit.scope("main"):
            x.tolist()
        for t in threads:
            t.join()
        x.sum().item()  # this thread's scope has ended
    report = audit.report()
    assert report["worker"]["calls"] == 3 and report["worker"]["syncs"] == 3
    assert report["main"]["calls"] == 1 and report["main"]["syncs"] == 1
    assert audit.report(per=2.0)["worker"]["syncs_per_batch"] == 1.5


def test_warp_crops_reads_its_regions_in_one_download():
    from streamswap.faces.align import warp_crops

    frames = torch.randint(0, 255, (2, 3, 64, 80), dtype=torch.uint8)
    m = torch.tensor([[[1.0, 0, -5], [0, 1.0, -7]]] * 6)  # made outside the scope: on the device
    which = torch.tensor([0, 1, 0, 1, 0, 1])
    with HostSyncAudit() as audit, audit.scope("s"):
        crops = warp_crops(frames, which, m, 16)
    assert crops.shape == (6, 3, 16, 16)
    assert audit.report()["s"]["by_kind"] == {"tolist": 1}, audit.report()["s"]


def test_per_frame_equals_in_frame_with_one_read():
    from streamswap.faces.records import FaceBatch

    k, index = 7, torch.tensor([2, 0, 2, 1, 0, 2, 2])
    batch = FaceBatch(4, torch.rand(k, 4), torch.rand(k), torch.rand(k, 5, 2), index, torch.rand(k, 106, 2), None)
    with HostSyncAudit() as audit, audit.scope("s"):
        parts = batch.per_frame()
    assert audit.report()["s"]["by_kind"] == {"tolist": 1}
    assert len(parts) == 4 and len(parts[3]) == 0
    for i, part in enumerate(parts):
        want = batch.in_frame(i)
        assert part.n_frames == 4 and part.embeddings is None
        for a, b in ((part.boxes, want.boxes), (part.kps, want.kps), (part.landmarks, want.landmarks),
                     (part.frame_index, want.frame_index), (part.scores, want.scores)):
            assert torch.equal(a, b)


def test_transfers_pack_several_tensors_into_one_copy_each_way():
    from streamswap.transfer import to_device, to_host

    parts = [torch.rand(3, 4), None, torch.arange(6, dtype=torch.int64).reshape(2, 3), torch.rand(2, 5, 2).double(),
             torch.zeros(0, 2)]
    with HostSyncAudit() as audit, audit.scope("down"):
        host = to_host(parts)
    assert audit.report()["down"]["by_kind"] == {"download": 1}
    assert host[1] is None
    for t, a in zip(parts, host, strict=True):
        if t is not None:
            assert a.dtype == t.numpy().dtype and a.shape == tuple(t.shape) and np.array_equal(a, t.numpy())
    arrays = [np.arange(4, dtype=np.float32).reshape(2, 2), np.array([3, 1]), np.ones((0, 5, 2), np.float32)]
    with audit, audit.scope("up"):
        up = to_device(arrays, torch.device("cpu"), torch.float32)
    assert audit.report()["up"]["by_kind"] == {"upload": 1}
    assert [tuple(u.shape) for u in up] == [(2, 2), (2,), (0, 5, 2)] and up[1].tolist() == [3.0, 1.0]


def test_an_op_on_host_and_device_tensors_is_flagged():
    """What CUDA refuses (one op on tensors of two devices) the CPU run reports as mixed_devices;
    a 0-d host tensor beside device ones is allowed, as on CUDA."""
    from streamswap.stream.host_syncs import mark_host

    x = torch.rand(4)  # on the device
    host = mark_host(torch.rand(4))
    with HostSyncAudit() as audit, audit.scope("s"):
        x + host  # mixed
        torch.cat([x, host])  # mixed
        x * mark_host(torch.tensor(2.0))  # a 0-d host scalar: allowed
        x[mark_host(torch.tensor([0, 2]))]  # host indices into a device tensor: an upload
    assert audit.report()["s"]["by_kind"] == {"mixed_devices": 2, "upload": 1}


@pytest.mark.parametrize("name", ["scrfd", "2d106"])
def test_converted_face_models_keep_shape_constants_on_the_host(tmp_path, name):
    """onnx2torch's Reshape/Resize read their shape and scale inputs on the host each call; held
    on the host they cost nothing, and the graph computes exactly what it did."""
    import onnx

    from streamswap.compat.onnx2torch import hold_shape_constants_on_host, import_onnx2torch
    from streamswap.models.stand_ins import export_fake_2d106, export_fake_scrfd

    path = (export_fake_scrfd if name == "scrfd" else export_fake_2d106)(tmp_path / f"{name}.onnx")
    size = 640 if name == "scrfd" else 192
    convert = import_onnx2torch().convert
    plain, held = convert(onnx.load(path)).eval(), convert(onnx.load(path)).eval()
    # SCRFD's 9 reshapes and 2 resizes; the 2d106 stand-in flattens instead (nothing to hold)
    assert hold_shape_constants_on_host(held) == (9 + 2 if name == "scrfd" else 0)
    x = torch.rand(2, 3, size, size)
    with torch.inference_mode():
        with HostSyncAudit() as audit, audit.scope("before"):
            want = plain(x)
        with audit, audit.scope("after"):
            got = held(x)
    report = audit.report()
    assert report["after"]["syncs"] == 0 and (report["before"]["syncs"] > 0) == (name == "scrfd"), report
    want, got = (w if isinstance(w, (list, tuple)) else [w] for w in (want, got))
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_crops_and_paste_back_from_host_matrices_match_the_device_path_without_a_download():
    from streamswap.blend import paste_back
    from streamswap.faces.align import warp_crops
    from streamswap.stream.host_syncs import mark_host

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 255, (2, 3, 90, 120), dtype=torch.uint8, generator=g)
    m = torch.tensor([[[0.9, 0.1, -10.0], [-0.1, 0.9, -5.0]], [[1.2, 0.0, -30.0], [0.0, 1.2, -20.0]]] * 2)
    which = torch.tensor([0, 1, 1, 0])
    faces = torch.rand(4, 3, 32, 32, generator=g) * 255
    masks = torch.rand(4, 1, 32, 32, generator=g)
    with HostSyncAudit() as audit:
        with audit.scope("device"):  # matrices on the device: the regions come down once per call
            crops = warp_crops(frames, which, m, 32)
            pasted = paste_back(frames, faces, masks, m, which)
        with audit.scope("host"):  # matrices made on the host: only the region matrices go up
            host_m, host_which = mark_host(m.clone()), mark_host(which.clone())
            crops_h = warp_crops(frames, host_which, host_m, 32)
            pasted_h = paste_back(frames, faces, masks, host_m, host_which)
    report = audit.report()
    assert report["device"]["by_kind"] == {"tolist": 2}, report["device"]
    assert report["host"]["by_kind"] == {"upload": 2}, report["host"]
    assert torch.equal(crops, crops_h) and torch.equal(pasted, pasted_h)


def _blobs(n: int, r: int = 40) -> np.ndarray:
    """n faces for the stand-in SCRFD on a 640x360 picture (`bench.media.face_blobs`)."""
    from streamswap.bench.media import face_blobs

    return face_blobs(n, (640, 360), r)


@pytest.mark.timeout(180)  # two 10-frame ghost jobs with stand-in networks under the audit
def test_the_ghost_path_makes_the_same_few_host_syncs_per_batch_with_one_face_or_six(tmp_path):
    """The residency target: on the ghost path (stand-in networks of the real architectures, face
    models on the torch runtime as CUDA runs them, batch 8) each stage's host syncs per batch are
    the same with 1 and with 6 faces per frame, at most 8 per batch over all stages, and no op
    mixes host and device tensors."""
    from PIL import Image

    from streamswap.api import SwapOptions, swap_video
    from streamswap.bench.media import make_video
    from streamswap.engines.ghost import ghost_models, stand_in_ghost_parts
    from streamswap.faces.detect import DetectSettings

    Image.fromarray(_blobs(1, 60)).save(tmp_path / "source.png")
    # a tight NMS: the stand-in detector answers a blob with a spread of overlapping boxes
    detect = DetectSettings(score_threshold=0.5, nms_threshold=0.01, max_faces=8)
    parts = stand_in_ghost_parts(tmp_path / "nets", torch.device("cpu"), width=0.0625, runtime="torch", detect=detect)
    options = SwapOptions(sources=(str(tmp_path / "source.png"),), engine="ghost", batch_size=8,
                          preset="ultrafast", resume=False)
    per_call, kinds = {}, {}
    frames = 10  # two batches, the second one partly filled (8 + 2): the counts are per batch, whatever its size
    for n in (1, 6):
        clip = make_video(tmp_path / f"faces{n}.mp4", frames=frames, size=(640, 360), images=[_blobs(n)])
        with HostSyncAudit() as audit:
            report = swap_video(options, str(clip), str(tmp_path / f"out{n}.mp4"), models=ghost_models(parts),
                                host_syncs=audit)
        assert report.frames == frames and report.faces_swapped >= frames * n
        stages = audit.report()
        # the track stage's flush is a call without a download: count it per batch it downloaded
        per_call[n] = {name: s["syncs"] / (s["calls"] - (name == "track")) for name, s in stages.items()}
        kinds[n] = {name: {k: v / (s["calls"] - (name == "track")) for k, v in s["by_kind"].items()}
                    for name, s in stages.items()}
        assert all("mixed_devices" not in s["by_kind"] for s in stages.values()), stages
    assert per_call[1] == per_call[6], (per_call, kinds)
    assert sum(per_call[6].values()) <= 8, kinds[6]
    # which they are: analyse one download (the detections) and one upload (the landmark crops'
    # matrices); track one download; swap the crops' and the paste-back's matrices up, the mask
    # parameters up, the finite check and the mask levels down
    assert kinds[6] == {"analyse": {"download": 1, "upload": 1}, "track": {"download": 1},
                        "swap": {"upload": 3, "download": 1, "tolist": 1}}, kinds[6]
