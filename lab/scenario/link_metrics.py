"""Link counters as trace records: what ``tcplab tui`` and headless ``tcplab run`` both record,
so that every bundle replays with link rates (docs/trace.md, ``link``/``metrics_updated``)."""

from __future__ import annotations

from typing import Any

from lab.trace import Tracer

LINK_METRICS_INTERVAL_S = 0.1


class LinkMetricsSampler:
    """Records each link direction's totals when they moved since the last sample."""

    def __init__(self, net: Any, tracer: Tracer) -> None:
        self.net = net
        self.tracer = tracer
        self._last: dict[tuple[str, str], tuple[int, int, int, int]] = {}

    def flush(self) -> None:
        now = self.net.now
        for name, link in self.net.links.items():
            for d in link.directions:
                key = (name, d.src_iface.name)
                # bytes that have left the queue by now (sent_bytes counts them as they are queued):
                # a rate from these never exceeds the link's
                queued = max(0.0, d.busy_until - now) * d.bytes_per_s if d.bytes_per_s else 0.0
                departed = max(0, d.sent_bytes - int(queued + 0.999))
                figures = (d.sent_packets, d.sent_bytes, d.dropped, departed)
                if self._last.get(key) == figures:
                    continue
                self._last[key] = figures
                self.tracer.record_node(
                    now,
                    "net",
                    "link",
                    "metrics_updated",
                    {
                        "link": name,
                        "from": d.src_iface.name,
                        "packets": figures[0],
                        "bytes": figures[1],
                        "dropped": figures[2],
                        "bytes_departed": figures[3],
                    },
                )
