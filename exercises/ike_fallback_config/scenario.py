"""The runs for ike_fallback_config: one initiator configuration, three networks.

Topology ``single-path`` (h1 ─ r1 ─ h2, 20 ms one-way). h1 starts an IKE
session to h2 at t = 0 with the settings ``initiator_config()`` returns
(fields of ``lab.ike.config.IkeConfig``); once its Child SA is up each side
sends 32 KiB through the tunnel, SHA-256 checked, then h1 deletes the SA.
The responder listens on UDP 500/4500 and on every TCP port the initiator
may try. The networks:

* ``hotspot``: r1 drops all UDP (as the registered ``hotspot`` scenario);
* ``port-443``: r1 drops all UDP and TCP port 4500 (as ``port-443``);
* ``open``: nothing is blocked.
"""

from __future__ import annotations

from typing import Any

from lab.scenario import Scenario
from lab.scenario.ike import IkeSession
from lab.scenario.middlebox import BlockAllUdp, BlockTcpPorts

SEED = 9329
INITIATOR = "h1"
SESSION = "ike"
HOTSPOT_BOUND_S = 1.0  # connect to IKE SA established, through the hotspot
PORT_443_BOUND_S = 1.5  # the same where TCP 4500 is blocked too
# the IkeConfig fields initiator_config() may set
ALLOWED_FIELDS = (
    "transport",
    "fallback",
    "udp_ports",
    "tcp_ports",
    "udp_timeout_s",
    "race_head_start_s",
    "tcp_connect_timeout_s",
    "retransmit_s",
    "retransmit_tries",
)

NETWORKS: dict[str, tuple[Any, ...]] = {
    "hotspot": (("r1", BlockAllUdp),),
    "port-443": (("r1", BlockAllUdp), ("r1", lambda: BlockTcpPorts([4500]))),
    "open": (),
}


def scenario(network: str, initiator_config: dict[str, Any]) -> Scenario:
    """The IKE session with ``initiator_config`` through ``network``. Raises ConfigError for a bad config."""
    return Scenario(
        name=f"ike-fallback-{network}",
        description=f"An IKE session from h1 to h2 through the {network} network.",
        topology="single-path",
        middleboxes=NETWORKS[network],
        transfers=(IkeSession(name=SESSION, initiator_config=initiator_config),),
        time_limit_s=30.0,
    )
