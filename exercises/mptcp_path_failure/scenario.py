"""The run for mptcp_path_failure: path A dies at 1 s while h1 sends 4 MiB; path B is a backup.

``two-paths``: path A 20 Mbit/s at 10 ms one-way, path B 20 Mbit/s at 40 ms
(a metered link: h1 marks its subflow as a backup, MP_JOIN B flag). The link
r1-h2 (path A) goes down at ``FAIL_AT_S`` and only comes back at
``REPAIR_AT_S``. h1's MPTCP settings are what ``client_config()`` in your
solution.py returns; h2 runs ``SERVER``.

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from typing import Any

from lab.scenario import LinkEvent, Scenario
from lab.scenario.mptcp import MptcpTransfer

SEED = 11
SIZE_BYTES = 4 * 1024 * 1024
FAIL_AT_S = 1.0
REPAIR_AT_S = 10.0
DEADLINE_S = 5.0  # the transfer must be complete by then (path A is still down)
PATH_A = ("10.0.1.1", "10.0.2.2")
PATH_B = ("10.0.3.1", "10.0.4.2")
SERVER: dict[str, Any] = {"path_manager": "paired"}


def scenario(client: dict[str, Any]) -> Scenario:
    """The run with h1's MptcpConfig keyword arguments ``client``. Raises ConfigError for bad settings."""
    return Scenario(
        name="mptcp-path-failure",
        description="Path A fails at 1 s and stays down until 10 s; path B is a backup.",
        topology="two-paths",
        topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 100},
        link_events=(
            LinkEvent(at_s=FAIL_AT_S, link="r1-h2", up=False),
            LinkEvent(at_s=REPAIR_AT_S, link="r1-h2", up=True),
        ),
        transfers=(MptcpTransfer(size_bytes=SIZE_BYTES, client=dict(client), server=dict(SERVER)),),
        time_limit_s=20.0,
    )
