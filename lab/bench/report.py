"""The run report's speed: ``tcplab report`` on a 25 MB trace (path-failure, 16 MiB over two paths)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.bench.base import Benchmark

TARGET_S = 5.0
MIN_TRACE_BYTES = 25_000_000


def bench_report_25mb() -> dict[str, Any]:
    """Run path-failure in the simulator (no captures), then time writing its report, import of the
    plotting library included when it was not loaded yet (what ``tcplab report`` pays)."""
    from lab.runs import run_headless
    from lab.scenario import get_scenario

    with tempfile.TemporaryDirectory(prefix="tcplab-bench-report-") as tmp:
        run_dir = Path(tmp) / "path-failure"
        result = run_headless("sim", get_scenario("path-failure"), seed=1, out_dir=run_dir, pcaps=False)
        trace_bytes = (run_dir / "trace.jsonl").stat().st_size
        cold = "lab.report" not in sys.modules
        wall0, cpu0 = time.perf_counter(), time.process_time()
        from lab.report import write_report

        out = write_report(run_dir, Path(tmp) / "report.html")
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        page_bytes = out.stat().st_size
    return {
        "bench": "report-25mb",
        "metric": "wall time to write the report",
        "value": round(wall, 3),
        "unit": "s",
        "target": f"< {TARGET_S:g} s on a {MIN_TRACE_BYTES // 1_000_000} MB trace",
        "passed": wall < TARGET_S and trace_bytes >= MIN_TRACE_BYTES and result.ok,
        "cpu_s": round(cpu, 3),
        "trace_mb": round(trace_bytes / 1e6, 2),
        "report_kib": page_bytes // 1024,
        "imports_counted": cold,
    }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "report-25mb",
            "tcplab report on path-failure's 25 MB trace (16 MiB over two paths, a path down and up)",
            f"< {TARGET_S:g} s",
            bench_report_25mb,
        ),
    )
}
