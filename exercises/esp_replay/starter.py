"""esp_replay: replay captured ESP packets into a running IPsec tunnel (RFC 4303 §3.4.3).

You control r1, on the path between h1 and h2, while h1 sends data to h2
through an ESP tunnel (ESP in UDP, port 4500). ``replay(sniffed)`` gets
every packet r1 has seen on its h2 side so far (raw IP packets; parse them
with ``IP(raw)``). You cannot decrypt or forge a packet (you have no keys),
but you can send copies. Return three packets for h2, in this order:

1. an exact copy of the newest ESP packet h1 sent to h2 (a replay),
2. an exact copy of an ESP packet h2 received so long ago that its
   sequence number has left h2's 64-packet replay window,
3. a copy of the newest ESP packet with its sequence number moved right of
   the window (so the window would take it as new).

They are injected at r1, 0.05 s apart. Then run:

    tcplab exercise check esp_replay

and look at h2's esp segment_dropped records in the trace (``--json`` shows
the details).
"""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.packet import Raw


def esp_header(packet: IP) -> tuple[int, int]:
    """(SPI, sequence number) of an ESP-in-UDP packet: the first 8 bytes of the UDP payload."""
    payload = bytes(packet[UDP].payload)
    return int.from_bytes(payload[0:4], "big"), int.from_bytes(payload[4:8], "big")


def replay(sniffed: list[bytes]) -> list:
    packets = [IP(raw) for raw in sniffed]
    # ESP in UDP: port 4500, and not the four zero bytes (non-ESP marker) that mark an IKE message
    esp = [p for p in packets if UDP in p and p[UDP].dport == 4500 and esp_header(p)[0] != 0]
    newest = esp[-1]
    # TODO: is the one before the newest really outside a 64-packet window?
    old = esp[-2]
    # TODO: rebuild the packet with a sequence number right of the window; this one is unchanged
    payload = bytes(newest[UDP].payload)
    moved = IP(src=newest[IP].src, dst=newest[IP].dst) / UDP(sport=newest[UDP].sport, dport=4500) / Raw(payload)
    return [newest, old, moved]
