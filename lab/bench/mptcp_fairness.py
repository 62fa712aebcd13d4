"""``sim-mptcp-shared-bottleneck``: coupled congestion control at a shared bottleneck (RFC 6356 §2).

One MPTCP connection (two subflows) beside one TCP flow through one
bottleneck, over the grid of bottleneck rates 5/10/20/50 Mbit/s, queues of
25/100/400 packets and NewReno or CUBIC competitors: LIA and OLIA must take
between 0.9 and 1.05 of the TCP flow's throughput; uncoupled subflows,
against NewReno, about two shares (1.6 to 2.4 here). Each cell's ratio is
taken over SEEDS runs (the bytes summed): drop-tail queues make one run's
figure depend on the flows' phase. The runs are independent simulations
spread over one process per CPU; each lets the flows settle for WARMUP_S and
measures the next MEASURE_S of simulated time. The 50 Mbit/s runs dominate:
on an idle two-core machine one seed of the whole grid (60 runs) takes about
10 minutes of CPU time per core.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from lab.scenario.fairness import measure_fairness

RATES_MBPS = (5.0, 10.0, 20.0, 50.0)
QUEUES_PACKETS = (25, 100, 400)
COMPETITORS = ("newreno", "cubic")
COUPLED = ("lia", "olia")
WARMUP_S = 5.0
MEASURE_S = 25.0
SEEDS = (1, 2)
COUPLED_RANGE = (0.9, 1.05)
UNCOUPLED_RANGE = (1.6, 2.4)


def grid() -> list[dict[str, Any]]:
    """Every cell of the benchmark, most expensive first (the pool then finishes evenly)."""
    runs = [
        {"bw_mbps": bw, "queue_packets": q, "competitor": cc, "congestion": coupled}
        for bw in RATES_MBPS
        for q in QUEUES_PACKETS
        for cc in COMPETITORS
        for coupled in COUPLED
    ]
    runs += [
        {"bw_mbps": bw, "queue_packets": q, "competitor": "newreno", "congestion": "uncoupled"}
        for bw in RATES_MBPS
        for q in QUEUES_PACKETS
    ]
    return sorted(runs, key=lambda r: -r["bw_mbps"])


def _one(kw: dict[str, Any]) -> dict[str, Any]:
    return measure_fairness(**kw, warmup_s=WARMUP_S, measure_s=MEASURE_S)


def run_grid(
    cells: list[dict[str, Any]], *, seeds: tuple[int, ...] = SEEDS, workers: int | None = None
) -> list[dict[str, Any]]:
    """Each cell run once per seed, in parallel; one result per cell, its ratio over the seeds together."""
    runs = [{**cell, "seed": seed} for cell in cells for seed in seeds]
    workers = workers or max(1, os.cpu_count() or 1)
    if workers == 1:
        done = [_one(kw) for kw in runs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(_one, runs))
    out = []
    for i, cell in enumerate(cells):
        mine = done[i * len(seeds) : (i + 1) * len(seeds)]
        mptcp = sum(r["mptcp_mbps"] for r in mine)
        tcp = sum(r["tcp_mbps"] for r in mine)
        out.append(
            {
                **cell,
                "ratio": round(mptcp / tcp, 3) if tcp else float("inf"),
                "per_seed": [r["ratio"] for r in mine],
                "mptcp_mbps": round(mptcp / len(mine), 3),
                "tcp_mbps": round(tcp / len(mine), 3),
                "wall_s": round(sum(r["wall_s"] for r in mine), 1),
            }
        )
    return out


def bench_shared_bottleneck() -> dict[str, Any]:
    start = time.perf_counter()
    results = run_grid(grid())
    coupled = [r for r in results if r["congestion"] in COUPLED]
    uncoupled = [r for r in results if r["congestion"] == "uncoupled"]
    lo, hi = COUPLED_RANGE

    def miss(r: dict[str, Any]) -> float:  # how far outside the range (0 inside)
        return max(lo - r["ratio"], r["ratio"] - hi, 0.0)

    worst = max(coupled, key=lambda r: (miss(r), abs(r["ratio"] - 1.0)))
    u_lo, u_hi = UNCOUPLED_RANGE
    uncoupled_ok = all(u_lo <= r["ratio"] <= u_hi for r in uncoupled)
    return {
        "bench": "sim-mptcp-shared-bottleneck",
        "metric": "worst MPTCP/TCP throughput ratio of LIA and OLIA over the grid",
        "value": worst["ratio"],
        "unit": "ratio",
        "target": f"LIA and OLIA in [{lo}, {hi}]; uncoupled vs NewReno in [{u_lo}, {u_hi}]",
        "passed": all(miss(r) == 0 for r in coupled) and uncoupled_ok,
        "worst": worst,
        "coupled_min": min(r["ratio"] for r in coupled),
        "coupled_max": max(r["ratio"] for r in coupled),
        "uncoupled_min": min(r["ratio"] for r in uncoupled),
        "uncoupled_max": max(r["ratio"] for r in uncoupled),
        "warmup_s": WARMUP_S,
        "measure_s": MEASURE_S,
        "seeds": list(SEEDS),
        "cells": len(results),
        "wall_s": round(time.perf_counter() - start, 1),
        "grid": results,
    }
