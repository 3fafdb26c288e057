"""A lagging stage (look-ahead, like file-mode smoothing): it answers its oldest inputs late,
is flushed at the end, and the graph still delivers every item once, in order."""

from __future__ import annotations

import pytest

from streamswap.errors import PipelineError
from streamswap.stream import BatchPolicy, Graph, Sink, Source, Stage


class MovingMean:
    """Centred mean over +-2 items: item t is answered once item t + 2 has arrived."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.answered = 0

    def _mean(self, t: int) -> float:
        window = self.seen[max(0, t - 2): t + 3]
        return sum(window) / len(window)

    def __call__(self, batch: list[float]) -> list[float]:
        self.seen += batch
        ready = max(0, len(self.seen) - 2) - self.answered
        out = [self._mean(self.answered + i) for i in range(ready)]
        self.answered += ready
        return out

    def flush(self) -> list[float]:
        out = [self._mean(t) for t in range(self.answered, len(self.seen))]
        self.answered = len(self.seen)
        return out


def test_lagging_stage_outputs_every_item_in_order_with_look_ahead():
    step = MovingMean()
    got: list[float] = []
    g = Graph(Source("src", (float(i * i) for i in range(50))),
              [Stage("smooth", step, BatchPolicy(4), flush=step.flush), Stage("x2", lambda b: [v * 2 for v in b])],
              Sink("sink", got.append))
    g.run()
    values = [float(i * i) for i in range(50)]
    expected = [2 * sum(values[max(0, t - 2):t + 3]) / len(values[max(0, t - 2):t + 3]) for t in range(50)]
    assert got == pytest.approx(expected)


def test_a_stage_without_flush_must_answer_every_item():
    g = Graph(Source("src", iter(range(10))), [Stage("short", lambda b: b[:-1], BatchPolicy(2))],
              Sink("sink", lambda item: None))
    with pytest.raises(PipelineError, match="short"):
        g.run()


def test_a_lagging_stage_runs_one_worker():
    with pytest.raises(ValueError, match="one worker"):
        Stage("smooth", lambda b: b, workers=2, flush=lambda: [])
