"""One evaluation, start to finish: `evaluate(EvalSettings) -> EvalReport`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from streamswap.errors import InputError
from streamswap.eval import metrics as m
from streamswap.eval.arcface import ArcFaceRecogniser
from streamswap.eval.faces import RECOGNISER, DescriptorPool, FaceAnalyser, FaceFit
from streamswap.eval.frames import FrameSelection, aligned_frames
from streamswap.eval.report import SERIES, EvalReport, OutputResult, OutputSummary, ShotSummary

#: scene_cuts' thumbnail size (its default), (h, w)
CUT_THUMB = (36, 64)

#: Every this many evaluated frames the face is looked for in the whole frame, not only near the last one.
FULL_DETECT = 30


@dataclass(frozen=True)
class EvalSettings:
    """sources: one photo for every output, or one per output (in order); original: the video
    the outputs were made from; outputs: the swapped videos; selection: which frames."""

    sources: tuple[str, ...]
    original: str
    outputs: tuple[str, ...]
    selection: FrameSelection = FrameSelection()
    gallery: tuple[str, ...] = ()  # photos of other people: ID retrieval among them and the sources
    # identity by "dlib" (128-D descriptor), "arcface" (the ghost engine's backbone, from the model
    # cache) or "auto" (arcface when the backbone is in the cache)
    recogniser: str = "auto"


def _crop(box: np.ndarray, prev: np.ndarray, shape: tuple[int, ...], grow: float = 0.25) -> tuple[int, int, int, int]:
    """The union of two face boxes grown by `grow` of their size, clipped to the frame: where flow is computed."""
    x0, y0 = min(box[0], prev[0]), min(box[1], prev[1])
    x1, y1 = max(box[2], prev[2]), max(box[3], prev[3])
    gx, gy = grow * (x1 - x0), grow * (y1 - y0)
    h, w = shape[:2]
    return (max(0, int(x0 - gx)), max(0, int(y0 - gy)), min(w, int(x1 + gx) + 1), min(h, int(y1 + gy) + 1))


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _arcface(settings: EvalSettings, given: ArcFaceRecogniser | None) -> ArcFaceRecogniser | None:
    """The ArcFace recogniser to use, or None for dlib's (see EvalSettings.recogniser)."""
    if settings.recogniser not in ("auto", "dlib", "arcface"):
        raise InputError(f"--recogniser {settings.recogniser!r}: choose auto, dlib or arcface")
    if settings.recogniser == "dlib":
        return None
    arc = given or ArcFaceRecogniser.from_cache()
    if arc is None and settings.recogniser == "arcface":
        raise InputError(
            "--recogniser arcface: GHOST's ArcFace backbone is not in the model cache "
            "(run `streamswap models fetch backbone`, or use --recogniser dlib)"
        )
    return arc


def _photo_embedding(arc: ArcFaceRecogniser, analyser: FaceAnalyser, path: str) -> np.ndarray | None:
    """ArcFace's embedding of a photo's largest face, or None without a face."""
    from streamswap.faces.image import read_image

    image = np.ascontiguousarray(read_image(path)[0].permute(1, 2, 0).numpy())
    box = analyser.largest(image)
    return None if box is None else arc.embed(image, analyser.fit(image, box, describe=False).points)


