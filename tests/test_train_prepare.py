"""`train prepare`: real photos and a real video -> aligned 224 crops per identity, a manifest with
the reason for every skipped input, and resumption that redoes only what is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamswap.errors import InputError
from streamswap.faces.align import ARCFACE_112, GHOST_TEMPLATES_112, ghost_align
from streamswap.faces.image import read_image
from train.prepare import (
    MANIFEST,
    PrepareSettings,
    align_crop,
    build_detector,
    prepare_dataset,
)

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("dlib")


def run_prepare(*args: str) -> subprocess.CompletedProcess[str]:
    """The real prepare command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "train.prepare_cli", "prepare", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=False)


@pytest.fixture(scope="module")
def people(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An input folder in VGGFace2 layout: identity folders of photos, a photo without a face, an
    unreadable file, a photo of two people side by side, and a loose video (its own identity)."""
    root = tmp_path_factory.mktemp("people")
    images = shared_data / "images"
    (root / "elon").mkdir()
    shutil.copy(images / "elon_musk.jpg", root / "elon")
    (root / "mark").mkdir()
    shutil.copy(images / "mark.jpg", root / "mark")
    misc = root / "misc"
    misc.mkdir()
    shutil.copy(images / "murakami.jpg", misc)
    cv2.imwrite(str(misc / "grey.png"), np.full((300, 300, 3), 128, np.uint8))
    (misc / "broken.jpg").write_bytes(b"not a jpeg")
    a, b = cv2.imread(str(images / "elon_musk.jpg")), cv2.imread(str(images / "murakami.jpg"))
    b = cv2.resize(b, (round(b.shape[1] * a.shape[0] / b.shape[0]), a.shape[0]))
    cv2.imwrite(str(misc / "two_people.jpg"), np.hstack([a, b]))
    shutil.copy(shared_data / "videos" / "dance.mp4", root)
    (root / "notes.txt").write_text("not media: ignored")
    return root


@pytest.fixture(scope="module")
def detector(shared_data: Path):
    """The lite (dlib) detector prepare uses by default, loaded once."""
    return build_detector(PrepareSettings(input=shared_data, output=shared_data))


@pytest.fixture(scope="module")
def prepared(people: Path, detector, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The folder prepared (every 10th video frame, at most 3 per video), and the report as JSON."""
    out = tmp_path_factory.mktemp("prepared") / "crops"
    report = prepare_dataset(PrepareSettings(input=people, output=out, every=10, max_per_video=3), detector=detector)
    return out, report.as_json()


def test_crops_are_224_one_folder_per_identity_with_skips_explained(prepared: tuple[Path, dict]) -> None:
    out, summary = prepared
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["dance", "elon", "mark", "misc"]
    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert crops == ["dance/dance_f000000.jpg", "dance/dance_f000010.jpg", "dance/dance_f000020.jpg",
                     "elon/elon_musk.jpg", "mark/mark.jpg", "misc/murakami.jpg"]
    for rel in crops:
        assert cv2.imread(str(out / rel)).shape == (224, 224, 3)
    assert not list(out.rglob("*.part"))
    manifest = json.loads((out / MANIFEST).read_text())
    entries = manifest["inputs"]
    assert entries["misc/grey.png"] == {"identity": "misc", "kind": "photo", "status": "skipped", "reason": "no face"}
    assert entries["misc/two_people.jpg"]["reason"] == "several faces"
    assert entries["misc/broken.jpg"]["reason"] == "unreadable"
    assert entries["dance.mp4"]["status"] == "ok" and entries["dance.mp4"]["frames_sampled"] == 3
    assert "notes.txt" not in entries
    assert manifest["identities"] == {"dance": {"crops": 3}, "elon": {"crops": 1}, "mark": {"crops": 1},
                                      "misc": {"crops": 1}}
    assert summary["crops"] == 6 and summary["identities"] == 4 and summary["prepared_now"] == 7
    assert summary["skipped"] == {"no face": 1, "several faces": 1, "unreadable": 1}
    assert manifest["settings"]["template"] == "ghost" and manifest["settings"]["size"] == 224


def test_running_again_redoes_nothing(people: Path, prepared: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "crops"
    shutil.copytree(prepared[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    settings = PrepareSettings(input=people, output=out, every=10, max_per_video=3)
    report = prepare_dataset(settings)  # no detector is even built: nothing is left to do
    assert (report.prepared_now, report.already_done, report.crops_now, report.crops) == (0, 7, 0, 6)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == before


def test_an_interrupted_run_resumes_with_the_inputs_its_manifest_lacks(people: Path, prepared: tuple[Path, dict],
                                                                        detector, tmp_path: Path) -> None:
    # a kill after mark's crop was written but before the manifest recorded mark and misc/
    out = tmp_path / "crops"
    shutil.copytree(prepared[0], out)
    manifest = json.loads((out / MANIFEST).read_text())
    lost = [k for k in manifest["inputs"] if k.startswith(("mark/", "misc/"))]
    for key in lost:
        del manifest["inputs"][key]
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / "misc" / "murakami.jpg").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg") if p.parent.name in ("dance", "elon")}
    progress = []
    report = prepare_dataset(PrepareSettings(input=people, output=out, every=10, max_per_video=3),
                             progress=progress.append, detector=detector)
    assert report.prepared_now == len(lost) == 5 and report.already_done == 2
    assert report.crops_now == 2 and report.crops == 6
    assert (out / "misc" / "murakami.jpg").is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert [p.done for p in progress] == [2, 3, 4, 5, 6, 7] and progress[-1].total == 7
    assert json.loads((out / MANIFEST).read_text())["inputs"].keys() == prepared_inputs(prepared[0])


def prepared_inputs(out: Path) -> set[str]:
    return set(json.loads((out / MANIFEST).read_text())["inputs"])


def test_resuming_with_other_crop_settings_is_refused(people: Path, prepared: tuple[Path, dict]) -> None:
    with pytest.raises(InputError, match="template 'ghost' -> 'arcface'"):
        prepare_dataset(PrepareSettings(input=people, output=prepared[0], template="arcface"))


def test_bad_inputs_are_one_line_errors(tmp_path: Path, people: Path) -> None:
    missing = run_prepare("--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out"), "--quiet")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no photos or videos"):
        prepare_dataset(PrepareSettings(input=tmp_path / "empty", output=tmp_path / "out"))
    with pytest.raises(InputError, match="inside the input folder"):
        prepare_dataset(PrepareSettings(input=people, output=people / "crops"))
    with pytest.raises(InputError, match="--every"):
        PrepareSettings(input=people, output=tmp_path, every=0)


@pytest.mark.parametrize("template", ["ghost", "arcface"])
def test_eyes_of_a_crop_land_on_the_template(template: str, shared_data: Path, detector) -> None:
    # re-detect the face on the crop: its eyes sit where the alignment template puts them
    for name in ("elon_musk.jpg", "mark.jpg"):
        image = read_image(shared_data / "images" / name)
        kps = detector.detect(image).kps[0]
        if template == "ghost":
            want = torch.tensor(GHOST_TEMPLATES_112)[int(ghost_align(kps[None])[1])] * 2
        else:
            want = torch.tensor(ARCFACE_112) * 2
        crop = align_crop(image, kps, template, 224)
        again = detector.detect(crop[None])
        assert again.kps.shape[0] == 1
        eyes = (again.kps[0, :2] - want[:2]).norm(dim=-1)
        assert eyes.max() < 5.0, f"{name}: eyes {eyes.tolist()} px from the {template} template"


def test_crops_match_the_shipped_training_pairs_framing(prepared: tuple[Path, dict], shared_data: Path,
                                                        detector) -> None:
    # GHOST's example crops and ours frame faces alike: the eye distance re-detected on both agrees

    def eye_distance(path: Path) -> float:
        kps = detector.detect(read_image(path)).kps
        assert kps.shape[0] == 1
        return float((kps[0, 1] - kps[0, 0]).norm())

    ours = np.mean([eye_distance(prepared[0] / p) for p in ("elon/elon_musk.jpg", "mark/mark.jpg")])
    shipped = np.mean([eye_distance(shared_data / "training_pairs" / f"source{i}.png") for i in (1, 3)])
    assert abs(ours - shipped) / shipped < 0.12, (ours, shipped)

