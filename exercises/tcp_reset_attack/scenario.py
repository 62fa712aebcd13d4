"""The run for tcp_reset_attack: a slow transfer an attacker on h2's link tries to reset.

``single-path`` at 5 Mbit/s, 20 ms one-way, no loss; h1 sends 2 MiB to h2
(about 3.5 s). At ``SNIFF_AT`` the grader pauses the simulation and hands the
attendee's ``attack()`` the last packets captured on h2's interface; the
packets ``attack()`` returns are injected at h2 (``lab.inject``: they leave
h2-eth0 towards h1, bypassing h2's stack) one at a time, ``SPACING_S`` apart.
"""

from __future__ import annotations

from lab.pcap import read_pcap
from lab.scenario import Scenario, Transfer

SEED = 3
SNIFF_AT = 1.0
SPACING_S = 0.1
SNIFFED_PACKETS = 40
ATTACKER = "h2"
SNIFF_INTERFACE = "h2-eth0"
VICTIM = "h1"

SCENARIO = Scenario(
    name="reset-attack",
    description="h1 sends 2 MiB to h2 over a 5 Mbit/s path; an attacker on h2's link forges resets.",
    topology="single-path",
    topology_params={"bw_mbps": 5.0},
    transfers=(Transfer(size_bytes=2 * 1024 * 1024),),
)


def sniff(net: object, count: int = SNIFFED_PACKETS) -> list[bytes]:
    """The last ``count`` IP packets captured so far on h2's interface (both directions)."""
    iface = net.interfaces[SNIFF_INTERFACE]
    iface.pcap.flush()
    return [packet for _t, packet in read_pcap(iface.pcap.path)][-count:]