def evaluate(
    settings: EvalSettings,
    progress: Callable[[int, int | None], None] | None = None,
    *,
    arcface: ArcFaceRecogniser | None = None,
) -> EvalReport:
    """Measure each output against the original (see OutputSummary for what and which way is
    better). progress(frames done, frames expected or None) is called after each frame.
    arcface: the network for --recogniser auto/arcface (default: GHOST's backbone from the cache).
    InputError for unusable files, a source count that is neither 1 nor one per output, or
    --recogniser arcface without the backbone; NoFaceError for a source photo without a face."""
    import cv2
    import torch

    from streamswap.tracking.scene_cuts import scene_cuts

    n_out = len(settings.outputs)
    if not n_out:
        raise InputError("give at least one output video to evaluate")
    if len(settings.sources) not in (1, n_out):
        raise InputError(f"give one --source for all outputs or one per output ({n_out}), not {len(settings.sources)}")
    t0 = time.perf_counter()
    notes: list[str] = []
    arc = _arcface(settings, arcface)
    analyser = FaceAnalyser()
    src_paths = settings.sources if len(settings.sources) == n_out else settings.sources * n_out
    source_faces = {p: analyser.source(p) for p in dict.fromkeys(settings.sources)}
    if arc is not None:  # the same faces, described by ArcFace
        source_faces = {p: replace(f, descriptor=_photo_embedding(arc, analyser, p)) for p, f in source_faces.items()}
    expected, frames = aligned_frames(settings.original, settings.outputs, settings.selection, notes)
    sources = [source_faces[p] for p in src_paths]
    candidates = _candidates(analyser, source_faces, settings.gallery, notes, arc)
    embedded: dict[tuple[int, int], np.ndarray] = {}  # ArcFace's, computed here (dlib's: in the pool)
    flow = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    # descriptors (the costliest part, ~60 ms a face) in two processes beside this one: with one
    # output, one process alone kept this one waiting 45 % of the time (100 frames of nggyup)
    workers = max(1, min(2, os.cpu_count() or 1))

    series: list[dict[str, list[float]]] = [{name: [] for name in SERIES} for _ in range(n_out)]
    orig_points: list[np.ndarray | None] = []
    out_points: list[list[np.ndarray | None]] = [[] for _ in range(n_out)]
    index, times, cuts, breaks = [], [], [], []
    prev: tuple[np.ndarray, list[np.ndarray | None], np.ndarray | None] | None = None  # greys and box
    prev_rgb: torch.Tensor | None = None
    with_face = 0
    nan = float("nan")
    with DescriptorPool(workers) as pool:
        for done, frame in enumerate(frames, 1):
            # the cut signal on an area-averaged copy 4x its thumbnails' size: the same signal, cheap
            small = cv2.resize(frame.original, (4 * CUT_THUMB[1], 4 * CUT_THUMB[0]), interpolation=cv2.INTER_AREA)
            rgb = torch.from_numpy(small).permute(2, 0, 1)
            cut = bool(scene_cuts(rgb[None], prev_rgb, thumb=CUT_THUMB)[0]) if prev_rgb is not None else False
            prev_rgb = rgb
            index.append(frame.index)
            times.append(frame.time)
            if cut:
                cuts.append(frame.index)
            breaks.append(cut)
            grey = _grey(frame.original)
            out_greys = [None if img is None else _grey(img) for img in frame.outputs]
            # HOG near the last face, the whole frame after a cut and every FULL_DETECT frames
            near = prev[2] if prev is not None and not cut and (done - 1) % FULL_DETECT else None
            box = analyser.largest(frame.original, near)
            fit: FaceFit | None = None
            if box is not None:
                points, chip = analyser.fit_chip(frame.original, box)
                fit = FaceFit(box, points, None)
                if arc is None:
                    pool.submit((done - 1, -1), chip)
                else:
                    embedded[(done - 1, -1)] = arc.embed(frame.original, points)
            orig_points.append(None if fit is None else fit.points)
            with_face += fit is not None
            # flicker: the original's own flow from this frame back to the one before, within the face
            own_flicker, flicker = nan, [nan] * n_out
            if fit is not None and prev is not None and prev[2] is not None and not cut:
                x0, y0, x1, y1 = _crop(fit.box, prev[2], grey.shape)
                flow_map = np.asarray(
                    flow.calc(
                        np.ascontiguousarray(grey[y0:y1, x0:x1]),
                        np.ascontiguousarray(prev[0][y0:y1, x0:x1]),
                        None,  # type: ignore[call-overload]  # the stubs lack the None (allocate) form
                    )
                )
                b = fit.box
                inner = (
                    int(max(b[0], x0)) - x0,
                    int(max(b[1], y0)) - y0,
                    int(min(b[2], x1)) - x0,
                    int(min(b[3], y1)) - y0,
                )
                own_flicker = m.warp_error(prev[0][y0:y1, x0:x1], grey[y0:y1, x0:x1], flow_map, inner)
                for k in range(n_out):
                    before, now = prev[1][k], out_greys[k]
                    if before is not None and now is not None:
                        flicker[k] = m.warp_error(before[y0:y1, x0:x1], now[y0:y1, x0:x1], flow_map, inner)
            prev = (grey, out_greys, None if fit is None else fit.box)
            region = m.face_region(fit.points, grey.shape) if fit is not None else None
            pose = m.head_pose(fit.points, (grey.shape[1], grey.shape[0])) if fit is not None else None
            for k, img in enumerate(frame.outputs):
                s = series[k]
                if fit is None or img is None or pose is None or region is None or out_greys[k] is None:
                    out_points[k].append(None)
                    for name in SERIES:
                        s[name].append(nan)
                    continue
                got, chip = analyser.fit_chip(img, fit.box)
                if arc is None:
                    pool.submit((done - 1, k), chip)
                else:
                    embedded[(done - 1, k)] = arc.embed(img, got)
                out_points[k].append(got)
                pose_err = m.angle_error(m.head_pose(got, (grey.shape[1], grey.shape[0])), pose)
                mouth, eyes, brows = m.expression_errors(got, fit.points)
                values = {
                    "sim_source": nan,  # the similarities: once the descriptors are back
                    "sim_original": nan,
                    "original_sim_source": nan,
                    "id_retrieved": nan,  # 1 or 0, with a gallery
                    "yaw_error": float(pose_err[0]),
                    "pitch_error": float(pose_err[1]),
                    "roll_error": float(pose_err[2]),
                    "pose_error": float(pose_err.mean()),
                    "mouth_error": mouth,
                    "eyes_error": eyes,
                    "brows_error": brows,
                    "expression_error": (mouth + eyes + brows) / 3,
                    "mouth_open": m.mouth_opening(got),
                    "original_mouth_open": m.mouth_opening(fit.points),
                    "eye_error": m.eye_error(got, fit.points, fit.size),
                    "flicker": flicker[k],
                    "original_flicker": own_flicker,
                    "jitter": nan,
                    "original_jitter": nan,  # filled in at the end (they need the next frame)
                    "background": m.background_error(out_greys[k], grey, region),  # type: ignore[arg-type]
                }
                for name in SERIES:
                    s[name].append(values[name])
            if progress is not None:
                progress(done, expected)
        descriptors = pool.collect() if arc is None else embedded
    # ID retrieval: which row of `candidates` each output's source is (its sources come first)
    candidate_of = [list(source_faces).index(p) for p in src_paths]
    for k in range(n_out):  # identity, from the descriptors the pool computed
        s, src = series[k], sources[k].descriptor
        assert src is not None
        for pos in range(len(index)):
            got_d, own = descriptors.get((pos, k)), descriptors.get((pos, -1))
            if got_d is None or own is None:
                continue
            s["sim_source"][pos] = m.cosine(got_d, src)
            s["sim_original"][pos] = m.cosine(got_d, own)
            s["original_sim_source"][pos] = m.cosine(own, src)
            if candidates is not None:
                s["id_retrieved"][pos] = float(int(np.argmax(candidates @ got_d)) == candidate_of[k])
    if not index:
        raise InputError(f"no frame of {settings.original} was evaluated")
    own_jitter = m.acceleration(orig_points, breaks)
    results = []
    for k in range(n_out):
        s = series[k]
        out_jitter = m.acceleration(out_points[k], breaks)
        measured = [not np.isnan(v) for v in s["sim_source"]]
        s["jitter"] = [float(v) if ok else nan for v, ok in zip(out_jitter, measured, strict=True)]
        s["original_jitter"] = [float(v) if ok else nan for v, ok in zip(own_jitter, measured, strict=True)]
        results.append(OutputResult(settings.outputs[k], src_paths[k], _summary(s), s, _shots(s, index, breaks)))
    return EvalReport(
        original=settings.original,
        recogniser=RECOGNISER if arc is None else arc.name,
        frames_evaluated=len(index),
        frames_with_face=with_face,
        every=settings.selection.every,
        first_frames=settings.selection.frames,
        frame_index=index,
        frame_time=times,
        cuts=cuts,
        outputs=results,
        notes=notes,
        elapsed_s=time.perf_counter() - t0,
    )


