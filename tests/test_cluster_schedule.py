"""The cluster job's scheduling policy (`streamswap.cluster.schedule`), without Ray: futures are
plain objects, and each test plays the part of the driver."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamswap.cluster.schedule import ChunkItem, ChunkScheduler, Outcome, ProbeAnswer


class Future:
    """A stand-in for a Ray object ref: hashable by identity, named for the failure messages."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Future({self.name})"


def _items(*spec: tuple[int, str]) -> list[ChunkItem[str]]:
    return [ChunkItem(job, chunk) for job, chunk in spec]


def _start_all(sched: ChunkScheduler[str]) -> dict[str, tuple[Future, int]]:
    """Start every assignment there is now: {chunk: (its future, its worker)}."""
    out = {}
    for a in sched.assignments():
        f = Future(a.item.chunk)
        sched.started(f, a.worker, a.item)
        out[a.item.chunk] = (f, a.worker)
    return out


def test_idle_workers_get_the_queued_chunks_in_order_and_the_next_when_they_finish():
    sched = ChunkScheduler(_items((0, "a0"), (0, "a1"), (1, "b0"), (1, "b1")), workers=2, max_retries=3)
    assert [(a.worker, a.item.chunk) for a in sched.assignments()] == [(0, "a0"), (1, "a1")]
    assert sched.assignments() == sched.assignments()  # a question: nothing changes until started
    running = _start_all(sched)
    assert sched.busy == 2 and sched.assignments() == [] and sched.pending() == [running["a0"][0], running["a1"][0]]

    done = sched.succeeded(running["a1"][0])
    assert (done.worker, done.item.chunk, done.wanted) == (1, "a1", True)
    assert [(a.worker, a.item.chunk) for a in sched.assignments()] == [(1, "b0")]
    assert not sched.done


def test_a_failed_chunk_goes_back_to_the_front_and_avoids_the_worker_it_failed_on():
    sched = ChunkScheduler(_items((0, "c0"), (0, "c1"), (0, "c2")), workers=2, max_retries=3)
    running = _start_all(sched)  # c0 on worker 0, c1 on worker 1
    failure = sched.failed(running["c0"][0], "ValueError: boom", worker_lost=False)
    assert failure.outcome is Outcome.REQUEUED and (failure.worker, failure.why) == (0, "ValueError: boom")
    assert failure.item.attempts == 1 and failure.item.failed_on == {0}
    assert [i.chunk for i in sched.queued] == ["c0", "c2"]  # at the front
    # worker 0 is idle again but skips c0, which failed on it, for c2
    assert [(a.worker, a.item.chunk) for a in sched.assignments()] == [(0, "c2")]
    running |= _start_all(sched)
    sched.succeeded(running["c1"][0])  # worker 1 free: it takes c0
    assert [(a.worker, a.item.chunk) for a in sched.assignments()] == [(1, "c0")]


def test_a_chunk_every_worker_has_failed_runs_on_any_of_them():
    sched = ChunkScheduler(_items((0, "c0")), workers=2, max_retries=3)
    (f, w), = _start_all(sched).values()
    sched.failed(f, "x", worker_lost=False)
    (f, w2), = _start_all(sched).values()
    assert w2 != w
    sched.failed(f, "x", worker_lost=False)
    assert [a.worker for a in sched.assignments()] == [0]  # failed on both: the first idle one takes it


def test_after_max_retries_the_file_gives_up_and_its_other_queued_chunks_are_dropped():
    sched = ChunkScheduler(_items((0, "a0"), (1, "b0"), (0, "a1"), (0, "a2"), (1, "b1")), workers=2, max_retries=1)
    running = _start_all(sched)  # a0 on worker 0, b0 on worker 1
    assert sched.failed(running["a0"][0], "x", worker_lost=False).outcome is Outcome.REQUEUED
    running |= _start_all(sched)  # worker 0 avoids a0: it takes a1
    assert running["a1"][1] == 0
    sched.succeeded(running["b0"][0])
    running |= _start_all(sched)  # worker 1 takes a0 again
    assert running["a0"][1] == 1

    failure = sched.failed(running["a0"][0], "y", worker_lost=False)
    assert failure.outcome is Outcome.GAVE_UP and failure.item.attempts == 2
    assert [i.chunk for i in failure.dropped] == ["a2"]
    assert [i.chunk for i in sched.queued] == ["b1"]
    # what of the file still runs ends ignored: its output is not wanted, its failure not retried
    assert sched.succeeded(running["a1"][0]).wanted is False
    running |= _start_all(sched)
    assert sched.failed(running["b1"][0], "z", worker_lost=False).outcome is Outcome.REQUEUED  # file 1 goes on


