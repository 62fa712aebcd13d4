"""IKE scenarios: the SCENARIOS registry (entry point tcplab.scenarios, name ike).

Each runs one or two :class:`~lab.scenario.ike.IkeSession` workloads (IKEv2
with PSK, a Child SA, a tunnelled inner stream each way, liveness check and
Delete) across the single-path topology with a middlebox on r1. The
``ike-pq-*`` scenarios (lab.scenario.ike_pq) authenticate with certificates
and compare a classic and a hybrid post-quantum proposal through a router
that drops IP fragments.
"""

from __future__ import annotations

from lab.scenario import Scenario
from lab.scenario.ike import IkeSession
from lab.scenario.ike_pq import PQ_MODES, pq_scenario
from lab.scenario.middlebox import BlockAllUdp, BlockTcpPorts, BlockUdpPorts, SourceNat
from lab.scenario.moments import MomentSpec, ike_attempt, ike_event, iketcp_prefix, middlebox_dropped
from lab.scenario.outcomes import Expects

UDP_TIMEOUT = MomentSpec(
    key="udp-timeout",
    caption="{session}: no answer over UDP {port} for {after}, so IKE gives UDP up and tries TCP 4500",
    rfc="RFC 9329 §5.1",
    view="iketcp",
    match=ike_attempt("timeout", transport="udp"),
    once_per="session",
)
IKETCP_PREFIX = MomentSpec(
    key="iketcp-prefix",
    caption='{session}: the new TCP connection starts with the 6 bytes "IKETCP", then framed IKE messages',
    rfc="RFC 9329 §4",
    view="iketcp",
    match=iketcp_prefix(),
    once_per="session",
)
IKE_SA_WON = MomentSpec(
    key="ike-sa-won",
    caption="{session}: IKE_SA_INIT answered over {transport} {port}, {after} after the start: this transport wins",
    rfc="RFC 9329 §5.1",
    view="iketcp",
    match=ike_attempt("won"),
    once_per="session",
)
FALLBACK_MOMENTS = (UDP_TIMEOUT, IKETCP_PREFIX, IKE_SA_WON)

