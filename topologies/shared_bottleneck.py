"""Two multipath subflows and one TCP flow through the same bottleneck link."""

from __future__ import annotations

from lab.errors import ConfigError
from lab.topology import TopologyBuilder

ACCESS_MBPS = 1000.0  # the access links never limit: the bottleneck is r1-r2


def shared_bottleneck(
    t: TopologyBuilder,
    *,
    bw_mbps: float = 10.0,
    delay_ms: float = 11.0,
    queue_packets: int = 100,
) -> None:
    """h1 reaches r1 over two links (one MPTCP subflow each), h3 over one (a plain TCP
    flow); all three share the r1-r2 bottleneck of ``bw_mbps`` with a drop-tail queue of
    ``queue_packets``. ``delay_ms`` is the one-way delay end to end, on the bottleneck.

        h1 ══ r1 ── r2 ── h2
        h3 ───┘
    """
    if not isinstance(queue_packets, int) or queue_packets < 1:
        raise ConfigError(f"shared_bottleneck: queue_packets must be a positive whole number, got {queue_packets!r}")
    h1, h2, h3 = t.host("h1"), t.host("h2"), t.host("h3")
    r1, r2 = t.router("r1"), t.router("r2")
    t.link(h1, r1, bw_mbps=ACCESS_MBPS, queue_packets=1000)
    t.link(h1, r1, bw_mbps=ACCESS_MBPS, queue_packets=1000)
    t.link(h3, r1, bw_mbps=ACCESS_MBPS, queue_packets=1000)
    t.link(r1, r2, bw_mbps=bw_mbps, delay_ms=delay_ms, queue_packets=queue_packets)
    t.link(r2, h2, bw_mbps=ACCESS_MBPS, queue_packets=1000)
