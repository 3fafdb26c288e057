"""`streamswap demo`: a face swap on media the installed packages ship, with no network.

It films a slow pan/zoom over insightface's group photo (six faces), then swaps the face of
the Tom Hanks portrait insightface also ships into it with the lite engine, and says where both
videos are.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import typer

from streamswap.app import app
from streamswap.commands.console import say, stderr_console


def write_target_video(path: Path, seconds: float, fps: int) -> int:
    """Film the pan/zoom over the shipped group photo into `path`; returns the frame count."""
    from streamswap.faces.image import read_image
    from streamswap.frames import Frame
    from streamswap.sample_media import PanZoom, pan_zoom_frames, shipped_image
    from streamswap.video.nv import BackendChoice
    from streamswap.video.probe import VideoInfo
    from streamswap.video.sinks import EncodeSettings, FileSink

    move = PanZoom(seconds=seconds, fps=fps)
    n = round(seconds * fps)
    info = VideoInfo(
        width=move.size[0],
        height=move.size[1],
        fps=Fraction(fps),
        time_base=Fraction(1, fps),
        frames=n,
        duration_s=seconds,
        codec="h264",
    )
    sink = FileSink(
        path, info, EncodeSettings(crf=20, preset="veryfast"), BackendChoice("x264", "demo"), overwrite=True
    )
    error: BaseException | None = None
    try:
        for i, image in enumerate(pan_zoom_frames(read_image(shipped_image("group")), move)):
            sink.write(Frame(i, i, Fraction(1, fps), image))
    except BaseException as exc:
        error = exc
        raise
    finally:
        sink.close(error)
    return n


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("streamswap-demo"), "--out-dir", help="Where to write the videos."),
    seconds: float = typer.Option(6.0, help="Length of the demo video."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Swap a face into a short video made from images the installed packages ship (offline)."""
    from streamswap.api import SwapOptions
    from streamswap.commands.swap import run_swap
    from streamswap.sample_media import shipped_image

    console = stderr_console(quiet)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "target.mp4"
    n = write_target_video(target, seconds, fps=25)
    say(console, "target:", f"{n} frames panning over insightface's group photo -> {target}")
    source = shipped_image("tom_hanks")
    say(console, "source face:", f"{source} (shipped with insightface)")
    output = out_dir / "swapped.mp4"
    options = SwapOptions(sources=(str(source),), engine="lite", preset="veryfast", overwrite=True)
    report = run_swap(options, str(target), str(output), quiet=quiet, as_json=False, label="demo")
    typer.echo(
        f"demo video (lite engine, {report.frames_swapped}/{report.frames} frames with a swapped face): "
        f"{output.resolve()}"
    )
