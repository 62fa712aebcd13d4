"""mptcp_hetero reference solution.

With a 1 MiB receive buffer and a 400 ms RTT on path B, whatever path B
holds in flight blocks the connection-level window: the fast path idles
behind it (head-of-line blocking). Opportunistic retransmission sends the
blocking data again on path A; penalisation halves path B's window so it
holds less next time (Raiciu et al., NSDI 2012); larger mappings cut the
per-chunk scheduling overhead. Measured in this run, holding data back for
the fast path (ECF) leaves path B nearly idle, so it stays off.
"""

from __future__ import annotations

CLIENT = {
    "path_manager": "paired",
    "scheduler": "min_rtt",
    "mapping_bytes": 16 * 1448,
    "opportunistic_retransmission": True,
    "penalisation": True,
    "slow_path_check": False,
    "congestion": "uncoupled",
}


def client_config() -> dict:
    return CLIENT
