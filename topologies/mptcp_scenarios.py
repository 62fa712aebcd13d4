"""Multipath TCP scenarios: the SCENARIOS registry (entry point tcplab.scenarios, name mptcp).

Links in ``two-paths`` are named ``h1-r1``, ``r1-h2`` (path A) and ``h1-r2``,
``r2-h2`` (path B); h1's path-B address is 10.0.3.1, h2's 10.0.4.2.
"""

from __future__ import annotations

from dataclasses import replace

from lab.scenario import LinkEvent, Scenario
from lab.scenario.fairness import shared_bottleneck_scenario
from lab.scenario.middlebox import FlipPayloadBytes, StripTcpOptions
from lab.scenario.moments import (
    MomentSpec,
    link_down,
    link_up,
    mp_fail,
    mptcp_fallback,
    reinjection,
    reset_sent,
    subflow_joined,
    transfer_received,
)
from lab.scenario.mptcp import MptcpTransfer
from lab.scenario.outcomes import Expects
from lab.wire.mptcp import MPTCP_KIND

MIB = 1024 * 1024
H1_PATH_B = "10.0.3.1"
PAIRED = {"path_manager": "paired"}  # one subflow per path: h1 A <-> h2 A, h1 B <-> h2 B
JOINED = MomentSpec(
    key="subflow-joined",
    caption="{node} opens a second subflow with MP_JOIN ({subflow}): data can now use both paths",
    rfc="RFC 8684 §3.2",
    view="subflows",
    match=subflow_joined(),
)
LINK_DOWN = MomentSpec(
    key="link-down",
    caption="link {link} goes down: subflows over it stop getting ACKs and their retransmission timers run",
    rfc="RFC 8684 §3.3.6",
    view="subflows",
    match=link_down(),
)
LINK_UP = MomentSpec(
    key="link-up",
    caption="link {link} is back up: the path can carry a subflow again",
    rfc="RFC 8684 §3.4",
    view="subflows",
    match=link_up(),
)
RTO_REINJECTION = MomentSpec(
    key="rto-reinjection",
    caption="retransmission timeout on {from}: {node} sends that data again on another subflow ({since_down})",
    rfc="RFC 8684 §3.3.6",
    view="subflows",
    match=reinjection("retransmission timeout"),
)
FIRST_REINJECTION = MomentSpec(
    key="reinjection",
    caption="{node} sends again, on {to}, data that {from} already carried ({why})",
    rfc="RFC 8684 §3.3.6",
    view="subflows",
    match=reinjection(),
)
MP_FAIL = MomentSpec(
    key="mp-fail",
    caption="a DSS checksum fails at {node}: it answers with MP_FAIL for the damaged data",
    rfc="RFC 8684 §3.7",
    view="subflows",
    match=mp_fail(),
)
FALLBACK = MomentSpec(
    key="fallback",
    caption="{node} falls back to plain TCP ({why})",
    rfc="RFC 8684 §3.7",
    view="subflows",
    match=mptcp_fallback(),
)
SUBFLOW_RESET = MomentSpec(
    key="subflow-reset",
    caption="{node} resets subflow {conn} ({why}); the connection goes on over the others",
    rfc="RFC 8684 §3.6",
    view="subflows",
    match=reset_sent(),
)
DELIVERED = MomentSpec(
    key="delivered",
    caption="{transfer}: all {size} delivered, {check}",
    rfc="RFC 8684 §3.3",
    view="subflows",
    match=transfer_received(),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="mptcp-two-paths",
            description="MPTCP aggregates two 20 Mbit/s paths (10 ms and 40 ms one-way): MP_CAPABLE, MP_JOIN, ADD_ADDR, DSS.",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 200},
            transfers=(MptcpTransfer(size_bytes=16 * MIB, client=PAIRED, server=PAIRED),),
            moments=(JOINED, DELIVERED),
            main_view="subflows",
        ),
        Scenario(
            name="path-failure",
            description="Path A goes down at 1.5 s and comes back at 4 s: subflow RTOs, reinjection on path B, no byte lost.",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 200},
            link_events=(LinkEvent(at_s=1.5, link="r1-h2", up=False), LinkEvent(at_s=4.0, link="r1-h2", up=True)),
            transfers=(MptcpTransfer(size_bytes=16 * MIB),),
            moments=(LINK_DOWN, RTO_REINJECTION, LINK_UP, DELIVERED),
            main_view="subflows",
        ),
        Scenario(
            name="option-stripper",
            description="r1 strips option 30 from SYNs: the connection falls back to plain TCP, byte-exact.",
            topology="two-paths",
            middleboxes=(("r1", lambda: StripTcpOptions([MPTCP_KIND], when="syn")),),
            transfers=(MptcpTransfer(size_bytes=4 * MIB),),
            moments=(FALLBACK, DELIVERED),
            main_view="subflows",
            expects=Expects(summary="MPTCP falls back to plain TCP on the SYN/ACK without MP_CAPABLE; every byte arrives"),
        ),
        Scenario(
            name="option-stripper-late",
            description="r1 strips option 30 once the handshake is done: data without DSS on the initial subflow -> fallback.",
            topology="two-paths",
            middleboxes=(("r1", lambda: StripTcpOptions([MPTCP_KIND], when="after_handshake")),),
            transfers=(MptcpTransfer(size_bytes=4 * MIB, client={"path_manager": "none"}),),
            moments=(FALLBACK, DELIVERED),
            main_view="subflows",
            expects=Expects(summary="data without DSS: MPTCP falls back to plain TCP mid-connection; every byte arrives"),
        ),
        Scenario(
            name="backup-path",
            description="Path B is a backup (MP_JOIN B flag): it stays idle while path A works.",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 200},
            transfers=(
                MptcpTransfer(size_bytes=8 * MIB, client={"backup_addresses": (H1_PATH_B,), "path_manager": "paired"}),
            ),
            moments=(JOINED, DELIVERED),
            main_view="subflows",
        ),
        Scenario(
            name="handover",
            description="Path A fails for good at 1 s; the backup path B takes over the transfer.",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 200},
            link_events=(LinkEvent(at_s=1.0, link="r1-h2", up=False),),
            transfers=(
                MptcpTransfer(
                    size_bytes=8 * MIB,
                    client={"backup_addresses": (H1_PATH_B,), "scheduler": "backup_aware"},
                ),
            ),
            moments=(LINK_DOWN, FIRST_REINJECTION, DELIVERED),
            main_view="subflows",
        ),
        Scenario(
            name="hetero-paths",
            description="20 Mbit/s at 10 ms plus 20 Mbit/s at 200 ms one-way, modest receive buffer: data on the slow path holds the window, so the fast subflow sends it again (opportunistic retransmission) and the slow one's window is halved (penalisation).",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 200.0), "bw_mbps": (20.0, 20.0), "queue_packets": 200},
            transfers=(
                MptcpTransfer(
                    size_bytes=16 * MIB,
                    # ECF (on by default) would keep the data off the slow path altogether here, and there
                    # would be nothing to retransmit opportunistically: the lesson is the older remedy
                    client={"path_manager": "paired", "slow_path_check": False},
                    server={"path_manager": "paired", "receive_buffer_bytes": 1 * MIB},
                ),
            ),
            moments=(JOINED, FIRST_REINJECTION, DELIVERED),
            main_view="subflows",
        ),
        Scenario(
            name="mptcp-checksum-tamper",
            description="DSS checksums on, and r2 flips a payload byte: the subflow on path B is reset, its data reinjected; nothing corrupted is delivered.",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0), "queue_packets": 200},
            middleboxes=(("r2", lambda: FlipPayloadBytes(dst_port=5001, nth=200)),),
            transfers=(MptcpTransfer(size_bytes=8 * MIB, client={"checksum": True, "path_manager": "paired"}),),
            moments=(SUBFLOW_RESET, FIRST_REINJECTION, DELIVERED),
            main_view="subflows",
            expects=Expects(
                errors=(("mptcp", "DSS checksum failed"),),
                summary="the DSS checksum catches the flipped byte: subflow reset, data reinjected, nothing corrupted",
            ),
        ),
        Scenario(
            name="mptcp-mpfail-fallback",
            description="DSS checksums on one path, and r1 flips a payload byte once: MP_FAIL, the sender's infinite mapping over the data sent again, then plain TCP, byte-exact.",
            topology="single-path",
            topology_params={"delay_ms": 20.0, "bw_mbps": 20.0},
            middleboxes=(("r1", lambda: FlipPayloadBytes(dst_port=5001, nth=300)),),
            transfers=(MptcpTransfer(size_bytes=8 * MIB, client={"checksum": True}),),
            moments=(MP_FAIL, FALLBACK, DELIVERED),
            main_view="subflows",
            expects=Expects(
                errors=(("mptcp", "DSS checksum failed"),),
                summary="MP_FAIL, then plain TCP: the damaged data is sent again and every byte arrives intact",
            ),
        ),
        replace(
            shared_bottleneck_scenario(bw_mbps=10.0, queue_packets=100, competitor="newreno", size_bytes=12 * MIB),
            description=(
                "One MPTCP connection (LIA, two subflows) and one NewReno TCP flow share a 10 Mbit/s bottleneck "
                "(100-packet queue, 22 ms base RTT): coupled congestion control takes one flow's share, not two."
            ),
            moments=(JOINED, DELIVERED),
        ),
    )
}
