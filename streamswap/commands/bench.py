"""`streamswap bench ...`: frames/s, the bottleneck stage, latency and peak memory of whole jobs;
each stage alone by batch size; scaling with input length; the comparison with the seed
implementation's way of running the same models. Every report: a rich table, `--json`, `--out
FILE.json` and `--plot FILE.png`, with the device, versions, input and settings recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from streamswap.app import app

bench_app = typer.Typer(
    help="Benchmarks: frames/s, bottleneck stage, latency, peak memory, scaling, baseline ratio.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")

INPUT = typer.Option(..., "--input", "-i", exists=True, dir_okay=False, help="Video to swap into.")
SOURCE = typer.Option(..., "--source", "-s", exists=True, dir_okay=False, help="Face image.")
ENGINE = typer.Option("lite", help="lite, ghost (its published models, or --stand-in), or a plugin engine's name.")
DEVICE = typer.Option("cpu", help="cpu, cuda or cuda:N.")
BATCH = typer.Option(None, "--batch-size", min=1, help="Frames per model call (default: 8 on a GPU, 2 on the CPU).")
STAND_IN = typer.Option(
    False,
    "--stand-in",
    help="ghost with random-initialised networks of the real "
    "architectures and ONNX stand-ins for SCRFD/2d106 (no weights needed).",
)
WIDTH = typer.Option(1.0, "--width", min=0.01, help="With --stand-in: AEI-Net channel multiplier (1 = full size).")
SR = typer.Option(False, "--sr", help="ghost: face super-resolution after the generator.")
AS_JSON = typer.Option(False, "--json", help="Print the report as JSON.")
OUT = typer.Option(None, "--out", help="Also write the JSON report here.")
PLOT = typer.Option(None, "--plot", help="Draw the report's charts into this PNG (matplotlib).")


def _job(
    kind: str,
    input: Path,
    source: Path,
    engine: str,
    device: str,
    batch_size: int | None,
    detect_every: int | None,
    stand_in: bool,
    width: float,
    sr: bool,
) -> Any:
    from streamswap.bench.jobs import JobSpec

    return JobSpec(
        kind,
        str(input),
        str(source),
        "",
        engine=engine,
        device=device,
        batch_size=batch_size,
        detect_every=detect_every,
        stand_in=stand_in,
        width=width,
        sr=sr,
    )


def _emit(report: dict[str, Any], as_json: bool, out: Path | None, plot: Path | None, table: Table) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if plot is not None:
        from streamswap.bench.plot import plot_report

        plot_report(report, plot)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        Console().print(table)
        env = report.get("environment", {})
        Console().print(f"[dim]{env.get('device')} · torch {env.get('torch')} · {env.get('date')}[/dim]")


def _mib(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _quality(source: Path, original: Path, output: Path) -> dict[str, Any]:
    """`streamswap eval`'s summary of one swapped output (JSON-ready: NaN as None)."""
    from streamswap.eval.report import json_data
    from streamswap.eval.run import EvalSettings, evaluate

    report = evaluate(EvalSettings(sources=(str(source),), original=str(original), outputs=(str(output),)))
    data = json_data(report, series=False)
    summary: dict[str, Any] = data["outputs"][0]["summary"]
    return {"recogniser": data["recogniser"], "frames_with_face": data["frames_with_face"], **summary}


