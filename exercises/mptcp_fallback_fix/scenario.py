"""The run for mptcp_fallback_fix: a firewall on r1 (path A) rewrites TCP options.

``two-paths`` (20 Mbit/s per path, 10 ms and 40 ms one-way); h1 sends 2 MiB
to h2 over MPTCP, one subflow per path. r1 runs ``StripTcpOptions`` (what
iptables TCPOPTSTRIP does: the listed option kinds become NOPs) with the
settings in ``FIREWALL``; the fix is a new setting for the same firewall.
The site's policy: options 253 and 254 (RFC 6994 experiments) never cross r1.

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from typing import Any

from lab.scenario import Scenario
from lab.scenario.middlebox import StripTcpOptions
from lab.scenario.mptcp import MptcpTransfer

SEED = 5
SIZE_BYTES = 2 * 1024 * 1024
MIDDLEBOX_NODE = "r1"
FIREWALL: dict[str, Any] = {"kinds": [30, 253, 254], "when": "all"}  # what r1 runs today
POLICY_KINDS = (253, 254)  # must stay stripped
PATHS = {"A": ("10.0.1.1", "10.0.2.2"), "B": ("10.0.3.1", "10.0.4.2")}


def firewall(settings: dict[str, Any]) -> StripTcpOptions:
    """The middlebox for ``settings`` ({"kinds": [...], "when": ...}). Raises ConfigError or TypeError."""
    return StripTcpOptions(settings["kinds"], when=settings.get("when", "all"))


def scenario(settings: dict[str, Any]) -> Scenario:
    """The run with r1's firewall set to ``settings``. Raises ConfigError for bad settings."""
    firewall(settings)  # check them now, not inside the run
    return Scenario(
        name="mptcp-fallback-fix",
        description="MPTCP through a firewall on path A that rewrites TCP options.",
        topology="two-paths",
        topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 100},
        middleboxes=((MIDDLEBOX_NODE, lambda: firewall(settings)),),
        transfers=(
            MptcpTransfer(size_bytes=SIZE_BYTES, client={"path_manager": "paired"}, server={"path_manager": "paired"}),
        ),
        time_limit_s=30.0,
    )
