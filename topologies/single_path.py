"""One routed path between two hosts."""

from __future__ import annotations

from lab.errors import ConfigError
from lab.topology import TopologyBuilder


def single_path(
    t: TopologyBuilder,
    *,
    delay_ms: float = 20.0,
    bw_mbps: float = 20.0,
    loss_pct: float = 0.0,
    queue_packets: int = 100,
) -> None:
    """Two hosts joined by one router; ``delay_ms`` is the one-way end-to-end delay
    and ``loss_pct`` the end-to-end loss in each direction (split over both links).

        h1 ──── r1 ──── h2
    """
    if not 0 <= loss_pct <= 100:
        raise ConfigError(f"loss_pct must be in [0, 100], got {loss_pct}")
    per_link_loss = 100 * (1 - (1 - loss_pct / 100) ** 0.5)
    h1, h2, r1 = t.host("h1"), t.host("h2"), t.router("r1")
    t.link(h1, r1, delay_ms=delay_ms / 2, bw_mbps=bw_mbps, loss_pct=per_link_loss, queue_packets=queue_packets)
    t.link(r1, h2, delay_ms=delay_ms / 2, bw_mbps=bw_mbps, loss_pct=per_link_loss, queue_packets=queue_packets)