@bench_app.command("pipeline")
def pipeline(
    input: Path = INPUT,
    source: Path = SOURCE,
    engine: str = ENGINE,
    device: str = DEVICE,
    batch_size: int = BATCH,
    detect_every: int = typer.Option(None, help="Detector every N frames (engine default if unset)."),
    stand_in: bool = STAND_IN,
    width: float = WIDTH,
    sr: bool = SR,
    host_syncs: bool = typer.Option(
        True,
        "--host-syncs/--no-host-syncs",
        help="Then run the job again counting the host syncs each stage would make on a GPU (on any device).",
    ),
    quality: bool = typer.Option(
        False, "--eval", help="Then judge the swapped output with `streamswap eval` (quality beside speed)."
    ),
    as_json: bool = AS_JSON,
    out: Path = OUT,
    plot: Path = PLOT,
) -> None:
    """End-to-end frames/s, per-stage throughput and busy fraction (the bottleneck), source-to-sink
    latency p50/p95, peak RSS and peak GPU memory - one swap job in a fresh process - and the
    host syncs per batch of each processing stage (`streamswap.stream.host_syncs`); with --eval
    the output's quality summary (`quality`: eval's fields) too."""
    import tempfile
    from dataclasses import asdict, replace

    from streamswap.bench.jobs import run_isolated
    from streamswap.bench.report import environment

    with tempfile.TemporaryDirectory(prefix="streamswap-bench-") as tmp:
        spec = replace(
            _job("pipeline", input, source, engine, device, batch_size, detect_every, stand_in, width, sr),
            host_syncs=host_syncs,
            out=str(Path(tmp) / "swapped.mp4") if quality else "",
        )
        run = run_isolated(spec)
        judged = _quality(source, input, Path(spec.out)) if quality else None
        spec = replace(spec, out="")  # the temporary output is gone with its folder
    # in the same run, so the ratio holds on a noisy machine: the job's speed as a share of what
    # its decode, RGB round trip, x264 (the job's preset and CRF) and audio copy cost alone
    from streamswap.bench.transcode import io_floor
    from streamswap.options import SwapOptions
    from streamswap.video.sinks import EncodeSettings

    job = SwapOptions(sources=(str(source),))
    floor = io_floor(input, EncodeSettings(crf=job.crf, preset=spec.preset or job.preset))
    report = {
        "environment": environment(),
        "settings": asdict(spec),
        "input": str(input),
        "engine": engine,
        **run,
        "io_floor_fps": floor["fps"],
        "fraction_of_io_floor": round(run["fps"] / floor["fps"], 3) if floor["fps"] else None,
        "quality": judged,
    }
    table = Table(
        title=f"pipeline: {run['fps']:.1f} fps ({report['fraction_of_io_floor']:.0%} of the I/O floor's "
        f"{floor['fps']:.1f}), bottleneck {run['bottleneck']}, latency p50/p95 "
        f"{run['latency_p50_s']:.2f}/{run['latency_p95_s']:.2f} s, peak RSS {run['peak_rss_mib']:.0f} "
        f"MiB, GPU {_mib(run['peak_gpu_mib'])} MiB"
        + (
            f"; identity gain {judged['identity_gain']:+.3f}, flicker x{judged['flicker_ratio']:.2f}, "
            f"jitter x{judged['jitter_ratio']:.2f}"
            if judged and judged.get("flicker_ratio") is not None and judged.get("jitter_ratio") is not None
            else ""
        )
    )
    for col in ("stage", "items/s", "busy", "max queue", "host syncs/batch"):
        table.add_column(col)
    for s in run["stages"]:
        syncs = s.get("host_syncs_per_batch")
        table.add_row(
            s["name"],
            f"{s['items_per_s']:.1f}",
            f"{s['busy']:.2f}",
            str(s["queue_max"] or "-"),
            "-" if syncs is None else f"{syncs:.1f}",
        )
    _emit(report, as_json, out, plot, table)


@bench_app.command("stages")
def stages(
    input: Path = INPUT,
    source: Path = SOURCE,
    engine: str = ENGINE,
    device: str = DEVICE,
    batches: str = typer.Option("1,2,4,8", help="Batch sizes, comma-separated."),
    frames: int = typer.Option(16, min=1, help="Frames from the start of the input to run each stage on."),
    stand_in: bool = STAND_IN,
    width: float = WIDTH,
    sr: bool = SR,
    as_json: bool = AS_JSON,
    out: Path = OUT,
    plot: Path = PLOT,
) -> None:
    """Each stage alone (decode, detect, align, generate, super-resolution, blend, encode), by batch
    size, on real frames: frames/s and ms per frame; the slowest stage."""
    from streamswap.bench.stages import StagesSpec, bench_stages
    from streamswap.errors import InputError

    try:
        sizes = tuple(int(b) for b in batches.split(",") if b.strip())
    except ValueError:
        raise InputError(f"--batches {batches!r}: give whole numbers separated by commas, e.g. 1,2,4,8") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batches {batches!r}: give batch sizes of at least 1")
    report = bench_stages(
        StagesSpec(
            str(input),
            str(source),
            engine=engine,
            device=device,
            batches=sizes,
            frames=frames,
            stand_in=stand_in,
            width=width,
            sr=sr,
        )
    )
    table = Table(
        title=f"stages ({engine}, {report['faces']} faces in {frames} frames): slowest {report['slowest_stage']}"
    )
    for col in ("stage", "batch", "frames/s", "ms/frame"):
        table.add_column(col)
    for r in report["stages"]:
        table.add_row(r["stage"], str(r["batch"] or "-"), f"{r['items_per_s']:.1f}", f"{r['ms_per_item']:.1f}")
    _emit(report, as_json, out, plot, table)


