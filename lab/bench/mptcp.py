"""MPTCP benchmarks (entry point tcplab.benchmarks, name mptcp).

``sim-mptcp-aggregate``: two 20 Mbit/s paths (10 ms and 40 ms one-way), one
MPTCP transfer; goodput against the sum of the link rates.

``sim-mptcp-hetero``: 20 Mbit/s at 10 ms plus 20 Mbit/s at 200 ms one-way,
a modest (1 MiB) receive buffer at both ends; MPTCP against plain TCP over
the better path alone, in the same topology and the same run.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from lab.bench import Benchmark
from lab.bench.mptcp_fairness import bench_shared_bottleneck
from lab.bench.mptcp_flood import bench_syn_flood
from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import NULL_TRACER

MIB = 1024 * 1024
PATH_MBPS = 20.0


def _run(scenario: Scenario, seed: int = 1) -> dict[str, Any]:
    run = ScenarioRun(scenario, seed=seed, tracer=NULL_TRACER)
    start = time.perf_counter()
    run.net.run(until=scenario.time_limit_s, stop=run.done)
    wall = time.perf_counter() - start
    result = run.results[0]
    out: dict[str, Any] = {
        "bytes": result.bytes_received,
        "sha256_match": result.ok,
        "goodput_mbps": round(result.goodput_mbps or 0.0, 3),
        "sim_s": round(result.completed_at or run.net.now, 3),
        "wall_s": round(wall, 3),
    }
    mps = run.net.host(scenario.transfers[0].src).groups()
    if mps:
        mp = mps[0]
        out["subflows"] = {str(sf.addr): sf.bytes_scheduled for sf in mp.subflows}
        out["bytes_reinjected"] = mp.bytes_reinjected
    return out


def _two_paths(delay_ms: tuple[float, float], transfer: Transfer, *, queue_packets: int = 200) -> Scenario:
    return Scenario(
        name="bench-two-paths",
        description="benchmark",
        topology="two-paths",
        topology_params={"delay_ms": delay_ms, "bw_mbps": (PATH_MBPS, PATH_MBPS), "queue_packets": queue_packets},
        transfers=(transfer,),
        time_limit_s=3600.0,
    )


def bench_aggregate() -> dict[str, Any]:
    cfg = {"path_manager": "paired"}
    r = _run(_two_paths((10.0, 40.0), MptcpTransfer(size_bytes=64 * MIB, client=cfg, server=cfg)))
    value = r["goodput_mbps"] / (2 * PATH_MBPS)
    return {
        "bench": "sim-mptcp-aggregate",
        "metric": "goodput / sum of link rates",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 0.90 and byte-exact",
        "passed": value >= 0.90 and r["sha256_match"],
        "links_mbps": [PATH_MBPS, PATH_MBPS],
        "one_way_delay_ms": [10.0, 40.0],
        **r,
    }


def bench_hetero() -> dict[str, Any]:
    buffer = 1 * MIB
    cfg = {"path_manager": "paired", "receive_buffer_bytes": buffer}
    tcp = {"receive_buffer_bytes": buffer}
    delays = (10.0, 200.0)
    mptcp = _run(replace(_two_paths(delays, MptcpTransfer(size_bytes=32 * MIB, client=cfg, server=cfg)), tcp=tcp))
    single = _run(replace(_two_paths(delays, Transfer(size_bytes=32 * MIB)), tcp=tcp))  # plain TCP: path A only
    value = mptcp["goodput_mbps"] / single["goodput_mbps"] if single["goodput_mbps"] else 0.0
    return {
        "bench": "sim-mptcp-hetero",
        "metric": "MPTCP goodput / plain TCP goodput over the better path alone",
        "value": round(value, 4),
        "unit": "ratio",
        "target": ">= 1.0 and byte-exact",
        "passed": value >= 1.0 and mptcp["sha256_match"] and single["sha256_match"],
        "receive_buffer_bytes": buffer,
        "one_way_delay_ms": list(delays),
        "mptcp": mptcp,
        "single_path_tcp": single,
    }


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "sim-mptcp-aggregate",
            "two 20 Mbit/s paths (10 ms, 40 ms one-way): MPTCP goodput / summed link rates",
            ">= 0.90",
            bench_aggregate,
        ),
        Benchmark(
            "sim-mptcp-hetero",
            "20 Mbit/s at 10 ms + 20 Mbit/s at 200 ms, 1 MiB buffers: MPTCP / best single path",
            ">= 1.0",
            bench_hetero,
        ),
        Benchmark(
            "sim-mptcp-shared-bottleneck",
            "MPTCP (LIA, OLIA, uncoupled) beside one TCP flow at a shared bottleneck, 5-50 Mbit/s x 25-400 packets",
            "0.9-1.05",
            bench_shared_bottleneck,
        ),
        Benchmark(
            "sim-mptcp-syn-flood",
            "20,000 MP_CAPABLE SYNs against an MPTCP listener beside a 1 MiB transfer: peak heap growth",
            "< 32 MB",
            bench_syn_flood,
        ),
    )
}
