"""The final file of a chunked job, by packet copy: no frame is decoded or re-encoded here.

Every chunk was encoded by x264 with the job's settings and starts with an IDR frame, its packets
carrying the input's pts; the chunks' video packets are copied in order into one stream (the
first chunk's stream is the template, and every chunk must carry the same parameter sets), and
the input's audio and subtitle streams are copied once over the whole duration, interleaved by
time, exactly as a single-process job's sink copies them. Decode timestamps must increase
strictly across every seam and the frame count must be what the plan says, or nothing is
written. The file is written under a temporary name in the output's folder and renamed into
place only when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

from streamswap.errors import PipelineError
from streamswap.files import publish, temp_beside
from streamswap.video.sinks import (
    _StreamCopier,  # the single-process sink's audio copy, shared
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StitchReport:
    """What the stitch wrote: frames (video packets), audio packets, seconds taken."""

    output: str
    frames: int
    audio_packets: int
    seconds: float


def stitch(
    chunks: list[Path],
    output: str | Path,
    *,
    expected_frames: int,
    audio_from: str | None,
    start_s: float = 0.0,
    end_s: float | None = None,
    metadata: dict[str, str] | None = None,
) -> StitchReport:
    """Join chunk files (in order) into `output`. `audio_from`: the input whose audio/subtitle
    streams are copied; start_s / end_s: the job's time range of the input (video pts and audio
    shifted so it starts at 0, as `time_range` does). PipelineError when the chunks do not join
    into exactly `expected_frames` frames with increasing timestamps."""
    import time

    t0 = time.monotonic()
    out_path = Path(output)
    if not chunks:
        raise PipelineError("stitch: no chunk to join")
    tmp = temp_beside(out_path)
    out = av.open(str(tmp), "w")
    copier: _StreamCopier | None = None
    frames = 0
    ok = False
    try:
        out.metadata.update(metadata or {})
        with av.open(str(chunks[0])) as first:
            template = first.streams.video[0]
            params = bytes(template.codec_context.extradata or b"")
            vs = out.add_stream_from_template(template)
            vs.time_base = template.time_base
            tb = template.time_base
            assert tb is not None  # PyAV types it optional; a demuxed stream has one
        shift = round(start_s / tb) if start_s else 0
        if audio_from:
            copier = _StreamCopier(audio_from, out, start_s)
        last_dts: int | None = None
        for path in chunks:
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                if bytes(s.codec_context.extradata or b"") != params or s.time_base != tb:
                    raise PipelineError(
                        f"stitch: {path.name} was encoded with other settings than the first "
                        "chunk (parameter sets or time base differ); delete the work directory "
                        "and run the job again"
                    )
                for pkt in c.demux(s):
                    if pkt.dts is None:  # the demuxer's flush packet
                        continue
                    assert pkt.pts is not None  # the chunks' packets all have both timestamps
                    pkt.pts -= shift
                    pkt.dts -= shift
                    if last_dts is not None and pkt.dts <= last_dts:
                        raise PipelineError(
                            f"stitch: decode timestamps do not increase at the start of "
                            f"{path.name} ({pkt.dts} after {last_dts})"
                        )
                    last_dts = pkt.dts
                    if copier is not None:
                        copier.pump(float(pkt.pts * tb))
                    pkt.stream = vs
                    out.mux(pkt)
                    frames += 1
        if copier is not None:
            copier.pump(None if end_s is None else end_s - start_s)
        if frames != expected_frames:
            raise PipelineError(f"stitch: the chunks hold {frames} frames, the plan {expected_frames}")
        ok = True
    finally:
        try:
            out.close()
        finally:
            if copier is not None:
                copier.close()
            if ok:
                publish(tmp, out_path)
            else:
                tmp.unlink(missing_ok=True)
    return StitchReport(str(out_path), frames, copier.packets if copier else 0, time.monotonic() - t0)
