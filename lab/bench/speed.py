"""Simulator speed benchmarks (entry point tcplab.benchmarks, name speed).

``sim-mptcp-speed``: the ``sim-speed`` transfer (16 MiB at 20 Mbit/s, 20 ms one-way)
over MPTCP with two subflows, one per path of two 10 Mbit/s paths (the same
20 Mbit/s in all, so the same packet rate), untraced: virtual seconds per wall
second, with the ``sim-speed`` transfer itself measured beside it for the
per-packet cost of MPTCP over plain TCP.

``sim-scenarios-traced``: every built-in scenario the simulator runs, headless
with its trace and pcaps written to disk (``tcplab run NAME``); the lowest
virtual/wall ratio.

``sim-dumbbell``: N TCP pairs sharing one 100 Mbit/s bottleneck, for N = 1,
16 and 64: simulated seconds per wall second (a report; wall time should grow
linearly in N at most).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.bench.base import MIB, Benchmark, _bulk_scenario
from lab.errors import ConfigError
from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import NULL_TRACER

PATH_MBPS = 10.0  # two paths: the 20 Mbit/s of sim-speed's link in all
ONE_WAY_MS = 20.0


def _speed_scenario(transfer: Any) -> Scenario:
    return Scenario(
        name="bench-speed-two-paths",
        description="benchmark",
        topology="two-paths",
        topology_params={"delay_ms": (ONE_WAY_MS, ONE_WAY_MS), "bw_mbps": (PATH_MBPS, PATH_MBPS)},
        transfers=(transfer,),
        time_limit_s=3600.0,
    )


def _timed(scenario: Scenario, seed: int = 1) -> dict[str, Any]:
    """One untraced run; wall time covers the simulation only."""
    run = ScenarioRun(scenario, seed=seed, tracer=NULL_TRACER)
    start = time.perf_counter()
    run.net.run(until=scenario.time_limit_s, stop=run.done)
    wall = time.perf_counter() - start
    result = run.results[0]
    sent = sum(d.sent_packets for link in run.net.links.values() for d in link.directions)
    sim_s = result.completed_at or run.net.now
    return {
        "sim_s": sim_s,
        "wall_s": wall,
        "ratio": sim_s / wall if wall > 0 else 0.0,
        "packets": sent,
        "us_per_packet": wall / sent * 1e6 if sent else 0.0,
        "goodput_mbps": result.goodput_mbps or 0.0,
        "sha256_match": result.ok,
    }


def bench_mptcp_speed(repeats: int = 3) -> dict[str, Any]:
    """Median of ``repeats`` MPTCP runs, each beside a run of the plain TCP ``sim-speed``
    transfer (interleaved, so both see the same machine load), after a warm-up."""
    cfg = {"path_manager": "paired"}
    mptcp = _speed_scenario(MptcpTransfer(size_bytes=16 * MIB, client=cfg, server=cfg))
    plain = _bulk_scenario()
    _timed(_speed_scenario(MptcpTransfer(size_bytes=1 * MIB, client=cfg, server=cfg)))
    _timed(_bulk_scenario(size_bytes=1 * MIB))
    mp_runs, tcp_runs = [], []
    for _ in range(repeats):
        mp_runs.append(_timed(mptcp))
        tcp_runs.append(_timed(plain))
    value = statistics.median(r["ratio"] for r in mp_runs)
    mp_cost = statistics.median(r["us_per_packet"] for r in mp_runs)
    tcp_cost = statistics.median(r["us_per_packet"] for r in tcp_runs)
    exact = all(r["sha256_match"] for r in mp_runs + tcp_runs)
    return {
        "bench": "sim-mptcp-speed",
        "metric": "simulated seconds per wall-clock second (16 MiB over MPTCP, two subflows)",
        "value": round(value, 2),
        "unit": "ratio",
        "target": ">= 15",
        "passed": value >= 15 and exact,
        "per_packet_us": {"mptcp": round(mp_cost, 2), "tcp": round(tcp_cost, 2)},
        "per_packet_cost_mptcp_over_tcp": round(mp_cost / tcp_cost, 3) if tcp_cost else None,
        "tcp_ratio": round(statistics.median(r["ratio"] for r in tcp_runs), 2),
        "runs": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in mp_runs],
        "sha256_match": exact,
        "links_mbps": [PATH_MBPS, PATH_MBPS],
        "one_way_delay_ms": [ONE_WAY_MS, ONE_WAY_MS],
        "tracing": "off (NullTracer), no captures",
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def simulator_scenarios() -> dict[str, Scenario]:
    """The built-in scenarios, by name."""
    from lab.scenario import registry

    return dict(sorted(registry.scenarios().items()))


def bench_scenarios_traced(seed: int = 1) -> dict[str, Any]:
    """Each scenario once, as ``tcplab run NAME`` does (trace.jsonl and pcaps into a
    temporary directory); a scenario the simulator cannot run (a kernel stack) is listed
    as skipped with its reason."""
    from lab.sim.plugin import SimBackend

    backend = SimBackend()
    figures: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="tcplab-bench-"))
    try:
        for name, scenario in simulator_scenarios().items():
            out = tmp / name
            try:
                result = backend.run(scenario, seed=seed, out_dir=out)
            except ConfigError as exc:
                skipped[name] = str(exc)
                continue
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            # the virtual time stepped (a transfer that ends in an abort, as intended, has no completion time)
            sim_s = max(result.sim_time_s, result.network.now)
            figures[name] = {
                "sim_s": round(sim_s, 3),
                "wall_s": round(result.wall_time_s, 3),
                "ratio": round(sim_s / result.wall_time_s, 2) if result.wall_time_s > 0 else None,
                "ok": result.ok,
                "bundle_bytes": size,
            }
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = {n: f["ratio"] for n, f in figures.items() if f["ratio"] is not None}
    slowest = min(ratios, key=ratios.__getitem__) if ratios else None
    value = ratios[slowest] if slowest else 0.0
    return {
        "bench": "sim-scenarios-traced",
        "metric": "lowest simulated seconds per wall second over the built-in scenarios, trace and pcaps on disk",
        "value": value,
        "unit": "ratio",
        "target": ">= 3",
        "passed": bool(ratios) and value >= 3,
        "slowest": slowest,
        "scenarios": figures,
        "skipped": skipped,
        "seed": seed,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


BOTTLENECK_MBPS = 100.0
ACCESS_MBPS = 1000.0
DUMBBELL_SIM_S = 2.0
DUMBBELL_SIZES = (1, 16, 64)


def dumbbell_spec(pairs: int) -> Any:
    """N senders s1..sN behind router r1, N receivers d1..dN behind r2, r1-r2 the
    100 Mbit/s bottleneck (10 ms one-way, a 1 Gbit/s, 1 ms access link each)."""
    from lab.topology import TopologyBuilder

    t = TopologyBuilder("dumbbell")
    r1, r2 = t.router("r1"), t.router("r2")
    bdp_packets = int(BOTTLENECK_MBPS * 1e6 / 8 * 0.024 / 1500)
    t.link(r1, r2, delay_ms=10.0, bw_mbps=BOTTLENECK_MBPS, queue_packets=max(100, bdp_packets))
    for i in range(1, pairs + 1):
        s, d = t.host(f"s{i}"), t.host(f"d{i}")
        t.link(s, r1, delay_ms=1.0, bw_mbps=ACCESS_MBPS, queue_packets=1000)
        t.link(r2, d, delay_ms=1.0, bw_mbps=ACCESS_MBPS, queue_packets=1000)
    return t.build(diagram="s1..sN ── r1 ══ r2 ── d1..dN")


class _DumbbellRun:
    """What :meth:`Transfer.schedule` needs of a run: the spec, the network, payloads, results."""

    def __init__(self, pairs: int, *, seed: int = 1) -> None:
        from lab.sim.network import SimNetwork
        from lab.stack.apps import TransferResult, bulk_payload

        self.spec = dumbbell_spec(pairs)
        self.net = SimNetwork.build(self.spec, seed=seed, tracer=NULL_TRACER)
        self.results: list[Any] = []
        # every pair could carry the whole bottleneck for the run: none finishes early
        size = int(BOTTLENECK_MBPS * 1e6 / 8 * DUMBBELL_SIM_S * 1.2 / pairs) + MIB
        self._data = bulk_payload(size, seed)
        self._result_type = TransferResult
        for i in range(1, pairs + 1):
            Transfer(name=f"pair{i}", src=f"s{i}", dst=f"d{i}", size_bytes=size, start_s=0.001 * i).schedule(self)

    def payload(self, size_bytes: int) -> bytes:
        return self._data[:size_bytes]

    def add_result(self, name: str, data: bytes) -> Any:
        result = self._result_type(name, len(data), "")
        self.results.append(result)
        return result


def bench_dumbbell() -> dict[str, Any]:
    rows = []
    for pairs in DUMBBELL_SIZES:
        run = _DumbbellRun(pairs)
        start = time.perf_counter()
        run.net.run(until=DUMBBELL_SIM_S)
        wall = time.perf_counter() - start
        received = sum(r.bytes_received for r in run.results)
        bottleneck = run.net.link("r1-r2").directions[0]
        rows.append(
            {
                "pairs": pairs,
                "sim_s": DUMBBELL_SIM_S,
                "wall_s": round(wall, 3),
                "ratio": round(DUMBBELL_SIM_S / wall, 2),
                "goodput_mbps": round(received * 8 / DUMBBELL_SIM_S / 1e6, 2),
                "bottleneck_packets": bottleneck.sent_packets,
                "bottleneck_drops": bottleneck.dropped,
                "wall_us_per_bottleneck_packet": round(wall / max(1, bottleneck.sent_packets) * 1e6, 2),
            }
        )
    first, last = rows[0], rows[-1]
    growth = last["wall_s"] / first["wall_s"] if first["wall_s"] else None
    return {
        "bench": "sim-dumbbell",
        "metric": "simulated seconds per wall second, N TCP pairs over one 100 Mbit/s bottleneck",
        "value": {str(r["pairs"]): r["ratio"] for r in rows},
        "unit": "ratio",
        "target": "report (wall time at most linear in N)",
        "passed": growth is not None and growth <= last["pairs"] / first["pairs"],
        "wall_growth_n64_over_n1": round(growth, 2) if growth else None,
        "rows": rows,
        "bottleneck_mbps": BOTTLENECK_MBPS,
        "access_mbps": ACCESS_MBPS,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "sim-mptcp-speed",
            "virtual seconds per wall second for the sim-speed transfer over MPTCP with two subflows",
            ">= 15",
            bench_mptcp_speed,
        ),
        Benchmark(
            "sim-scenarios-traced",
            "lowest virtual/wall ratio over every built-in scenario, trace and pcaps to disk",
            ">= 3",
            bench_scenarios_traced,
        ),
        Benchmark(
            "sim-dumbbell",
            "N = 1, 16, 64 TCP pairs over one 100 Mbit/s bottleneck: virtual seconds per wall second",
            "report",
            bench_dumbbell,
        ),
    )
}
