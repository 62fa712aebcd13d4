"""Scenarios built on the topologies here: the SCENARIOS registry (entry point tcplab.scenarios)."""

from __future__ import annotations

from lab.scenario import LinkEvent, Scenario, Transfer
from lab.scenario.middlebox import FlipPayloadBytes
from lab.scenario.moments import MomentSpec, link_down, link_up, transfer_received
from lab.scenario.mptcp import MptcpTransfer
from lab.scenario.outcomes import Expects
from topologies.mptcp_scenarios import DELIVERED, JOINED

MIB = 1024 * 1024
_PAIRED = {"path_manager": "paired"}  # one subflow per path
TCP_DELIVERED = MomentSpec(
    key="delivered",
    caption="{transfer}: all {size} delivered, {check}",
    rfc="RFC 9293 §3.1",
    view="topology",
    match=transfer_received(),
)
TCP_LINK_DOWN = MomentSpec(
    key="link-down",
    caption="link {link} goes down: no ACKs come back, the retransmission timer doubles on each expiry",
    rfc="RFC 6298 §5",
    view="topology",
    match=link_down(),
)
TCP_LINK_UP = MomentSpec(
    key="link-up",
    caption="link {link} is back up: the next retransmission gets through and the transfer resumes",
    rfc="RFC 6298 §5",
    view="topology",
    match=link_up(),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="single-path",
            description="One bulk transfer over one routed 20 Mbit/s path with 20 ms one-way delay.",
            topology="single-path",
            transfers=(Transfer(size_bytes=4 * MIB),),
            moments=(TCP_DELIVERED,),
            main_view="topology",
        ),
        Scenario(
            name="two-paths",
            description="Multipath TCP over two disjoint paths (10 Mbit/s 5 ms, 5 Mbit/s 20 ms): a subflow on each, data on both.",
            topology="two-paths",
            transfers=(MptcpTransfer(size_bytes=4 * MIB, client=_PAIRED, server=_PAIRED),),
            moments=(JOINED, DELIVERED),
            main_view="subflows",
        ),
        Scenario(
            name="lossy-path",
            description="The single path with 1 % random loss each way: SACK recovery at work.",
            topology="single-path",
            topology_params={"loss_pct": 1.0},
            transfers=(Transfer(size_bytes=2 * MIB),),
            moments=(TCP_DELIVERED,),
            main_view="topology",
        ),
        Scenario(
            name="link-flap",
            description="The path goes down at 1 s and comes back at 3 s: RTO backoff, then recovery.",
            topology="single-path",
            link_events=(LinkEvent(at_s=1.0, link="r1-h2", up=False), LinkEvent(at_s=3.0, link="r1-h2", up=True)),
            transfers=(Transfer(size_bytes=4 * MIB),),
            moments=(TCP_LINK_DOWN, TCP_LINK_UP, TCP_DELIVERED),
            main_view="topology",
        ),
        Scenario(
            name="payload-tamper",
            description="A router flips one payload byte (fixing the checksum): plain TCP delivers corrupted data, and the SHA-256 check says so.",
            topology="single-path",
            middleboxes=(("r1", lambda: FlipPayloadBytes(dst_port=5001, nth=100)),),
            transfers=(Transfer(size_bytes=1 * MIB),),
            moments=(TCP_DELIVERED,),
            main_view="topology",
            expects=Expects(
                transfers=(("bulk", "corrupted"),),
                summary="plain TCP delivers the changed byte: the SHA-256 check is all that notices",
            ),
        ),
    )
}
