"""Stage threads on their own device streams, items handed over with events (`stream.streams`).

Without a GPU the protocol is checked with a recording stand-in for CUDA streams and events (the
one part that cannot exist here): every thread enters a stream of its own, every item reaches its
consumer with the event its producer recorded after the work that made it, and the consumer waits
for that event before it uses the item. With a GPU the real CudaStreams run under
`torch.cuda.set_sync_debug_mode("error")`: a hand-over that made the host wait would raise."""

from __future__ import annotations

import contextlib
import itertools
import threading
from fractions import Fraction

import pytest
import torch

from streamswap.frames import Frame
from streamswap.stream import BatchPolicy, Graph, Sink, Source, Stage
from streamswap.stream.streams import CudaStreams, NoStreams, device_tensors, streams_for


class RecordingStreams:
    """Quacks like CudaStreams; logs (thread, what, detail) in order. A token names the thread
    that recorded it and how many it had recorded before."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, object]] = []
        self.entered: dict[str, int] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._made: dict[str, int] = {}

    def _say(self, what: str, detail: object) -> None:
        with self._lock:
            self.log.append((threading.current_thread().name, what, detail))

    @contextlib.contextmanager
    def enter(self):
        name = threading.current_thread().name
        with self._lock:
            assert name not in self.entered, f"{name} entered a second stream"
            self.entered[name] = next(self._ids)
        yield

    def handed_over(self):
        name = threading.current_thread().name
        with self._lock:
            k = self._made.get(name, 0)
            self._made[name] = k + 1
        token = (name, k)
        self._say("record", token)
        return token

    def received(self, item, token):
        self._say("wait", (item, token))


def test_every_thread_runs_on_its_own_stream_and_items_cross_with_their_producers_event():
    streams = RecordingStreams()
    seen: list[tuple[str, object]] = []

    def double(batch):
        streams._say("work", tuple(batch))
        return [x * 2 for x in batch]

    def write(item):
        streams._say("write", item)
        seen.append(item)

    graph = Graph(Source("decode", range(5)), [Stage("swap", double, BatchPolicy(max_batch=2))],
                  Sink("encode", write), streams=streams)
    graph.run()
    assert seen == [0, 2, 4, 6, 8]
    assert set(streams.entered) == {"stage-decode", "stage-swap", "stage-encode"}
    assert len(set(streams.entered.values())) == 3  # three distinct streams
    log = streams.log
    waits = [(who, item, token) for who, what, detail in log if what == "wait" for item, token in [detail]]
    # each item the stage takes carries the source's event for it; each the sink takes, the stage's
    source_waits = [(item, token) for who, item, token in waits if who == "stage-swap"]
    assert [item for item, _ in source_waits] == [0, 1, 2, 3, 4]
    assert all(token == ("stage-decode", item) for item, token in source_waits)
    sink_waits = [(item, token) for who, item, token in waits if who == "stage-encode"]
    assert [item for item, _ in sink_waits] == [0, 2, 4, 6, 8]
    assert all(token[0] == "stage-swap" for _, token in sink_waits)
    # a stage's event is recorded after the work whose outputs it covers, and waited for before use
    for i, (who, what, detail) in enumerate(log):
        if who == "stage-swap" and what == "record":
            assert log[i - 1][1] == "work" and log[i - 1][0] == "stage-swap"
        if who == "stage-swap" and what == "work":
            waited = {d[0] for w, x, d in log[:i] if w == "stage-swap" and x == "wait"}
            assert set(detail) <= waited, (detail, waited)
        if what == "write":
            earlier = [d for w, x, d in log[:i] if w == "stage-encode" and x == "wait"]
            assert earlier and earlier[-1][0] == detail


def test_a_lagging_stages_flushed_items_are_handed_over_too():
    streams = RecordingStreams()
    held: list[int] = []

    def lag(batch):  # answers each item one batch late
        held.extend(batch)
        out = held[:-1]
        del held[:-1]
        return out

    def flush():
        out = list(held)
        held.clear()
        return out

    out: list[int] = []
    Graph(Source("decode", range(4)), [Stage("track", lag, flush=flush)], Sink("encode", out.append),
          streams=streams).run()
    assert out == [0, 1, 2, 3]
    sink_tokens = [d[1] for w, x, d in streams.log if w == "stage-encode" and x == "wait"]
    assert len(sink_tokens) == 4 and all(t is not None and t[0] == "stage-track" for t in sink_tokens)


def test_the_cpu_uses_no_streams_and_a_frames_device_tensors_are_found():
    assert isinstance(streams_for(torch.device("cpu")), NoStreams)
    assert isinstance(streams_for(torch.device("cuda")), CudaStreams)
    image = torch.empty(4, 6, 3, dtype=torch.uint8, device="meta")  # a device tensor without a device
    frame = Frame(0, 0, Fraction(1, 25), image, faces=(torch.empty(2, device="meta"), torch.zeros(2)))
    found = list(device_tensors(frame))
    assert len(found) == 2 and found[0] is image  # the CPU tensor is not a device tensor
    assert list(device_tensors([torch.zeros(3)])) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_stage_streams_hand_over_without_a_host_wait():
    device = torch.device("cuda")
    frames = [torch.full((64, 64), float(i), device=device) for i in range(6)]
    out: list[torch.Tensor] = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        Graph(Source("decode", frames), [Stage("a", lambda b: [x * 2 for x in b], BatchPolicy(max_batch=2)),
                                         Stage("b", lambda b: [x + 1 for x in b])],
              Sink("encode", out.append), streams=CudaStreams(device)).run()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert [float(x[0, 0]) for x in out] == [2 * i + 1 for i in range(6)]
