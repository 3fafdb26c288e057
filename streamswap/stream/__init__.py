"""The staged runtime: stages, graph, metrics."""
