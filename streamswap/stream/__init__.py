"""The staged runtime: stages (threads with bounded input queues and batch policies), the graph
that wires them with ordering, back-pressure and shutdown, and their metrics."""

from streamswap.stream.graph import FlowMode, Graph, Interrupted
from streamswap.stream.metrics import GraphStats, StageStats
from streamswap.stream.stage import BatchPolicy, Fault, InjectedFault, Sink, Source, Stage, StopPipeline

__all__ = [
    "BatchPolicy",
    "Fault",
    "FlowMode",
    "Graph",
    "GraphStats",
    "InjectedFault",
    "Interrupted",
    "Sink",
    "Source",
    "Stage",
    "StageStats",
    "StopPipeline",
]
