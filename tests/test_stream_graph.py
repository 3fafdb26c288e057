"""The stage graph with plain Python stages: order, batching, back-pressure, live drops,
errors, stops and metrics."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import pytest

from streamswap.errors import PipelineError
from streamswap.stream import BatchPolicy, Fault, Graph, Sink, Source, Stage, StopPipeline


class Collect:
    """A sink that records what it got, optionally slowly, and how it was closed."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.items: list = []
        self.closed_with: list = []
        self.delay_s = delay_s

    def write(self, item) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.items.append(item)

    def close(self, error) -> None:
        self.closed_with.append(error)

    def sink(self, name: str = "sink", queue_size: int = 8) -> Sink:
        return Sink(name, self.write, self.close, queue_size=queue_size)


def paced(n: int | None, every_s: float = 0.0):
    i = 0
    while n is None or i < n:
        if every_s:
            time.sleep(every_s)
        yield i
        i += 1


def _stage_threads_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("stage-") and t.is_alive()]


def test_output_order_is_input_order_with_parallel_workers_and_jitter():
    rng = random.Random(0)

    def jitter(batch):
        time.sleep(rng.random() * 0.003)
        return [x * 10 for x in batch]

    out = Collect()
    g = Graph(Source("src", paced(300)),
              [Stage("a", jitter, BatchPolicy(3), workers=4), Stage("b", jitter, workers=3)],
              out.sink())
    stats = g.run()
    assert out.items == [x * 10 * 10 for x in range(300)]
    assert stats.state == "done" and stats.frames_out == 300 and stats.dropped == 0
    assert out.closed_with == [None]


def test_batches_fill_up_to_max_batch_and_do_not_wait_past_max_wait():
    sizes: list[int] = []

    def record(batch):
        sizes.append(len(batch))
        return batch

    Graph(Source("src", paced(64)), [Stage("batch", record, BatchPolicy(8, 0.2), queue_size=16)],
          Collect().sink()).run()
    assert max(sizes) == 8 and sum(sizes) == 64
    assert sizes.count(8) >= 6  # a fast source fills batches

    sizes.clear()
    t0 = time.monotonic()
    Graph(Source("src", paced(10, every_s=0.02)),
          [Stage("batch", record, BatchPolicy(8, 0.0))], Collect().sink()).run()
    assert sizes == [1] * 10  # never waits for a batch to fill when max_wait is 0
    assert time.monotonic() - t0 < 1.0


def test_slow_sink_back_pressures_the_source_and_queues_stay_bounded():
    produced = []

    def source():
        for i in range(150):
            produced.append(i)
            yield i

    out = Collect(delay_s=0.003)
    in_flight = []

    def watch(batch):
        in_flight.append(len(produced) - len(out.items))
        return batch

    g = Graph(Source("src", source()), [Stage("mid", watch, queue_size=4)], out.sink(queue_size=4))
    stats = g.run()
    assert out.items == list(range(150))
    # 4 + 4 queued, one in each of mid's and the sink's hands, one being produced
    assert max(in_flight) <= 4 + 4 + 3
    for s in stats.stages[1:]:
        assert s.queue_max is not None and s.queue_max <= s.queue_capacity


def test_file_mode_never_drops_even_when_the_pipeline_lags():
    out = Collect(delay_s=0.002)
    stats = Graph(Source("src", paced(100)), [Stage("mid", lambda b: b, queue_size=2)],
                  out.sink(queue_size=2), mode="file").run()
    assert out.items == list(range(100)) and stats.dropped == 0


def test_live_mode_drops_the_oldest_frames_and_keeps_latency_bounded():
    out = Collect(delay_s=0.01)  # the sink manages 100 items/s, the source offers ~500/s
    stats = Graph(Source("cam", paced(300, every_s=0.002)), [Stage("mid", lambda b: b, queue_size=2)],
                  out.sink(queue_size=2), mode="live").run()
    src = stats.stage("cam")
    assert src.dropped > 50
    assert len(out.items) + src.dropped == 300
    assert out.items == sorted(out.items) and out.items[-1] == 299  # newest survives, order kept
    # at most ~5 items queued/in hand ahead of a 10 ms sink: latency stays well under 0.2 s
    assert stats.latency_p95_s is not None and stats.latency_p95_s < 0.2


def test_a_stage_error_stops_every_stage_promptly_and_names_the_stage():
    out = Collect()

    def explode(batch):
        if 50 in batch:
            raise ValueError("bad pixel")
        return batch

    g = Graph(Source("src", paced(None, every_s=0.001)),  # endless: only the error can stop it
              [Stage("convert", lambda b: b), Stage("swap", explode, BatchPolicy(1))],
              out.sink())
    t0 = time.monotonic()
    with pytest.raises(PipelineError) as info:
        g.run(interval_s=0.05)
    assert time.monotonic() - t0 < 2.0
    msg = str(info.value)
    assert "'swap'" in msg and "bad pixel" in msg and "item 50" in msg
    assert info.value.stage == "swap"
    assert out.items == list(range(len(out.items))) and len(out.items) <= 50
    assert len(out.closed_with) == 1 and isinstance(out.closed_with[0], ValueError)
    stats = g.stats()
    assert stats.state == "failed" and stats.failed_stage == "swap"
    assert stats.stop_latency_s is not None and stats.stop_latency_s < 2.0
    assert _stage_threads_alive() == []


