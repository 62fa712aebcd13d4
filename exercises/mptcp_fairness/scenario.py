"""The run for mptcp_fairness: two subflows and one TCP flow through one bottleneck.

``shared-bottleneck``: h1 reaches r1 over two access links, one MPTCP
subflow each; h3 sends over plain TCP (NewReno) from its own access link.
All three cross the r1-r2 link: 5 Mbit/s, 22 ms base RTT, a 25-packet
drop-tail queue. Both flows start at 0 s; the grader lets them settle for
WARMUP_S and compares what h2 receives from each over the next MEASURE_S.
h1's MPTCP settings are what ``client_config()`` in your solution returns
(the subflows run NewReno too unless a coupled controller links them).

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from typing import Any

from lab.scenario import Scenario
from lab.scenario.fairness import TCP_PORT, shared_bottleneck_scenario

SEED = 6356
BW_MBPS = 5.0
QUEUE_PACKETS = 25
COMPETITOR = "newreno"
WARMUP_S = 4.0
MEASURE_S = 60.0  # long enough that one seeded run lands near its mean (see grade.py)
H1_ADDRESSES = ("10.0.1.1", "10.0.2.1")  # h1's two access links: one subflow each
H3_ADDRESS = "10.0.3.1"
PORT = TCP_PORT


def scenario(client: dict[str, Any]) -> Scenario:
    """The run with h1's MptcpConfig keyword arguments ``client``. Raises ConfigError for bad settings."""
    return shared_bottleneck_scenario(
        bw_mbps=BW_MBPS,
        queue_packets=QUEUE_PACKETS,
        competitor=COMPETITOR,
        client=dict(client),
        warmup_s=WARMUP_S,
        measure_s=MEASURE_S,
        name="mptcp-fairness",
    )
