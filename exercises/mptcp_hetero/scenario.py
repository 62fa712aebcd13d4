"""The run for mptcp_hetero: a fast path and a long path, and a modest receive buffer.

``two-paths``: path A 20 Mbit/s at 10 ms one-way, path B 20 Mbit/s at
200 ms one-way (a satellite-like hop). h1 sends 32 MiB to h2 over MPTCP, one
subflow per path; h2's connection-level receive buffer is 1 MiB, about path
B's bandwidth-delay product. h1's MPTCP settings are what
``client_config()`` in your solution.py returns.

The grader also runs ``baseline()``, the same 32 MiB over plain TCP on path
A alone (same topology, same seed): the best single path.

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from typing import Any

from lab.scenario import Scenario, Transfer
from lab.scenario.mptcp import MptcpTransfer

SEED = 3
SIZE_BYTES = 32 * 1024 * 1024  # long enough for path B's 400 ms RTT to pay off
RECEIVE_BUFFER_BYTES = 1024 * 1024
PATH_A = ("10.0.1.1", "10.0.2.2")
PATH_B = ("10.0.3.1", "10.0.4.2")
TOPOLOGY_PARAMS = {"delay_ms": (10.0, 200.0), "bw_mbps": (20.0, 20.0), "queue_packets": 100}
SERVER: dict[str, Any] = {"path_manager": "paired", "receive_buffer_bytes": RECEIVE_BUFFER_BYTES}


def scenario(client: dict[str, Any]) -> Scenario:
    """The MPTCP run with h1's MptcpConfig keyword arguments ``client``. Raises ConfigError for bad settings."""
    return Scenario(
        name="mptcp-hetero",
        description="32 MiB over MPTCP: 20 Mbit/s at 10 ms plus 20 Mbit/s at 200 ms, 1 MiB receive buffer.",
        topology="two-paths",
        topology_params=dict(TOPOLOGY_PARAMS),
        transfers=(MptcpTransfer(size_bytes=SIZE_BYTES, client=dict(client), server=dict(SERVER)),),
        time_limit_s=60.0,
    )


def baseline() -> Scenario:
    """The same transfer over plain TCP on path A alone."""
    return Scenario(
        name="mptcp-hetero-baseline",
        description="32 MiB over plain TCP on path A (20 Mbit/s, 10 ms one-way).",
        topology="two-paths",
        topology_params=dict(TOPOLOGY_PARAMS),
        transfers=(Transfer(size_bytes=SIZE_BYTES),),
        time_limit_s=60.0,
    )
