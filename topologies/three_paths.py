"""Three disjoint routed paths between two hosts: MPTCP with more paths than the classic two."""

from __future__ import annotations

from lab.topology import TopologyBuilder


def three_paths(
    t: TopologyBuilder,
    *,
    delay_ms: tuple[float, float, float] = (5.0, 5.0, 5.0),
    bw_mbps: tuple[float, float, float] = (20.0, 20.0, 20.0),
    loss_pct: float = 0.0,
    queue_packets: int = 100,
) -> None:
    """Two hosts joined by three disjoint routed paths; ``delay_ms`` is one-way per path.

    h1 ─── r1 ─── h2    path A
     ├──── r2 ────┤     path B
     └──── r3 ────┘     path C
    """
    h1, h2 = t.host("h1"), t.host("h2")
    for name, delay, bw in zip(("r1", "r2", "r3"), delay_ms, bw_mbps, strict=True):
        r = t.router(name)
        t.link(h1, r, delay_ms=delay / 2, bw_mbps=bw, loss_pct=loss_pct, queue_packets=queue_packets)
        t.link(r, h2, delay_ms=delay / 2, bw_mbps=bw, loss_pct=loss_pct, queue_packets=queue_packets)
