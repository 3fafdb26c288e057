"""What `streamswap eval` reports: per-output summaries and per-frame series (dataclasses), and
the writers for JSON, CSV and the PNG plot."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

#: The per-frame series of each output, in CSV column order (NaN/empty where not measured).
SERIES = (
    "sim_source",
    "sim_original",
    "original_sim_source",
    "id_retrieved",
    "yaw_error",
    "pitch_error",
    "roll_error",
    "pose_error",
    "mouth_error",
    "eyes_error",
    "brows_error",
    "expression_error",
    "mouth_open",
    "original_mouth_open",
    "eye_error",
    "flicker",
    "original_flicker",
    "jitter",
    "original_jitter",
    "background",
)


@dataclass
class OutputSummary:
    """One output's scores (NaN where nothing could be measured). Better is: identity_gain and
    closer_to_source higher; *_error, background lower (0 = the original's); flicker_ratio and
    jitter_ratio near 1 (the original's own), above 1 = less stable; mouth_open_corr near 1."""

    frames: int  # frames of the output compared (the original had a face and the output a frame)
    sim_source: float  # mean cosine similarity of the swapped face to the source's descriptor
    sim_original: float  # ... to the original face's descriptor in the same frame
    original_sim_source: float  # mean similarity of the original face to the source (the baseline)
    identity_gain: float  # sim_source - original_sim_source
    closer_to_source: float  # fraction of frames with sim_source > sim_original
    id_retrieval: float  # with --gallery: fraction of frames whose top-1 among sources + gallery is the source
    pose_error_deg: float  # mean |yaw|, |pitch|, |roll| difference, degrees
    yaw_error_deg: float
    pitch_error_deg: float
    roll_error_deg: float
    expression_error: float  # mean of the mouth, eyes and brows errors (inter-ocular units)
    mouth_error: float
    eyes_error: float
    brows_error: float
    mouth_open_corr: float  # Pearson correlation of the mouth opening over time, output vs original
    eye_error_px: float  # eye landmark error at a 256-pixel face
    flicker_ratio: float  # flicker_output / flicker_original
    flicker_output: float  # mean flow-warping error in the face box, grey levels
    flicker_original: float
    jitter_ratio: float  # jitter_output / jitter_original
    jitter_output: float  # mean landmark acceleration, pixels per frame^2
    jitter_original: float
    background: float  # mean |output - original| outside the dilated face hull, grey levels


@dataclass(frozen=True)
class ShotSummary:
    """The temporal measures of one shot (the frames from one scene cut to the next): its first
    frame (original frame number), how many evaluated frames it holds, and the flicker and jitter
    ratios over it alone (NaN where it has too few frames with a face)."""

    first_frame: int
    frames: int
    flicker_ratio: float
    jitter_ratio: float


@dataclass
class OutputResult:
    """One output: its path, the source photo it is judged against, the summary, the series
    (name -> one value per evaluated frame, see SERIES) and the temporal measures per shot."""

    output: str
    source: str
    summary: OutputSummary
    series: dict[str, list[float]] = field(default_factory=dict)
    shots: list[ShotSummary] = field(default_factory=list)


@dataclass
class EvalReport:
    """A whole evaluation: the original, the recogniser, which frames (frame_index, frame_time:
    one per evaluated frame; cuts: original frame numbers that start a shot), the outputs."""

    original: str
    recogniser: str
    frames_evaluated: int
    frames_with_face: int
    every: int
    first_frames: int | None
    frame_index: list[int]
    frame_time: list[float]
    cuts: list[int]
    outputs: list[OutputResult]
    notes: list[str]
    elapsed_s: float


def _finite(value: Any) -> Any:
    """NaN and infinities as None (JSON null), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_data(report: EvalReport, series: bool = True) -> dict[str, Any]:
    """The report as JSON-ready data (NaN -> None); without the per-frame series if not `series`."""
    data = asdict(report)
    if not series:
        for out in data["outputs"]:
            out.pop("series")
    result: dict[str, Any] = _finite(data)
    return result


def summary_rows() -> list[str]:
    """The OutputSummary field names, in order."""
    return [f.name for f in fields(OutputSummary)]


def write_csv(report: EvalReport, path: str | Path) -> None:
    """One row per (output, evaluated frame): output, frame, time, then SERIES (empty = not measured)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["output", "frame", "time", *SERIES])
        for out in report.outputs:
            for i, (index, t) in enumerate(zip(report.frame_index, report.frame_time, strict=True)):
                values = [out.series[name][i] for name in SERIES]
                writer.writerow(
                    [out.output, index, f"{t:.4f}", *("" if not math.isfinite(v) else f"{v:.6g}" for v in values)]
                )


def write_plot(report: EvalReport, path: str | Path) -> None:
    """A PNG of the main per-frame series, one line per output (the original's own dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("identity: similarity to the source", "sim_source", "original_sim_source"),
        ("pose error (degrees)", "pose_error", None),
        ("expression error (inter-ocular)", "expression_error", None),
        ("mouth opening", "mouth_open", "original_mouth_open"),
        ("flicker (warp error, grey levels)", "flicker", "original_flicker"),
        ("background |diff| (grey levels)", "background", None),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(12, 9), sharex=True)
    x = report.frame_index
    for ax, (title, name, own) in zip(axes.flat, panels, strict=True):
        for k, out in enumerate(report.outputs):
            label = Path(out.output).name
            ax.plot(x, out.series[name], color=f"C{k}", lw=1.2, label=label)
            if own is not None and k == 0:
                ax.plot(x, out.series[own], color="k", lw=1, ls="--", label="original")
        for cut in report.cuts:
            ax.axvline(cut, color="0.7", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("frame")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"streamswap eval: {Path(report.original).name}")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
