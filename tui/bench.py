"""TUI benchmarks (entry point tcplab.benchmarks, name tui)."""

from __future__ import annotations

from lab.bench import Benchmark

BENCHMARKS: dict[str, Benchmark] = {}
