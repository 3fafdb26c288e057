"""Benchmarks: whole jobs (`jobs`), each stage alone (`stages`), throughput and memory against
input length (`scaling`), the seed implementation's way of running the same models (`jobs`'
baseline), and their plots (`plot`). Every report records the device, versions and settings
(`report.environment`)."""
