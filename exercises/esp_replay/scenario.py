"""The run for esp_replay: an IPsec tunnel an attacker on r1 replays packets into.

``single-path`` (h1 ─ r1 ─ h2, 20 ms one-way) at 2 Mbit/s with room for
400 packets in each queue. h1 starts an IKE session to h2 at t = 0 (IKEv2
over UDP, ESP in UDP on port 4500, AES-GCM, the default 64-packet replay
window); once its Child SA is up, h1 sends 128 KiB through the tunnel,
then h2 answers with 128 KiB of its own, SHA-256 checked. At ``SNIFF_AT``
the grader pauses the simulation and hands the attendee's ``replay()``
everything captured on ``SNIFF_INTERFACE`` (r1's side of the h2 link, both
directions) so far; the packets ``replay()`` returns are injected at r1
(``lab.scenario.inject``: they leave r1 towards their destination, bypassing its
routing of real traffic) one at a time, ``SPACING_S`` apart.

On Mininet (``--backend mininet``) the run cannot stand still while
``replay()`` runs: the path runs at ``MININET_BW_MBPS`` there, the capture
is taken at ``MININET_SNIFF_AT`` (h1 has sent more than a window's worth by
then) and the copies follow the return of ``replay()``,
``MININET_SPACING_S`` apart, while h1's and then h2's streams still flow.

The grader's own copy of this file is the one that runs; editing yours
changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from lab.pcap import read_pcap
from lab.scenario import Scenario
from lab.scenario.ike import IkeSession

SEED = 4303
SNIFF_AT = 0.5
SPACING_S = 0.05
ATTACKER = "r1"
SNIFF_INTERFACE = "r1-eth1"
RECEIVER = "h2"  # the SA whose window is tested: h1 -> h2
DATA_BYTES = 128 * 1024
NAT_T_PORT = 4500  # ESP in UDP (RFC 3948), next to IKE behind the non-ESP marker

SCENARIO = Scenario(
    name="esp-replay",
    description="An IKE/ESP tunnel from h1 to h2 over a 2 Mbit/s path; an attacker on r1 replays ESP packets.",
    topology="single-path",
    topology_params={"bw_mbps": 2.0, "queue_packets": 400},
    transfers=(IkeSession(name="ike", data_bytes=DATA_BYTES),),
    time_limit_s=10.0,
)


def sniff(net: object) -> list[bytes]:
    """Every IP packet captured so far on r1's interface towards h2 (both directions)."""
    iface = net.interfaces[SNIFF_INTERFACE]
    iface.pcap.flush()
    return [packet for _t, packet in read_pcap(iface.pcap.path)]


MININET_BW_MBPS = 0.1  # h1 sends a window (64 packets) in about 7 s: replay() may take that long on a loaded machine
MININET_SNIFF_AT = 2.0
MININET_SPACING_S = 0.3
MININET_SCENARIO = replace(
    SCENARIO,
    description=f"An IKE/ESP tunnel from h1 to h2 over a {MININET_BW_MBPS:g} Mbit/s path; an attacker on r1 replays ESP.",
    topology_params={**SCENARIO.topology_params, "bw_mbps": MININET_BW_MBPS},
    time_limit_s=40.0,  # both streams take about 22 s at MININET_BW_MBPS
)


def scenario_for(backend: str) -> Scenario:
    """The run the grader uses on ``backend`` (``sim`` or ``mininet``)."""
    return MININET_SCENARIO if backend == "mininet" else SCENARIO


def sniff_at(backend: str) -> float:
    """When ``replay()`` gets the capture on ``backend``."""
    return MININET_SNIFF_AT if backend == "mininet" else SNIFF_AT


def spacing_s(backend: str) -> float:
    """Seconds between two copies on ``backend``."""
    return MININET_SPACING_S if backend == "mininet" else SPACING_S