def _candidates(
    analyser: FaceAnalyser,
    sources: dict[str, FaceFit],
    gallery: tuple[str, ...],
    notes: list[str],
    arc: ArcFaceRecogniser | None = None,
) -> np.ndarray | None:
    """(C, D) descriptors ID retrieval chooses among: the sources (in order), then each gallery
    photo with a face (one without is left out with a note). None without a gallery."""
    if not gallery:
        return None
    rows = [f.descriptor for f in sources.values()]
    for path in gallery:
        if arc is not None:
            desc = _photo_embedding(arc, analyser, path)
        else:
            face = analyser.photo(path)
            desc = None if face is None else face.descriptor
        if desc is None:
            notes.append(f"no face found in gallery photo {path}: left out")
        else:
            rows.append(desc)
    if len(rows) == len(sources):
        raise InputError("no face was found in any gallery photo")
    return np.stack([r for r in rows if r is not None])


def _shots(s: dict[str, list[float]], index: list[int], breaks: list[bool]) -> list[ShotSummary]:
    """Flicker and jitter ratios per shot: the evaluated frames from one cut (`breaks`) to the next."""
    starts = [0, *(i for i, cut in enumerate(breaks) if cut and i > 0)]
    out = []
    for a, b in zip(starts, [*starts[1:], len(index)], strict=True):
        fl = [(x, y) for x, y in zip(s["flicker"][a:b], s["original_flicker"][a:b], strict=True) if np.isfinite(x + y)]
        ji = [(x, y) for x, y in zip(s["jitter"][a:b], s["original_jitter"][a:b], strict=True) if np.isfinite(x + y)]
        out.append(
            ShotSummary(
                first_frame=index[a],
                frames=b - a,
                flicker_ratio=_ratio(m.nanmean([x for x, _ in fl]), m.nanmean([y for _, y in fl])),
                jitter_ratio=_ratio(m.nanmean([x for x, _ in ji]), m.nanmean([y for _, y in ji])),
            )
        )
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else float("nan")


