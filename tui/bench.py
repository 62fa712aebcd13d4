"""TUI benchmarks (entry point tcplab.benchmarks, name tui).

``tui-ingest``: how many trace records per second the app absorbs while
staying responsive. A real trace (the two-paths scenario: TCP segments,
metrics, link samples) is offered to a headless app at rising rates in
50 ms batches, as a live run delivers them; meanwhile keys switch views and
each is timed from the key press to the screen update that shows it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

from lab.bench import Benchmark
from lab.runs import LabRun, RunStatus
from lab.scenario.backend import get_backend
from lab.trace import TraceRecord

TARGET_RECORDS_PER_S = 5000
TARGET_LATENCY_MS = 100.0
RATES = (5000, 10000, 20000, 40000)
SECONDS_PER_RATE = 6.0  # about 40 key presses per rate, so the p95 is not simply the worst one
BATCH_S = 0.05


class OfferedRecords(LabRun):
    """A LabRun that offers recorded records at ``rate`` per second, in ``BATCH_S`` batches."""

    backend = "bench"
    name = "tui-ingest"

    def __init__(self, records: list[TraceRecord], topology: dict[str, Any], rate: int, seconds: float) -> None:
        self._records = records
        self._topology = topology
        self.rate = rate
        self.seconds = seconds
        self.offered = 0
        self._now = 0.0
        self._done = False

    def topology(self) -> dict[str, Any]:
        return self._topology

    def status(self) -> RunStatus:
        return RunStatus(now=self._now, speed=None, finished=self._done, text=f"{self.offered} records offered")

    async def trace_batches(self, interval: float = BATCH_S) -> AsyncIterator[list[TraceRecord]]:
        per_batch = max(1, int(self.rate * BATCH_S))
        start = time.perf_counter()
        pos = 0
        n = len(self._records)
        batches = int(self.seconds / BATCH_S)
        for i in range(batches):
            batch = [self._records[(pos + k) % n] for k in range(per_batch)]
            pos += per_batch
            self.offered += per_batch
            self._now = batch[-1].t
            yield batch
            # keep to the wall clock: the next batch is due at (i + 1) * BATCH_S
            delay = start + (i + 1) * BATCH_S - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))
        self._done = True


def _trace() -> tuple[list[TraceRecord], dict[str, Any]]:
    from topologies.scenarios import SCENARIOS

    run = get_backend("sim").live_run(SCENARIOS["two-paths"], seed=1, speed=None, pause_at_moments=False)
    records = run.run_to_end()
    return records, run.topology()


async def _measure(records: list[TraceRecord], topology: dict[str, Any], rate: int) -> dict[str, Any]:
    from textual import events
    from textual.widgets import TabbedContent

    from tui.app import LabApp

    lab_run = OfferedRecords(records, topology, rate, SECONDS_PER_RATE)
    app = LabApp(lab_run)
    latencies: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        tabs = app.query_one(TabbedContent)
        await pilot.pause(0.1)
        start = time.perf_counter()
        cpu_start = time.process_time()
        # the Graphs view (pictures redrawn as records arrive) and Events (with the highlights) among them
        keys = [("5", "packets"), ("7", "graphs"), ("1", "topology"), ("2", "subflows"), ("6", "events")]
        i = 0
        while not app.finished and time.perf_counter() - start < SECONDS_PER_RATE * 3:
            key, tab = keys[i % len(keys)]
            i += 1
            loop = asyncio.get_running_loop()
            shown: asyncio.Future[float] = loop.create_future()
            t0 = time.perf_counter()
            key_event = events.Key(key, key)  # as the terminal driver delivers a key press
            key_event.set_sender(app)
            app._driver.send_message(key_event)
            while tabs.active != tab:
                await asyncio.sleep(0.001)
            app.call_after_refresh(lambda f=shown: f.done() or f.set_result(time.perf_counter()))
            latencies.append((await shown) - t0)
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        await pilot.pause()
        applied = app.records_applied
        # let the logs' width workers (threads) finish before the app goes: one finishing after
        # the teardown has no app to report to and fails the whole measurement
        await app.workers.wait_for_complete()
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    return {
        "offered_per_s": rate,
        "absorbed_per_s": round(applied / elapsed),
        "kept_up": applied >= 0.95 * lab_run.offered,
        "key_to_screen_ms_p95": round(p95 * 1000, 1),
        "key_to_screen_ms_max": round(latencies[-1] * 1000, 1),
        "key_to_screen_ms_median": round(statistics.median(latencies) * 1000, 1),
        "presses": len(latencies),
        "app_cpu_fraction": round(cpu / elapsed, 3),
        "machine_load_1min": round(os.getloadavg()[0], 2),
    }


def bench_ingest() -> dict[str, Any]:
    records, topology = _trace()
    rows = []
    for rate in RATES:
        row = asyncio.run(_measure(records, topology, rate))
        row["responsive"] = row["kept_up"] and row["key_to_screen_ms_p95"] <= TARGET_LATENCY_MS
        rows.append(row)
        if not row["kept_up"]:
            break  # past what it can absorb
    best = 0  # the highest rate up to which every rate tried was responsive
    for row in rows:
        if not row["responsive"]:
            break
        best = row["offered_per_s"]
    return {
        "bench": "tui-ingest",
        "metric": "trace records per second absorbed with key-to-screen p95 <= 100 ms",
        "value": best,
        "unit": "records/s",
        "target": f">= {TARGET_RECORDS_PER_S}",
        "passed": best >= TARGET_RECORDS_PER_S,
        "ratio_to_target": round(best / TARGET_RECORDS_PER_S, 2),
        "rates": rows,
        "batch_s": BATCH_S,
        "terminal": "120x40 headless",
        "trace": f"two-paths scenario, {len(records)} records, replayed cyclically",
    }


BENCHMARKS: dict[str, Benchmark] = {
    "tui-ingest": Benchmark(
        "tui-ingest",
        "trace records/s the TUI absorbs while a key press reaches the screen within 100 ms (p95)",
        ">= 5000",
        bench_ingest,
    ),
}
