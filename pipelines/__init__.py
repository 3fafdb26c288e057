"""NVIDIA DALI pipeline definitions (training data, GPU video reading)."""
