"""The run for tcp_reset_attack: a slow transfer an attacker on h2's link tries to reset.

``single-path`` at 5 Mbit/s, 20 ms one-way, no loss; h1 sends 2 MiB to h2
(about 3.5 s). At ``SNIFF_AT`` the grader pauses the simulation and hands the
attendee's ``attack()`` the last packets captured on h2's interface; the
packets ``attack()`` returns are injected at h2 (``lab.scenario.inject``: they leave
h2-eth0 towards h1, bypassing h2's stack) one at a time, ``SPACING_S`` apart.

On Mininet (``--backend mininet``) the run cannot stand still: ``attack()``
gets what h2-eth0's live capture holds at ``SNIFF_AT`` while the transfer
goes on, and its packets follow its return ``MININET_SPACING_S`` apart. The
path runs at ``MININET_BW_MBPS`` there, so that the transfer (about 17 s) is
still under way when they arrive, however long ``attack()`` takes to start.
"""

from __future__ import annotations

from dataclasses import replace

from lab.pcap import read_pcap
from lab.scenario import Scenario, Transfer

SEED = 3
SNIFF_AT = 1.0
SPACING_S = 0.1
MININET_BW_MBPS = 1.0  # the transfer (about 17 s) outlasts attack() on a loaded machine
MININET_SPACING_S = 0.3  # real processes: the grader's poll (50 ms) and the path's RTT fit between two packets
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


MININET_SCENARIO = replace(
    SCENARIO,
    description=f"h1 sends 2 MiB to h2 over a {MININET_BW_MBPS:g} Mbit/s path; an attacker on h2's link forges resets.",
    topology_params={"bw_mbps": MININET_BW_MBPS},
)


def scenario_for(backend: str) -> Scenario:
    """The run the grader uses on ``backend`` (``sim`` or ``mininet``)."""
    return MININET_SCENARIO if backend == "mininet" else SCENARIO


def spacing_s(backend: str) -> float:
    """Seconds between two forged packets on ``backend`` (``sim`` or ``mininet``)."""
    return MININET_SPACING_S if backend == "mininet" else SPACING_S


def sniff(net: object, count: int = SNIFFED_PACKETS) -> list[bytes]:
    """The last ``count`` IP packets captured so far on h2's interface (both directions)."""
    iface = net.interfaces[SNIFF_INTERFACE]
    iface.pcap.flush()
    return [packet for _t, packet in read_pcap(iface.pcap.path)][-count:]
