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
    jitter_ms: float | None = None,
) -> None:
    """h1 reaches r1 over two links (one MPTCP subflow each), h3 over one (a plain TCP
    flow); all three share the r1-r2 bottleneck of ``bw_mbps`` with a drop-tail queue of
    ``queue_packets``. ``delay_ms`` is the one-way delay end to end, on the bottleneck.
    The access links add ``jitter_ms`` of random delay, order kept (by default one
    1500-byte packet's time at the bottleneck): without it, packets reach the queue in
    lockstep and which flow loses at an overflow is decided by phase, not by rate.

        h1 ══ r1 ── r2 ── h2
        h3 ───┘
    """
    if not isinstance(queue_packets, int) or queue_packets < 1:
        raise ConfigError(f"shared_bottleneck: queue_packets must be a positive whole number, got {queue_packets!r}")
    if jitter_ms is None:  # (a bad bw_mbps is the bottleneck link's to refuse, with its message)
        good_rate = isinstance(bw_mbps, (int, float)) and not isinstance(bw_mbps, bool) and bw_mbps > 0
        jitter_ms = 1500 * 8 / (bw_mbps * 1000.0) if good_rate else 0.0
    h1, h2, h3 = t.host("h1"), t.host("h2"), t.host("h3")
    r1, r2 = t.router("r1"), t.router("r2")
    t.link(h1, r1, bw_mbps=ACCESS_MBPS, queue_packets=1000, jitter_ms=jitter_ms)
    t.link(h1, r1, bw_mbps=ACCESS_MBPS, queue_packets=1000, jitter_ms=jitter_ms)
    t.link(h3, r1, bw_mbps=ACCESS_MBPS, queue_packets=1000, jitter_ms=jitter_ms)
    t.link(r1, r2, bw_mbps=bw_mbps, delay_ms=delay_ms, queue_packets=queue_packets)
    t.link(r2, h2, bw_mbps=ACCESS_MBPS, queue_packets=1000)