def _summary(s: dict[str, list[float]]) -> OutputSummary:
    mean = m.nanmean
    both = [(a, b) for a, b in zip(s["mouth_open"], s["original_mouth_open"], strict=True) if np.isfinite(a + b)]
    sim_src, sim_orig = np.asarray(s["sim_source"]), np.asarray(s["sim_original"])
    ok = np.isfinite(sim_src)
    # flicker and jitter: the output's and the original's over the same frames
    fl = [(a, b) for a, b in zip(s["flicker"], s["original_flicker"], strict=True) if np.isfinite(a + b)]
    ji = [(a, b) for a, b in zip(s["jitter"], s["original_jitter"], strict=True) if np.isfinite(a + b)]
    fl_out, fl_own = mean([a for a, _ in fl]), mean([b for _, b in fl])
    ji_out, ji_own = mean([a for a, _ in ji]), mean([b for _, b in ji])
    return OutputSummary(
        frames=int(ok.sum()),
        sim_source=mean(sim_src),
        sim_original=mean(sim_orig),
        original_sim_source=mean(s["original_sim_source"]),
        identity_gain=mean(sim_src) - mean(s["original_sim_source"]),
        closer_to_source=float((sim_src[ok] > sim_orig[ok]).mean()) if ok.any() else float("nan"),
        id_retrieval=mean(s["id_retrieved"]),
        pose_error_deg=mean(s["pose_error"]),
        yaw_error_deg=mean(s["yaw_error"]),
        pitch_error_deg=mean(s["pitch_error"]),
        roll_error_deg=mean(s["roll_error"]),
        expression_error=mean(s["expression_error"]),
        mouth_error=mean(s["mouth_error"]),
        eyes_error=mean(s["eyes_error"]),
        brows_error=mean(s["brows_error"]),
        mouth_open_corr=m.correlation([a for a, _ in both], [b for _, b in both]),
        eye_error_px=mean(s["eye_error"]),
        flicker_ratio=_ratio(fl_out, fl_own),
        flicker_output=fl_out,
        flicker_original=fl_own,
        jitter_ratio=_ratio(ji_out, ji_own),
        jitter_output=ji_out,
        jitter_original=ji_own,
        background=mean(s["background"]),
    )