@pytest.mark.parametrize("where", ["src", "mid", "sink"])
def test_injected_fault_fails_the_named_stage_at_that_item(where):
    out = Collect()
    g = Graph(Source("src", paced(100)), [Stage("mid", lambda b: b)], out.sink(),
              fault=Fault.parse(f"{where}:30"))
    with pytest.raises(PipelineError, match=f"stage '{where}' failed at item 30"):
        g.run()
    assert len(out.items) <= 30 and out.items == list(range(len(out.items)))
    if where == "sink":
        assert len(out.items) == 30


def test_fault_spec_parsing():
    assert Fault.parse("encode:40") == Fault("encode", 40)
    assert Fault.from_env({"STREAMSWAP_FAULT": "decode:0"}) == Fault("decode", 0)
    assert Fault.from_env({}) is None
    with pytest.raises(ValueError):
        Fault.parse("encode")


def test_stop_pipeline_from_the_sink_stops_cleanly_without_an_error():
    class Quit(Collect):
        def write(self, item):
            if item == 20:
                raise StopPipeline
            super().write(item)

    out = Quit()
    stats = Graph(Source("src", paced(None)), [Stage("mid", lambda b: b)], out.sink()).run()
    assert stats.state == "stopped" and stats.error is None
    assert out.items == list(range(20)) and out.closed_with == [None]


def test_stop_lets_in_flight_items_reach_the_sink():
    out = Collect(delay_s=0.005)
    g = Graph(Source("src", paced(None, every_s=0.001)), [Stage("mid", lambda b: b)], out.sink())
    threading.Timer(0.2, g.stop).start()
    stats = g.run()
    assert stats.state == "done" and out.items == list(range(len(out.items))) and out.items


def test_a_stage_returning_the_wrong_number_of_items_is_an_error():
    with pytest.raises(PipelineError, match="'bad'.*returned 0 items for a batch of 1"):
        Graph(Source("src", paced(5)), [Stage("bad", lambda b: [])], Collect().sink()).run()


def test_ctrl_c_stops_the_graph_finalises_the_sink_and_reraises(sigint_raises):
    out = Collect()
    g = Graph(Source("src", paced(None, every_s=0.001)), [Stage("mid", lambda b: b)], out.sink())
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        g.run(interval_s=0.05)
    assert time.monotonic() - t0 < 2.0
    assert g.stats().state == "interrupted"
    assert len(out.closed_with) == 1 and out.items
    assert _stage_threads_alive() == []


def test_the_thread_that_runs_the_graph_never_waits_inside_event_wait(monkeypatch):
    """A stop signal's handler raises in the thread running the graph. Raised inside
    `Event.wait`, between its condition lock's release and re-acquire, it left that lock released
    and the stop surfaced as "RuntimeError: release unlocked lock" (seen once in a CI-like run).
    So that thread waits by sleeping, never in `Event.wait`."""
    runner = threading.get_ident()
    calls: list[str] = []
    original = threading.Event.wait

    def wait(self, timeout=None):
        if threading.get_ident() == runner and timeout is not None:  # (Thread.start's own wait has none)
            calls.append("Event.wait")
        return original(self, timeout)

    monkeypatch.setattr(threading.Event, "wait", wait)
    out = Collect()
    g = Graph(Source("src", paced(40, every_s=0.002)), [Stage("mid", lambda b: b)], out.sink())
    g.run(interval_s=0.01)
    assert len(out.items) == 40 and calls == []
    g2 = Graph(Source("src", paced(None, every_s=0.002)), [], Collect().sink())
    g2.start()
    assert not g2.wait(0.05)  # still running: the timeout is kept
    g2.interrupt()
    assert g2.wait(5) and calls == []


def test_metrics_report_rate_busy_fraction_queue_depth_latency_and_gpu_memory():
    def slow(batch):
        time.sleep(0.01 * len(batch))
        return batch

    g = Graph(Source("src", paced(40)), [Stage("slow", slow, queue_size=4)], Collect().sink(),
              gpu_memory=lambda: (123.0, 456.0))
    seen = []
    stats = g.run(progress=seen.append, interval_s=0.05)
    assert len(seen) >= 3 and seen[-1].state == "done"
    slow_s = stats.stage("slow")
    assert slow_s.items == 40 and slow_s.busy > 0.7
    assert 30 < slow_s.items_per_s < 110
    assert slow_s.queue_max == 4  # the fast source keeps the slow stage's queue full
    assert slow_s.latency_p50_s is not None and slow_s.latency_p50_s >= 0.01
    assert stats.stage("src").busy < 0.5
    assert stats.gpu_memory_mb == 123.0 and stats.gpu_peak_mb == 456.0
    report = json.loads(json.dumps(stats.to_dict()))
    assert [s["name"] for s in report["stages"]] == ["src", "slow", "sink"]
    assert {"items_per_s", "busy", "queue_depth", "latency_p50_s", "latency_p95_s"} <= set(report["stages"][1])
