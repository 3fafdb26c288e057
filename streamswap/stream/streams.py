"""Stages that overlap on a GPU: every thread of a graph (source, stages, sink) runs its work on a
CUDA stream of its own, and an item crossing from one stage to the next is handed over with an
event, never with a device-wide or null-stream synchronize.

- The producer records an event on its stream after the batch's work was enqueued (`handed_over`)
  and puts it in the item's envelope.
- The consumer's stream waits for that event on the device (`received`: `wait_event`, the host
  does not block) and each of the item's CUDA tensors is marked as used on the consumer's stream
  (`record_stream`), so the caching allocator does not hand its memory to the producer's stream
  while the consumer's kernels may still read it.

Off CUDA, `NoStreams` does nothing. The graph takes either (`Graph(streams=...)`);
`streams_for(device)` picks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

import torch


class StageStreams(Protocol):
    """How a graph's threads use device streams (see the module docstring)."""

    def enter(self) -> contextlib.AbstractContextManager[Any]:
        """Run the calling thread's work, until the block ends, on a stream of its own."""
        ...

    def handed_over(self) -> Any:
        """After a batch's work was enqueued: a token (an event) the consumer waits for."""
        ...

    def received(self, item: Any, token: Any) -> None:
        """Before the consumer uses `item`: its stream waits for `token`; its tensors are marked."""
        ...


class NoStreams:
    """The CPU (or a single stream): nothing to order."""

    def enter(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def handed_over(self) -> Any:
        return None

    def received(self, item: Any, token: Any) -> None:
        return None


class CudaStreams:
    """A CUDA stream per thread of the graph on `device`, events between them."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def enter(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(torch.cuda.Stream(self.device))

    def handed_over(self) -> Any:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def received(self, item: Any, token: Any) -> None:
        stream = torch.cuda.current_stream(self.device)
        if token is not None:
            stream.wait_event(token)
        for t in device_tensors(item):
            t.record_stream(stream)


def streams_for(device: torch.device) -> StageStreams:
    """CudaStreams on a CUDA device, NoStreams anywhere else."""
    return CudaStreams(device) if device.type == "cuda" else NoStreams()


def device_tensors(item: Any, depth: int = 3) -> Iterator[torch.Tensor]:
    """The non-CPU tensors in `item`: itself, or inside its dataclass fields, tuples, lists and
    dict values, `depth` levels down (a Frame's image, its faces' tensors)."""
    if isinstance(item, torch.Tensor):
        if item.device.type != "cpu":
            yield item
        return
    if depth <= 0:
        return
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        children: Any = (getattr(item, f.name) for f in dataclasses.fields(item))
    elif isinstance(item, (tuple, list)):
        children = item
    elif isinstance(item, dict):
        children = item.values()
    else:
        return
    for child in children:
        yield from device_tensors(child, depth - 1)