@bench_app.command("baseline")
def baseline(
    input: Path = INPUT,
    source: Path = SOURCE,
    engine: str = ENGINE,
    device: str = DEVICE,
    batch_size: int = BATCH,
    detect_every: int = typer.Option(None, help="The pipeline's detector interval (engine default if unset)."),
    stand_in: bool = STAND_IN,
    width: float = WIDTH,
    sr: bool = SR,
    as_json: bool = AS_JSON,
    out: Path = OUT,
    plot: Path = PLOT,
) -> None:
    """The same models run the seed's way (all frames in memory, detection frame by frame, generator
    in batches, blending frame by frame, mp4v, audio re-muxed) vs the StreamSwap pipeline: speed and
    peak-memory ratios. Each runs in its own fresh process on the same input and device."""
    from streamswap.bench.jobs import compare

    report = compare(_job("pipeline", input, source, engine, device, batch_size, detect_every, stand_in, width, sr))
    table = Table(
        title=f"StreamSwap vs baseline: {report['speed_ratio']:.2f}x the speed, "
        f"{report['memory_ratio']:.2f}x the peak memory ({report['anon_memory_ratio']:.2f}x anonymous)"
    )
    for col in ("run", "frames", "fps", "seconds", "CPU s", "peak RSS MiB", "peak anon MiB", "peak GPU MiB"):
        table.add_column(col)
    for kind in ("baseline", "pipeline"):
        r = report[kind]
        table.add_row(
            kind,
            str(r["frames"]),
            f"{r['fps']:.1f}",
            f"{r['seconds']:.1f}",
            f"{r['cpu_s']:.1f}",
            _mib(r["peak_rss_mib"]),
            _mib(r["peak_anon_mib"]),
            _mib(r["peak_gpu_mib"]),
        )
    _emit(report, as_json, out, plot, table)