# --- large messages: post-quantum key exchange and certificate chains against a fragment-dropping router
IKE_INTERMEDIATE_SENT = MomentSpec(
    key="ike-intermediate",
    caption="IKE_INTERMEDIATE carries the ML-KEM-768 key share ({ke_len} bytes), already encrypted with the keys of IKE_SA_INIT",
    rfc="RFC 9370 §2.2",
    view="iketcp",
    match=ike_event("sent", exchange="IKE_INTERMEDIATE"),
)
IKE_IP_FRAGMENTS = MomentSpec(
    key="ip-fragments",
    caption="{exchange} is {length} bytes, more than a {path_mtu}-byte path carries, and no IKE fragmentation was negotiated: it leaves as IP fragments",
    rfc="RFC 7383 §1",
    view="iketcp",
    match=ike_event("ip_fragments"),
)
FRAGMENT_DROPPED = MomentSpec(
    key="fragment-dropped",
    caption="{node} drops an IP fragment (id {id}, offset {offset}): the datagram can never be reassembled, and every retransmission meets the same rule",
    rfc="RFC 8900 §3.7",
    view="packets",
    match=middlebox_dropped("IP fragment dropped"),
)
UDP_UNANSWERED = MomentSpec(
    key="udp-unanswered",
    caption="{session}: no answer over UDP after every retransmission ({after}): IKE starts over on TCP 4500",
    rfc="RFC 9329 §5.1",
    view="iketcp",
    match=ike_attempt("unanswered", transport="udp"),
    once_per="session",
)
IKE_FRAGMENTS_REASSEMBLED = MomentSpec(
    key="ike-fragments",
    caption="{node} reassembles {exchange} from {fragments} IKE fragments, each encrypted and within the path MTU: no IP fragment needed",
    rfc="RFC 7383 §2.6",
    view="iketcp",
    match=ike_event("reassembled", transport="udp"),
)
TCP_WON = MomentSpec(
    key="tcp-won",
    caption="{session}: IKE_SA_INIT answered over TCP {port}, {after} after the start; IKE_AUTH follows whole on the same stream",
    rfc="RFC 9329 §5.1",
    view="iketcp",
    match=ike_attempt("won", transport="tcp"),
    once_per="session",
)
SEPARATE_TRANSPORTS_SWITCH = MomentSpec(
    key="separate-transports",
    caption="{node}: SEPARATE_TRANSPORTS agreed: IKE goes on over TCP 4500, ESP stays on UDP to {esp_remote}",
    rfc="draft-ietf-ipsecme-ikev2-reliable-transport §3.1",
    view="iketcp",
    match=ike_event("transport_switched"),
    once_per="node",
)
PQ_MOMENTS = {
    "ip-fragments": (
        IKE_INTERMEDIATE_SENT,
        IKE_IP_FRAGMENTS,
        FRAGMENT_DROPPED,
        UDP_UNANSWERED,
        IKETCP_PREFIX,
        TCP_WON,
    ),
    "rfc7383": (IKE_INTERMEDIATE_SENT, IKE_FRAGMENTS_REASSEMBLED, IKE_SA_WON),
    "tcp": (IKETCP_PREFIX, IKE_INTERMEDIATE_SENT, IKE_SA_WON),
    "separate-transports": (IKE_SA_WON, SEPARATE_TRANSPORTS_SWITCH, IKETCP_PREFIX, IKE_INTERMEDIATE_SENT),
}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="hotspot",
            description="A hotspot drops all UDP: IKE_SA_INIT over UDP 500 is retransmitted until the UDP timeout, then IKE falls back to TCP 4500 (RFC 9329) and the tunnel runs over TCP.",
            topology="single-path",
            middleboxes=(("r1", BlockAllUdp),),
            transfers=(IkeSession(name="ike"),),
            time_limit_s=60.0,
            moments=FALLBACK_MOMENTS,
            main_view="iketcp",
            expects=Expects(
                ike=(("ike", "tcp"),), summary="UDP is dropped: IKE moves to TCP 4500 and the tunnel runs over it"
            ),
        ),
        Scenario(
            name="hotspot-500",
            description="Only UDP 500 is blocked: the initiator gives port 500 up and starts over on UDP 4500 with the non-ESP marker, which gets through; no TCP needed.",
            topology="single-path",
            middleboxes=(("r1", lambda: BlockUdpPorts([500])),),
            transfers=(IkeSession(name="ike", initiator_config={"udp_ports": (500, 4500)}),),
            time_limit_s=60.0,
            moments=(IKE_SA_WON,),
            main_view="iketcp",
            expects=Expects(ike=(("ike", "udp"),), summary="UDP 4500 gets through: no TCP needed"),
        ),
        Scenario(
            name="nat",
            description="The initiator sits behind a source NAT on r1: NAT detection notices it, IKE moves to UDP 4500, ESP goes UDP-encapsulated through the NAT, with NAT keepalives.",
            topology="single-path",
            middleboxes=(("r1", lambda: SourceNat(inside="r1-eth0", public_address="10.0.2.1")),),
            transfers=(IkeSession(name="ike", rekey=True, initiator_config={"nat_keepalive_s": 0.1}),),
            time_limit_s=60.0,
            moments=(IKE_SA_WON,),
            main_view="iketcp",
            expects=Expects(ike=(("ike", "udp"),), summary="NAT detected: IKE and ESP go over UDP 4500"),
        ),
        Scenario(
            name="port-443",
            description="All UDP and TCP 4500 are blocked, TCP 443 is open: UDP times out, the TCP 4500 connect times out, IKE over TCP 443 gets through.",
            topology="single-path",
            middleboxes=(("r1", BlockAllUdp), ("r1", lambda: BlockTcpPorts([4500]))),
            transfers=(
                IkeSession(name="ike", initiator_config={"tcp_ports": (4500, 443), "tcp_connect_timeout_s": 1.0}),
            ),
            time_limit_s=60.0,
            moments=FALLBACK_MOMENTS,
            main_view="iketcp",
            expects=Expects(
                ike=(("ike", "tcp"),), summary="UDP and TCP 4500 are blocked: IKE gets through over TCP 443"
            ),
        ),
        Scenario(
            name="iketcp-race",
            description="UDP blocked; two initiators side by side: 'sequential' waits out the UDP timeout before TCP, 'racing' starts TCP after a short head start and keeps whichever completes IKE_SA_INIT first.",
            topology="single-path",
            middleboxes=(("r1", BlockAllUdp),),
            transfers=(
                IkeSession(name="sequential", initiator_config={"fallback": "sequential"}),
                IkeSession(name="racing", initiator_config={"fallback": "racing"}),
            ),
            time_limit_s=60.0,
            moments=FALLBACK_MOMENTS,
            main_view="iketcp",
            expects=Expects(
                ike=(("sequential", "tcp"), ("racing", "tcp")), summary="both end on TCP; racing gets there first"
            ),
        ),
        *(pq_scenario(mode, moments=PQ_MOMENTS[mode]) for mode in PQ_MODES),
    )
}
