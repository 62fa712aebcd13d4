"""``sim-mptcp-shared-bottleneck``: coupled congestion control at a shared bottleneck (RFC 6356 §2).

One MPTCP connection (two subflows) beside one TCP flow through one
bottleneck, over the grid of bottleneck rates 5/10/20/50 Mbit/s, queues of
25/100/400 packets and NewReno or CUBIC competitors: LIA and OLIA must take
between 0.9 and 1.05 of the TCP flow's throughput; uncoupled subflows,
against NewReno, about two shares (1.6 to 2.4 here).

Each cell also runs the reference: h1's connection on one subflow with the
competitor's own controller, i.e. one flow against one flow of its kind. Its
ratio would be 1 with no noise; how far it lands from 1 is the noise a cell's
figure carries (a drop-tail queue shared by two flows: which flow an overflow
hits decides a run, and one run is one sample of that).

Each cell's ratio is taken over SEEDS runs (the bytes summed). A run lets the
flows settle for one sawtooth cycle and measures four (at least 60 s; see
:func:`durations`): with a 400-packet queue at 5 Mbit/s a NewReno cycle lasts
about 100 s. The runs are independent simulations spread over one process
per CPU; on a two-core machine the two seeds of the whole grid (168 runs)
took 27 minutes. A run holds both payloads (1.7 GB at 50 Mbit/s).
"""

from __future__ import annotations

import gc
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from lab.scenario.fairness import ONE_WAY_MS, ONE_SUBFLOW, measure_fairness

RATES_MBPS = (5.0, 10.0, 20.0, 50.0)
QUEUES_PACKETS = (25, 100, 400)
COMPETITORS = ("newreno", "cubic")
COUPLED = ("lia", "olia")
MIN_WARMUP_S = 10.0
MIN_MEASURE_S = 60.0
CYCLES_MEASURED = 4
SEEDS = (1, 2)
COUPLED_RANGE = (0.9, 1.05)
UNCOUPLED_RANGE = (1.6, 2.4)


def durations(bw_mbps: float, queue_packets: int) -> tuple[float, float]:
    """(settling, measured) simulated seconds for a cell: one NewReno sawtooth cycle, then
    CYCLES_MEASURED of them. Two flows share the pipe (the bandwidth-delay product plus the queue),
    each halves at most that share's half and regains it one segment per round trip of a full queue."""
    packet_s = 1500 * 8 / (bw_mbps * 1e6)
    base_rtt = 2 * ONE_WAY_MS / 1000
    pipe = base_rtt / packet_s + queue_packets
    cycle = pipe / 4 * (base_rtt + queue_packets * packet_s)
    return max(MIN_WARMUP_S, cycle), max(MIN_MEASURE_S, CYCLES_MEASURED * cycle)


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
    runs += [
        {"bw_mbps": bw, "queue_packets": q, "competitor": cc, "congestion": ONE_SUBFLOW}
        for bw in RATES_MBPS
        for q in QUEUES_PACKETS
        for cc in COMPETITORS
    ]
    return sorted(runs, key=lambda r: -r["bw_mbps"] * sum(durations(r["bw_mbps"], r["queue_packets"])))


def _one(kw: dict[str, Any]) -> dict[str, Any]:
    warmup, measure = durations(kw["bw_mbps"], kw["queue_packets"])
    result = measure_fairness(**kw, warmup_s=warmup, measure_s=measure)
    # a finished run (network, hosts, both payloads: up to 1.7 GB at 50 Mbit/s) lives on in reference
    # cycles until a full collection, which allocation counts alone rarely trigger: a worker running
    # run after run grew by that much each time (past 10 GB within minutes)
    gc.collect()
    return result


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
    reference = {(r["bw_mbps"], r["queue_packets"], r["competitor"]): r["ratio"] for r in out if r["congestion"] == ONE_SUBFLOW}
    for r in out:
        r["one_subflow_ratio"] = reference.get((r["bw_mbps"], r["queue_packets"], r["competitor"]))
    return out


def bench_shared_bottleneck() -> dict[str, Any]:
    start = time.perf_counter()
    results = run_grid(grid())
    coupled = [r for r in results if r["congestion"] in COUPLED]
    uncoupled = [r for r in results if r["congestion"] == "uncoupled"]
    reference = [r for r in results if r["congestion"] == ONE_SUBFLOW]
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
        # one flow against one flow of its kind: the spread of these is the figures' noise
        "one_subflow_min": min(r["ratio"] for r in reference),
        "one_subflow_max": max(r["ratio"] for r in reference),
        "durations_s": {f"{bw:g}/{q}": durations(bw, q) for bw in RATES_MBPS for q in QUEUES_PACKETS},
        "seeds": list(SEEDS),
        "cells": len(results),
        "wall_s": round(time.perf_counter() - start, 1),
        "grid": results,
    }
