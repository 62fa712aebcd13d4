"""esp_replay, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

WINDOW_PACKETS = 64  # RFC 4303 §3.4.3: the default, and what h2 uses


def esp_header(packet: IP) -> tuple[int, int]:
    payload = bytes(packet[UDP].payload)
    return int.from_bytes(payload[0:4], "big"), int.from_bytes(payload[4:8], "big")


def replay(sniffed: list[bytes]) -> list:
    packets = [IP(raw) for raw in sniffed]
    esp = [p for p in packets if UDP in p and p[UDP].dport == 4500 and esp_header(p)[0] != 0]
    newest = esp[-1]
    h1, h2 = newest[IP].src, newest[IP].dst
    to_h2 = [p for p in esp if p[IP].src == h1 and p[IP].dst == h2]
    newest = to_h2[-1]
    _spi, right_edge = esp_header(newest)  # h2 has received at least this much by the time the copies arrive
    old = next(p for p in to_h2 if esp_header(p)[1] <= right_edge - WINDOW_PACKETS)
    payload = bytes(newest[UDP].payload)
    # the sequence number is authenticated (it is in the AAD of AES-GCM, RFC 4106 §5): the ICV no longer fits
    moved_payload = payload[:4] + (right_edge + 1000).to_bytes(4, "big") + payload[8:]
    moved = IP(src=h1, dst=h2) / UDP(sport=newest[UDP].sport, dport=newest[UDP].dport) / Raw(moved_payload)
    return [newest, old, moved]
