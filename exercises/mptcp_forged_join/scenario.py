"""The run for mptcp_forged_join: an attacker on h1's path-B link tries to join h1's MPTCP connection.

``two-paths`` at 10 Mbit/s per path (10 ms and 40 ms one-way); h1 sends
2 MiB to h2 over MPTCP with one subflow (no joins of its own, so every
MP_JOIN h2 sees is yours). At ``SNIFF_AT`` the grader pauses the run and
hands ``attack()`` the first packets captured on h1's path-A interface (the
MP_CAPABLE handshake is among them). The SYNs ``attack()`` returns are
injected on h1's path-B link (``ATTACK_INTERFACE``), ``SPACING_S`` apart,
towards h2's path-B address. At ``COMPLETE_AT`` the grader hands
``complete()`` the SYN/ACKs h2 sent to ``SPOOFED`` (an unused address:
r2 has no route to it and drops them, so nobody resets the half-open
joins), as captured on h2's path-B link, and injects the ACKs it returns,
``SPACING_S`` apart.

On Mininet (``--backend mininet``) the run cannot stand still: each step
works on what the live captures hold when it comes, and its packets follow
the return of ``attack()`` or ``complete()``, ``MININET_SPACING_S`` apart
(``complete()`` comes ``MININET_ANSWER_S`` after the last SYN). Both paths
run at ``MININET_BW_MBPS`` there, so that h1's transfer (about 17 s) is still
under way when the last ACK arrives.

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from lab.pcap import read_pcap
from lab.scenario import Scenario
from lab.scenario.mptcp import MptcpTransfer

SEED = 4
SNIFF_AT = 0.3
SPACING_S = 0.1
SYNS = 3
ACKS = 2
COMPLETE_AT = SNIFF_AT + SPACING_S * SYNS + 0.15  # the SYN/ACKs are back (path B RTT 80 ms)
SNIFFED_PACKETS = 12
MININET_SPACING_S = 0.3
MININET_ANSWER_S = 0.4  # path B's 80 ms RTT and h2's endpoint process, with room to spare
MININET_BW_MBPS = 1.0  # the transfer (about 17 s) outlasts attack() and complete() on a loaded machine
ATTACKER = "h1"
ATTACK_INTERFACE = "h1-eth1"  # path B
SNIFF_INTERFACE = "h1-eth0"  # path A: the initial subflow
SYNACK_INTERFACE = "h2-eth1"  # path B at h2: where the attacker sees h2's answers
SPOOFED = "10.0.3.7"  # in h1's path-B subnet, owned by nobody
SERVER = "h2"
SERVER_B = "10.0.4.2"
PORT = 5001

SCENARIO = Scenario(
    name="mptcp-forged-join",
    description="h1 sends 2 MiB to h2 over MPTCP; forged MP_JOINs arrive at h2 on path B.",
    topology="two-paths",
    topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (10.0, 10.0), "queue_packets": 100},
    transfers=(
        MptcpTransfer(
            size_bytes=2 * 1024 * 1024, client={"join": False, "announce": False}, server={"announce": False}
        ),
    ),
    time_limit_s=30.0,
)


MININET_SCENARIO = replace(
    SCENARIO,
    description=f"h1 sends 2 MiB to h2 over MPTCP at {MININET_BW_MBPS:g} Mbit/s per path; forged MP_JOINs arrive at h2.",
    topology_params={**SCENARIO.topology_params, "bw_mbps": (MININET_BW_MBPS, MININET_BW_MBPS)},
)


def scenario_for(backend: str) -> Scenario:
    """The run the grader uses on ``backend`` (``sim`` or ``mininet``)."""
    return MININET_SCENARIO if backend == "mininet" else SCENARIO


def spacing_s(backend: str) -> float:
    """Seconds between two forged packets on ``backend``."""
    return MININET_SPACING_S if backend == "mininet" else SPACING_S


def captured(net: object, interface: str) -> list[bytes]:
    """The IP packets captured so far on ``interface`` (both directions)."""
    iface = net.interfaces[interface]
    iface.pcap.flush()
    return [packet for _t, packet in read_pcap(iface.pcap.path)]


def sniff(net: object, count: int = SNIFFED_PACKETS) -> list[bytes]:
    """The first ``count`` packets on h1's path-A interface."""
    return captured(net, SNIFF_INTERFACE)[:count]


def syn_acks(net: object) -> list[bytes]:
    """The SYN/ACKs h2 sent to the spoofed address, as captured on h2's path-B link."""
    from lab.scenario.inject import summary

    out = []
    for packet in captured(net, SYNACK_INTERFACE):
        s = summary(packet)
        if s.get("dst") == SPOOFED and s.get("flags") == "SA":
            out.append(packet)
    return out
