"""Fairness at a shared bottleneck: one MPTCP connection beside one TCP flow (RFC 6356 §2).

``shared-bottleneck``: h1's two subflows (one per access link) and h3's TCP
flow cross the same r1-r2 link. :func:`measure_fairness` runs both flows,
lets them settle for ``warmup_s`` and compares the bytes each delivers over
the next ``measure_s``: RFC 6356's goals ask a coupled controller (LIA, OLIA)
for no more than one TCP flow's share and no less than about 0.9 of it;
uncoupled subflows take about two shares.
"""

from __future__ import annotations

import time
from typing import Any

from lab.errors import ConfigError
from lab.scenario.base import Scenario, ScenarioRun, Transfer
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import NULL_TRACER, Tracer

ONE_WAY_MS = 11.0  # 22 ms base RTT
MPTCP_PORT = 5001
TCP_PORT = 5002
COMPETITORS = ("newreno", "cubic")
SEED_OFFSET_S = 0.137
ONE_SUBFLOW = "one-subflow"  # the reference: h1's connection on one subflow, with the competitor's controller


def shared_bottleneck_scenario(
    *,
    bw_mbps: float = 10.0,
    queue_packets: int = 100,
    competitor: str = "newreno",
    congestion: str = "lia",
    warmup_s: float = 5.0,
    measure_s: float = 25.0,
    name: str = "shared-bottleneck",
    client: dict[str, Any] | None = None,
    size_bytes: int | None = None,
    tcp_start_s: float = 0.0,
) -> Scenario:
    """h1 → h2 over MPTCP (two subflows, ``congestion`` coupling them) and h3 → h2 over TCP; every TCP
    runs ``competitor`` (the MPTCP subflows too when uncoupled). ``client`` replaces h1's MPTCP
    settings. Without ``size_bytes`` both transfers outlast ``warmup_s + measure_s``, where the run
    stops; with it each sends that much and the run lasts until both are done. The TCP flow starts
    ``tcp_start_s`` after the MPTCP one. ``congestion="one-subflow"`` keeps h1's connection on its
    first subflow, running the competitor's controller: the reference, what one flow from h1 gets
    beside h3's at this bottleneck. Raises ConfigError for an unknown competitor or bad durations."""
    if competitor not in COMPETITORS:
        raise ConfigError(f"competitor must be one of {', '.join(COMPETITORS)}, got {competitor!r}")
    if warmup_s < 0 or measure_s <= 0:
        raise ConfigError("warmup_s must be >= 0 and measure_s > 0")
    # enough data for both flows to stay busy: the whole link for the whole run, plus a margin
    size = size_bytes or int(bw_mbps * 1e6 / 8 * (warmup_s + measure_s) * 1.2) + 1024 * 1024
    mptcp = {"path_manager": "per_address", "congestion": congestion}
    if congestion == ONE_SUBFLOW:
        mptcp = {"path_manager": "none", "congestion": "uncoupled"}
    server = dict(mptcp)
    if client is not None:
        mptcp = dict(client)
        congestion = str(mptcp.get("congestion", "uncoupled"))
    shape = f"one subflow, {competitor}" if congestion == ONE_SUBFLOW else f"{congestion}, two subflows"
    return Scenario(
        name=name,
        description=(
            f"One MPTCP connection ({shape}) and one {competitor} TCP flow share a "
            f"{bw_mbps:g} Mbit/s bottleneck ({queue_packets}-packet queue, {2 * ONE_WAY_MS:g} ms base RTT)."
        ),
        topology="shared-bottleneck",
        topology_params={"bw_mbps": bw_mbps, "queue_packets": queue_packets, "delay_ms": ONE_WAY_MS},
        transfers=(
            MptcpTransfer(
                name="mptcp", src="h1", dst="h2", port=MPTCP_PORT, size_bytes=size, client=mptcp, server=server
            ),
            Transfer(name="tcp", src="h3", dst="h2", port=TCP_PORT, size_bytes=size, start_s=tcp_start_s),
        ),
        tcp={"congestion_control": competitor},
        time_limit_s=warmup_s + measure_s if size_bytes is None else 600.0,
        main_view="subflows",
    )


def measure_fairness(
    *,
    bw_mbps: float,
    queue_packets: int,
    competitor: str,
    congestion: str,
    warmup_s: float = 5.0,
    measure_s: float = 25.0,
    seed: int = 1,
    tracer: Tracer | None = None,
) -> dict[str, Any]:
    """Run :func:`shared_bottleneck_scenario` and return the MPTCP/TCP ratio of the bytes delivered in order
    over ``measure_s`` after ``warmup_s``, with both rates (Mbit/s) and the run's wall time. The network
    has no random loss, so what ``seed`` changes is the phase of the flows: the TCP flow starts
    (seed - 1) * SEED_OFFSET_S later (modulo one second)."""
    scenario = shared_bottleneck_scenario(
        bw_mbps=bw_mbps,
        queue_packets=queue_packets,
        competitor=competitor,
        congestion=congestion,
        warmup_s=warmup_s,
        measure_s=measure_s,
        tcp_start_s=((seed - 1) * SEED_OFFSET_S) % 1.0,
    )
    start = time.perf_counter()
    run = ScenarioRun(scenario, seed=seed, tracer=tracer or NULL_TRACER)
    run.net.run(until=warmup_s)
    before = [r.bytes_received for r in run.results]
    run.net.run(until=warmup_s + measure_s)
    mptcp_bytes, tcp_bytes = (r.bytes_received - b for r, b in zip(run.results, before, strict=True))
    subflows = [len(g.subflows) for g in run.net.host("h1").groups()]
    return {
        "bw_mbps": bw_mbps,
        "queue_packets": queue_packets,
        "competitor": competitor,
        "congestion": congestion,
        "ratio": round(mptcp_bytes / tcp_bytes, 3) if tcp_bytes else float("inf"),
        "mptcp_mbps": round(mptcp_bytes * 8 / measure_s / 1e6, 3),
        "tcp_mbps": round(tcp_bytes * 8 / measure_s / 1e6, 3),
        "subflows": subflows[0] if subflows else 0,
        "seed": seed,
        "wall_s": round(time.perf_counter() - start, 1),
    }