def test_a_failure_of_a_file_that_already_gave_up_is_ignored():
    sched = ChunkScheduler(_items((0, "a0"), (0, "a1")), workers=2, max_retries=0)
    running = _start_all(sched)
    assert sched.failed(running["a0"][0], "x", worker_lost=False).outcome is Outcome.GAVE_UP
    late = sched.failed(running["a1"][0], "y", worker_lost=True)
    assert late.outcome is Outcome.IGNORED and late.item.attempts == 0 and sched.done


def test_a_lost_worker_is_out_of_the_pool_until_a_probe_brings_it_back():
    sched = ChunkScheduler(_items((0, "c0"), (0, "c1"), (0, "c2")), workers=2, max_retries=3)
    running = _start_all(sched)
    failure = sched.failed(running["c1"][0], "worker 1 lost", worker_lost=True)
    assert failure.outcome is Outcome.REQUEUED and sched.alive == 2
    assert sched.assignments() == []  # worker 1 is lost, not idle
    probe = Future("probe-1")
    sched.probe(probe, 1)
    assert sched.is_probe(probe) and not sched.is_probe(running["c0"][0])
    assert sched.pending() == [running["c0"][0], probe]  # chunks first, then probes

    assert sched.probe_answered(probe, ProbeAnswer.RESTARTING).worker == 1
    assert sched.pending() == [running["c0"][0]] and sched.assignments() == []  # the caller probes again
    again = Future("probe-1b")
    sched.probe(again, 1)
    back = sched.probe_answered(again, ProbeAnswer.BACK)
    assert (back.worker, back.dropped) == (1, ())
    assert [(a.worker, a.item.chunk) for a in sched.assignments()] == [(1, "c2")]  # c1 failed on it: c2 first


def test_a_worker_out_of_restarts_leaves_the_pool_and_the_others_take_its_chunk():
    sched = ChunkScheduler(_items((0, "c0"), (0, "c1")), workers=2, max_retries=3)
    running = _start_all(sched)
    sched.failed(running["c1"][0], "worker 1 lost", worker_lost=True)
    probe = Future("probe")
    sched.probe(probe, 1)
    gone = sched.probe_answered(probe, ProbeAnswer.GONE)
    assert (gone.worker, gone.dropped, sched.alive) == (1, (), 1)
    sched.succeeded(running["c0"][0])
    # c1 failed on worker 1, now gone: it has failed on as many workers as are alive, so worker 0 takes it
    assert [(a.worker, a.item.chunk) for a in sched.assignments()] == [(0, "c1")]


def test_when_every_worker_is_lost_everything_queued_gives_up():
    sched = ChunkScheduler(_items((0, "a0"), (1, "b0"), (1, "b1")), workers=1, max_retries=3)
    running = _start_all(sched)
    sched.failed(running["a0"][0], "worker 0 lost", worker_lost=True)
    probe = Future("probe")
    sched.probe(probe, 0)
    gone = sched.probe_answered(probe, ProbeAnswer.GONE)
    assert [i.chunk for i in gone.dropped] == ["a0", "b0", "b1"] and sched.alive == 0
    assert sched.done and sched.queued == [] and sched.pending() == []


def test_done_when_the_queue_and_the_chunks_in_flight_are_empty():
    assert ChunkScheduler([], workers=2, max_retries=3).done
    with pytest.raises(ValueError, match="at least one worker"):
        ChunkScheduler(_items((0, "c0")), workers=0, max_retries=3)
    sched = ChunkScheduler(_items((0, "c0")), workers=2, max_retries=3)
    assert not sched.done
    (f, _), = _start_all(sched).values()
    assert not sched.done  # running
    sched.failed(f, "worker 0 lost", worker_lost=True)
    sched.probe(Future("probe"), 0)
    assert not sched.done  # queued again
    (f, _), = _start_all(sched).values()
    sched.succeeded(f)
    assert sched.done and sched.pending()  # a probe still out does not keep the job going


def test_the_scheduler_imports_only_the_standard_library():
    import ast

    from streamswap.cluster import schedule

    tree = ast.parse(Path(schedule.__file__).read_text())
    names = {n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(tree)
             if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert {str(n).split(".")[0] for n in names} <= set(sys.stdlib_module_names) | {"__future__"}, names
