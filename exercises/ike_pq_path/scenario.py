"""The runs for ike_pq_path: one hybrid post-quantum IKE session, four networks.

Topology ``single-path`` (h1 ─ r1 ─ h2, 20 ms one-way, so one RTT is 40 ms).
h1 starts an IKE session to h2 at t = 0: X25519 in IKE_SA_INIT, then
ML-KEM-768 in an IKE_INTERMEDIATE exchange (RFC 9370), certificate
authentication with an ECDSA P-384 chain of two intermediate CAs (IKE_AUTH is
about 1,980 bytes). Once its Child SA is up each side sends 16 KiB through the
tunnel, SHA-256 checked, then h1 deletes the SA. The responder supports IKE
fragmentation (RFC 7383) with fragments sized for a 1280-byte path, and
listens on TCP 4500. r1 is a different network in each run:

* ``open``: nothing is dropped;
* ``no-fragments``: r1 drops every IP fragment (many firewalls and carrier-grade NATs do);
* ``small-udp``: r1 drops every UDP datagram larger than 1280 bytes (IP packet, header included);
* ``udp-blocked``: r1 drops all UDP.
"""

from __future__ import annotations

from typing import Any

from lab.scenario import Scenario
from lab.scenario.ike import RESPONDER_ID, IkeSession
from lab.scenario.ike_pq import VALIDATED_AT, scenario_pki
from lab.scenario.middlebox import BlockAllUdp, DropIpFragments, DropLargeUdp

SEED = 9370
INITIATOR = "h1"
SESSION = "hybrid"
RTT_S = 0.040
SMALL_UDP_BYTES = 1280
BOUND_RTTS = 6.0  # connect to IKE SA established, with your settings, on every network
# the IkeConfig fields initiator_config() may set
ALLOWED_FIELDS = (
    "transport",
    "fallback",
    "fragmentation",
    "path_mtu_bytes",
    "oversize_udp",
    "udp_timeout_s",
    "race_head_start_s",
    "retransmit_s",
    "retransmit_tries",
)
# what the starter sets: the defaults, the settings predictions() is about
DEFAULTS: dict[str, Any] = {
    "transport": "fallback",
    "fallback": "sequential",
    "fragmentation": False,
    "path_mtu_bytes": 1500,
    "oversize_udp": "send",
    "udp_timeout_s": 2.0,
    "race_head_start_s": 0.02,
    "retransmit_s": 0.5,
    "retransmit_tries": 5,
}
TIME_CLASSES = ("rtts", "udp-timeout", "retransmissions", "never")

NETWORKS: dict[str, tuple[Any, ...]] = {
    "open": (),
    "no-fragments": (("r1", DropIpFragments),),
    "small-udp": (("r1", lambda: DropLargeUdp(SMALL_UDP_BYTES)),),
    "udp-blocked": (("r1", BlockAllUdp),),
}


def session(initiator_config: dict[str, Any]) -> IkeSession:
    pki = scenario_pki()
    common = {"auth": "signature", "trust_anchors": pki.trust_anchors, "validation_time": VALIDATED_AT}
    return IkeSession(
        name=SESSION,
        initiator_config={
            **common,
            **initiator_config,
            "dh_groups": (31,),
            "additional_key_exchanges": (36,),
            "credential": pki.end_entities["hybrid.initiator.lab"],
        },
        responder_config={
            **common,
            "fragmentation": True,
            "path_mtu_bytes": SMALL_UDP_BYTES,
            "dh_groups": (31, 19),
            "credential": pki.end_entities[RESPONDER_ID.decode()],
        },
        data_bytes=16 * 1024,
    )


def scenario(network: str, initiator_config: dict[str, Any]) -> Scenario:
    """The hybrid IKE session with ``initiator_config`` through ``network``. Raises ConfigError for a bad config."""
    return Scenario(
        name=f"ike-pq-path-{network}",
        description=f"A hybrid post-quantum IKE session from h1 to h2 through the {network} network.",
        topology="single-path",
        middleboxes=NETWORKS[network],
        transfers=(session(initiator_config),),
        time_limit_s=60.0,
    )
