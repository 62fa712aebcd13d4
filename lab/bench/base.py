"""Benchmarks: ``tcplab bench run NAME --json`` prints one JSON object.

Every benchmark reports at least ``bench``, ``metric``, ``value``, ``unit``,
``target`` and ``passed``, plus the figures it compared. ``value`` is the
figure the target is stated in (a ratio where the target is a ratio).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError
from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.trace import NULL_TRACER

MIB = 1024 * 1024
LINK_MBPS = 20.0
ONE_WAY_MS = 20.0


def machine_reference() -> dict[str, Any]:
    """What the machine was like when a figure was taken: its speed on a fixed pure-Python
    workload (seconds, best of three; absolute figures such as ``sim-speed`` scale with it),
    the load average and the CPU count.

    Absolute figures (virtual seconds per wall second, records per second) only compare
    between machines of the same ``python_reference_s``; ratios measured side by side
    within one run do not depend on it.
    """
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        table: dict[int, int] = {}
        for i in range(300_000):
            total += i * i % 7
            table[i & 1023] = total
        best = min(best, time.perf_counter() - start)
    return {
        "python_reference_s": round(best, 4),
        "load_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    target: str
    run: Callable[[], dict[str, Any]]
    root: bool = False  # needs root (and Mininet)


def _bulk_scenario(*, loss_pct: float = 0.0, size_bytes: int = 16 * MIB, congestion_control: str = "cubic") -> Scenario:
    return Scenario(
        name="bench-single-path",
        description="benchmark path",
        topology="single-path",
        topology_params={"delay_ms": ONE_WAY_MS, "bw_mbps": LINK_MBPS, "loss_pct": loss_pct},
        transfers=(Transfer(size_bytes=size_bytes),),
        tcp={"congestion_control": congestion_control},
        time_limit_s=3600.0,
    )


def _transfer(scenario: Scenario, seed: int = 1) -> dict[str, Any]:
    """Run one transfer without tracing or captures; wall time covers the simulation only."""
    run = ScenarioRun(scenario, seed=seed, tracer=NULL_TRACER)
    start = time.perf_counter()
    run.net.run(until=scenario.time_limit_s, stop=run.done)
    wall = time.perf_counter() - start
    result = run.results[0]
    sender = run.net.host(scenario.transfers[0].src)
    conns = sender.connections()
    min_rtt = conns[0]._rtt_min if conns else None
    return {
        "bytes": result.bytes_received,
        "sha256_match": result.ok,
        "duration_s": (result.completed_at or run.net.now) - (result.started_at or 0.0),
        "goodput_mbps": result.goodput_mbps or 0.0,
        "wall_s": wall,
        "sim_s": result.completed_at or run.net.now,
        "min_rtt_s": min_rtt,
    }


def bench_goodput() -> dict[str, Any]:
    r = _transfer(_bulk_scenario())
    value = r["goodput_mbps"] / LINK_MBPS
    return {
        "bench": "sim-tcp-goodput",
        "metric": "goodput / link rate",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 0.90 and byte-exact",
        "passed": value >= 0.90 and r["sha256_match"],
        "goodput_mbps": round(r["goodput_mbps"], 3),
        "link_mbps": LINK_MBPS,
        "one_way_delay_ms": ONE_WAY_MS,
        "bytes": r["bytes"],
        "sha256_match": r["sha256_match"],
        "duration_s": round(r["duration_s"], 4),
    }


def mathis_bound_mbps(*, mss_bytes: int, rtt_s: float, loss: float) -> float:
    """Mathis et al. (1997): BW <= (MSS / RTT) * C / sqrt(p), C = sqrt(3/2)."""
    return mss_bytes * 8 / rtt_s * math.sqrt(1.5) / math.sqrt(loss) / 1e6


LOSS_SEEDS = (1, 2, 3, 4, 5)


def bench_loss() -> dict[str, Any]:
    """Mean goodput over five seeds (one 16 MiB transfer each) against the Mathis bound.

    The bound uses the path RTT the connection itself measured (its minimum RTT:
    propagation plus serialization), the segment payload, and p = 1 %.
    """
    loss_pct = 1.0
    mss = 1448  # 1500 - 20 (IP) - 20 (TCP) - 12 (timestamps)
    figures: dict[str, list[dict[str, Any]]] = {}
    for cc in ("cubic", "newreno"):
        figures[cc] = [_transfer(_bulk_scenario(loss_pct=loss_pct, congestion_control=cc), seed=s) for s in LOSS_SEEDS]
    rtts = [r["min_rtt_s"] for runs in figures.values() for r in runs if r["min_rtt_s"]]
    rtt = min(rtts) if rtts else 2 * ONE_WAY_MS / 1000.0
    bound = mathis_bound_mbps(mss_bytes=mss, rtt_s=rtt, loss=loss_pct / 100)
    propagation_bound = mathis_bound_mbps(mss_bytes=mss, rtt_s=2 * ONE_WAY_MS / 1000.0, loss=loss_pct / 100)
    mean = {cc: statistics.mean(r["goodput_mbps"] for r in runs) for cc, runs in figures.items()}
    exact = all(r["sha256_match"] for runs in figures.values() for r in runs)
    value = mean["cubic"] / bound
    return {
        "bench": "sim-tcp-loss",
        "metric": "mean goodput / Mathis bound (1% loss each way, 5 seeds)",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 1.0 and byte-exact",
        "passed": value >= 1.0 and exact,
        "goodput_mbps": round(mean["cubic"], 3),
        "mathis_bound_mbps": round(bound, 3),
        "rtt_ms": round(rtt * 1000, 3),
        "mathis_bound_propagation_rtt_mbps": round(propagation_bound, 3),
        "mss_bytes": mss,
        "loss_pct_each_way": loss_pct,
        "congestion_control": "cubic",
        "per_seed_goodput_mbps": {cc: [round(r["goodput_mbps"], 3) for r in runs] for cc, runs in figures.items()},
        "newreno_goodput_mbps": round(mean["newreno"], 3),
        "newreno_ratio": round(mean["newreno"] / bound, 4),
        "sha256_match": exact,
        "bytes_per_transfer": figures["cubic"][0]["bytes"],
    }


def bench_speed(repeats: int = 5) -> dict[str, Any]:
    """Median of ``repeats`` runs, after one short warm-up run that is not counted
    (it pays for lazy imports and first-use caches)."""
    _transfer(_bulk_scenario(size_bytes=1 * MIB))
    runs = [_transfer(_bulk_scenario()) for _ in range(repeats)]
    ratios = [r["sim_s"] / r["wall_s"] for r in runs]
    value = statistics.median(ratios)
    return {
        "bench": "sim-speed",
        "metric": "simulated seconds per wall-clock second (16 MiB sim-tcp-goodput transfer)",
        "value": round(value, 2),
        "unit": "ratio",
        "target": ">= 20",
        "passed": value >= 20 and all(r["sha256_match"] for r in runs),
        "runs": [
            {"sim_s": round(r["sim_s"], 4), "wall_s": round(r["wall_s"], 4), "ratio": round(x, 2)}
            for r, x in zip(runs, ratios)
        ],
        "sha256_match": all(r["sha256_match"] for r in runs),
        "tracing": "off (NullTracer), no captures",
    }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "sim-tcp-goodput",
            "16 MiB over one 20 Mbit/s path, 20 ms one-way: goodput / link rate",
            ">= 0.90",
            bench_goodput,
        ),
        Benchmark("sim-tcp-loss", "the same with 1 % loss each way: goodput / Mathis bound", ">= 1.0", bench_loss),
        Benchmark(
            "sim-speed", "virtual seconds per wall second for the sim-tcp-goodput transfer", ">= 20", bench_speed
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    from lab.scenario import registry

    known = registry.benchmarks()
    if name not in known:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
