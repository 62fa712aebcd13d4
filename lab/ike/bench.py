"""Benchmarks of this package (entry point tcplab.benchmarks, name ike)."""

from __future__ import annotations

from lab.bench import Benchmark

BENCHMARKS: dict[str, Benchmark] = {}
