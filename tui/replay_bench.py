"""Replay benchmark (entry point tcplab.benchmarks, name replay).

``replay-load``: how long a 25 MB run bundle takes to open. The path-failure
scenario (a 16 MiB MPTCP transfer with a path that fails and comes back) is run
headless to a bundle, whose trace is about 25 MB; then the TUI replays it
headless at 80x24, three times, each from a fresh ReplayRun. "Open" is from
the moment the replay is asked for until the app plays the run (its first
records drawn); the trace goes on loading in the background meanwhile, its
progress on the slider (``progress_shown``), and ``loaded_s`` is when every
record is read, the bundle verified and the key moments are on the slider.
Python's own start-up (imports) is not counted; ``load_cpu_s`` is the
processor time of the loading alone, which a busy machine does not inflate.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.bench import Benchmark

TARGET_OPEN_S = 3.0
MIN_TRACE_MB = 20.0
REPEATS = 3


def _bundle(directory: Path) -> Path:
    from lab.runs import run_headless
    from lab.scenario import get_scenario

    out = directory / "path-failure"
    run_headless("sim", get_scenario("path-failure"), seed=1, out_dir=out, pcaps=False)
    return out


async def _open(bundle: Path) -> dict[str, Any]:
    from lab.runs import ReplayRun
    from tui.app import LabApp
    from tui.widgets.status import TimeSlider

    started = time.perf_counter()
    run = ReplayRun(bundle, speed=1.0, defer=True)
    app = LabApp(run)
    first_frame = opened = None
    fractions: set[float] = set()
    async with app.run_test(size=(80, 24)) as pilot:
        slider = app.query_one(TimeSlider)
        deadline = started + 120.0
        while time.perf_counter() < deadline:
            if first_frame is None and slider.load_fraction is not None:
                first_frame = time.perf_counter() - started
            if slider.load_fraction is not None:
                fractions.add(round(slider.load_fraction, 2))
            if opened is None and app.records_applied > 0:
                opened = time.perf_counter() - started
            if opened is not None and slider.load_fraction is None and slider.marks:
                break
            await pilot.pause(0.01)
        loaded = time.perf_counter() - started
        moments = len(slider.marks)
        records = len(run.records)
        run.close()  # the playback stops; let every worker (the logs' too) end before the app does
        await app.workers.wait_for_complete()
        await pilot.pause()
    return {
        "open_s": round(opened, 3) if opened is not None else None,
        "first_frame_s": round(first_frame, 3) if first_frame is not None else None,
        "loaded_s": round(loaded, 3),
        "load_wall_s": round(run.load_seconds or 0.0, 3),
        "load_cpu_s": round(run.load_cpu_seconds or 0.0, 3),
        "records": records,
        "moments_on_slider": moments,
        "progress_shown": sorted(fractions),
    }


def bench_replay_load() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tcplab-replay-bench-") as tmp:
        bundle = _bundle(Path(tmp))
        trace_mb = (bundle / "trace.jsonl").stat().st_size / 1e6
        runs = [asyncio.run(_open(bundle)) for _ in range(REPEATS)]
    value = statistics.median(r["open_s"] if r["open_s"] is not None else float("inf") for r in runs)
    progress = all(any(0 < f < 1 for f in r["progress_shown"]) or r["first_frame_s"] is not None for r in runs)
    return {
        "bench": "replay-load",
        "metric": f"seconds from asking for the replay of a {trace_mb:.1f} MB bundle to the app playing it "
        "(the rest loading meanwhile, its progress shown) "
        f"(median of {REPEATS}, headless app at 80x24)",
        "value": round(value, 3),
        "unit": "s",
        "target": f"<= {TARGET_OPEN_S:g} s for a trace of >= {MIN_TRACE_MB:g} MB, with a loading progress shown",
        "passed": value <= TARGET_OPEN_S and trace_mb >= MIN_TRACE_MB and progress,
        "trace_mb": round(trace_mb, 2),
        "runs": runs,
        "loaded_s_median": round(statistics.median(r["loaded_s"] for r in runs), 3),
        "load_cpu_s_median": round(statistics.median(r["load_cpu_s"] for r in runs), 3),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


BENCHMARKS: dict[str, Benchmark] = {
    "replay-load": Benchmark(
        "replay-load",
        "open a 25 MB path-failure bundle in the TUI: seconds until it plays (loading progress shown meanwhile)",
        f"<= {TARGET_OPEN_S:g} s",
        bench_replay_load,
    )
}
