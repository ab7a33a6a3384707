"""Kernel benchmarks (`kind: kernel` workloads): schema, providers, timing and roofs, runner and table."""