@bench_app.command("length")
def length(
    input: Path = INPUT,
    source: Path = SOURCE,
    engine: str = ENGINE,
    device: str = DEVICE,
    batch_size: int = BATCH,
    lengths: str = typer.Option("10,60,600", help="Input lengths in seconds (the input is looped by packet copy)."),
    baseline_up_to: float = typer.Option(
        0.0, help="Also run the baseline on lengths up to this many seconds (it holds every frame in memory)."
    ),
    stand_in: bool = STAND_IN,
    width: float = WIDTH,
    sr: bool = SR,
    as_json: bool = AS_JSON,
    out: Path = OUT,
    plot: Path = PLOT,
) -> None:
    """Frames/s and peak memory against input length: flat memory, constant throughput."""
    from streamswap.bench.length import ScalingSpec, bench_scaling
    from streamswap.errors import InputError

    try:
        secs = tuple(float(x) for x in lengths.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--lengths {lengths!r}: give seconds separated by commas, e.g. 10,60,600") from None
    if not secs or min(secs) <= 0:
        raise InputError(f"--lengths {lengths!r}: give lengths above 0 seconds")
    job = _job("pipeline", input, source, engine, device, batch_size, None, stand_in, width, sr)
    report = bench_scaling(ScalingSpec(job, secs, baseline_up_to))
    table = Table(
        title=f"length: fps spread {report['fps_spread']:.0%}, peak memory spread "
        f"{report['memory_spread']:.0%} across lengths"
    )
    for col in ("length s", "run", "frames", "fps", "peak RSS MiB", "peak anon MiB", "peak GPU MiB"):
        table.add_column(col)
    for r in report["runs"]:
        table.add_row(
            f"{r['length_s']:g}",
            r["kind"],
            str(r["frames"]),
            f"{r['fps']:.1f}",
            _mib(r["peak_rss_mib"]),
            _mib(r["peak_anon_mib"]),
            _mib(r["peak_gpu_mib"]),
        )
    _emit(report, as_json, out, plot, table)


@bench_app.command("resume")
def resume(
    input: Path = INPUT,
    source: Path = SOURCE,
    engine: str = ENGINE,
    device: str = DEVICE,
    batch_size: int = BATCH,
    seconds: float = typer.Option(60.0, min=1.0, help="Loop the input (packet copy) to this length, s."),
    repeats: int = typer.Option(2, min=1, help="Runs of each kind, alternating."),
    stand_in: bool = STAND_IN,
    width: float = WIDTH,
    sr: bool = SR,
    as_json: bool = AS_JSON,
    out: Path = OUT,
) -> None:
    """What resumability costs: the same swap as one file and as resumable segments."""
    from streamswap.bench.resume import ResumeBenchSpec, bench_resume

    job = _job("pipeline", input, source, engine, device, batch_size, None, stand_in, width, sr)
    report = bench_resume(ResumeBenchSpec(job, seconds, repeats))
    table = Table(title=f"resume: segmented overhead {report['overhead']:+.1%} over {report['frames']} frames")
    for col in ("run", "fps (each)", "median s"):
        table.add_column(col)
    for kind in ("plain", "segmented"):
        table.add_row(kind, ", ".join(f"{f:.1f}" for f in report[f"{kind}_fps"]), f"{report[f'{kind}_seconds']:.1f}")
    _emit(report, as_json, out, None, table)


@bench_app.command("stop-resume")
def stop_resume(
    input: Path = INPUT,
    source: Path = SOURCE,
    seconds: float = typer.Option(720.0, min=1.0, help="Loop the input to this length, s (re-encoded)."),
    size: str = typer.Option("640x360", help="Re-encode the looped input at WIDTHxHEIGHT."),
    fps: int = typer.Option(25, min=1, help="... and this frame rate (each input frame becomes one frame)."),
    stop_at: float = typer.Option(0.6, min=0.05, max=0.95, help="SIGTERM once this fraction of segments is done."),
    segment_seconds: float = typer.Option(
        None, "--segment-seconds", min=1.0, help="The job's segment length, s [default: the job's, 10]."
    ),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also run uninterrupted, to measure the seams."),
    lossless: bool = typer.Option(
        True,
        "--lossless/--default-quality",
        help="Encode losslessly (x264 CRF 0), so the seams show the processing's differences, not the encoder's.",
    ),
    as_json: bool = AS_JSON,
    out: Path = OUT,
) -> None:
    """A long lite swap stopped by SIGTERM part-way, then the same command again: frames, audio,
    what the second run decoded, and the seams against an uninterrupted run."""
    import tempfile

    from streamswap.bench.media import scaled_loop
    from streamswap.bench.resume import stop_and_resume
    from streamswap.errors import InputError

    try:
        w, h = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {size!r}: give WIDTHxHEIGHT, e.g. 640x360") from None
    with tempfile.TemporaryDirectory(dir=out.parent if out else None) as tmp:
        clip = scaled_loop(input, Path(tmp) / "input.mp4", seconds=seconds, size=(w, h), fps=fps, loops=10**6)
        report = stop_and_resume(
            str(clip),
            str(source),
            tmp,
            stop_at=stop_at,
            compare=compare,
            extra=(
                *(("--segment-seconds", str(segment_seconds)) if segment_seconds else ()),
                *(("--crf", "0", "--preset", "ultrafast") if lossless else ()),
            ),
        )
    table = Table(title=f"stop at {stop_at:.0%} and resume: {report['frames_in_input']} frames")
    for col in (
        "frames match",
        "audio identical",
        "2nd run decoded",
        "segments kept",
        "seams max diff",
        "seams min PSNR",
        "x264 CRF 18 min PSNR",
    ):
        table.add_column(col)
    seams = report.get("seams", {})
    table.add_row(
        str(report["frames_match"]),
        str(report["audio_identical"]),
        f"{report['second_decoded_fraction']:.1%}",
        f"{report['second']['segments_reused']}/{report['second']['segments']}",
        f"{seams.get('max_abs_diff', '-')} ({seams.get('frames_differing', '-')} frames)",
        f"{seams.get('min_psnr_db') or '-'}",
        f"{report.get('encoder_noise_min_psnr_db', '-')}",
    )
    _emit(report, as_json, out, None, table)
