"""Charts of benchmark reports (matplotlib, no display needed): the per-stage bar chart, the
scaling curves, the baseline comparison and memory over time - whichever the report holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamswap.errors import InputError


def _panels(report: dict[str, Any]) -> list[str]:
    panels = []
    if "stages" in report and report["stages"] and "stage" in report["stages"][0]:
        panels.append("stages")
    if "stages" in report and report["stages"] and "busy" in report["stages"][0]:
        panels.append("pipeline")
    if "runs" in report:
        panels += ["scaling_fps", "scaling_memory"]
    if "baseline" in report and "pipeline" in report:
        panels += ["compare", "timeline"]
    return panels


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Draw what `report` holds into a PNG at `path` (title: device and date). Returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError("--plot needs matplotlib: pip install 'streamswap[bench]'") from exc
    panels = _panels(report)
    if not panels:
        raise InputError("nothing to plot in this report")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _DRAW[panel](ax, report)
    env = report.get("environment", {})
    fig.suptitle(f"StreamSwap on {env.get('device', '?')} - {env.get('date', '')}", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _stages(ax: Any, report: dict[str, Any]) -> None:
    rows = report["stages"]
    batches = sorted({r["batch"] for r in rows if r["batch"] is not None})
    names = list(dict.fromkeys(r["stage"] for r in rows))
    width = 0.8 / max(1, len(batches))
    for j, b in enumerate(batches):
        vals = [next((r["items_per_s"] for r in rows if r["stage"] == n and r["batch"] in (b, None)), 0) for n in names]
        ax.bar([i + j * width for i in range(len(names))], vals, width, label=f"batch {b}")
    ax.set_xticks([i + width * (len(batches) - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("frames/s (each stage alone)")
    ax.set_title(f"stages - slowest: {report.get('slowest_stage')}")
    ax.legend(fontsize=8)


def _pipeline(ax: Any, report: dict[str, Any]) -> None:
    rows = [s for s in report["stages"] if s["name"] != "decode"] or report["stages"]
    ax.bar([s["name"] for s in rows], [s["busy"] for s in rows], color="tab:orange")
    ax.set_ylim(0, 1)
    ax.set_ylabel("busy fraction")
    ax.set_title(f"pipeline {report['fps']:.1f} fps - bottleneck: {report.get('bottleneck')}")


def _scaling(ax: Any, report: dict[str, Any], key: str, ylabel: str, title: str) -> None:
    for kind, style in (("pipeline", "o-"), ("baseline", "s--")):
        runs = [r for r in report["runs"] if r["kind"] == kind]
        if runs:
            ax.plot([r["length_s"] for r in runs], [r[key] for r in runs], style, label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("input length (s)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _scaling_fps(ax: Any, report: dict[str, Any]) -> None:
    _scaling(ax, report, "fps", "frames/s", "throughput vs length")


def _scaling_memory(ax: Any, report: dict[str, Any]) -> None:
    _scaling(ax, report, "peak_rss_mib", "peak RSS (MiB)", "peak memory vs length")


def _compare(ax: Any, report: dict[str, Any]) -> None:
    kinds = ("baseline", "pipeline")
    ax.bar([f"{k}\nfps" for k in kinds], [report[k]["fps"] for k in kinds], color=["tab:gray", "tab:blue"])
    ax.set_ylabel("frames/s")
    twin = ax.twinx()
    twin.bar([f"{k}\nMiB" for k in kinds], [report[k]["peak_rss_mib"] for k in kinds], color=["silver", "lightblue"])
    twin.set_ylabel("peak RSS (MiB)")
    ax.set_title(f"{report['speed_ratio']:.2f}x the speed, {report['memory_ratio']:.2f}x the memory")


def _timeline(ax: Any, report: dict[str, Any]) -> None:
    for kind in ("baseline", "pipeline"):
        points = report[kind].get("memory_timeline") or []
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=f"{kind} RSS")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_title("memory over the run")
    ax.legend(fontsize=8)


_DRAW = {
    "stages": _stages,
    "pipeline": _pipeline,
    "scaling_fps": _scaling_fps,
    "scaling_memory": _scaling_memory,
    "compare": _compare,
    "timeline": _timeline,
}
