"""Benchmarks of this package (entry point tcplab.benchmarks, name mininet)."""

from __future__ import annotations

from lab.bench import Benchmark

BENCHMARKS: dict[str, Benchmark] = {}
