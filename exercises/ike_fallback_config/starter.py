"""ike_fallback_config: get through a UDP-blocking hotspot fast (RFC 9329, RFC 7296 §2.1).

initiator_config() returns h1's transport settings: fields of
lab.ike.config.IkeConfig. These are the defaults: UDP 500 first, retransmitted
for 2 s, then TCP 4500, sequentially. Through a hotspot that drops UDP that
takes over 2 s, and where TCP 4500 is blocked too it never gets through.
Change them, then run:

    tcplab exercise check ike_fallback_config
"""

from __future__ import annotations


def initiator_config() -> dict:
    return {
        "transport": "fallback",  # "udp", "tcp" or "fallback" (UDP, then TCP)
        "fallback": "sequential",  # "sequential" or "racing"
        "udp_ports": [500],  # 500 and/or 4500
        "tcp_ports": [4500],  # tried in this order
        "udp_timeout_s": 2.0,  # how long each UDP port is tried before the next step
        "race_head_start_s": 0.02,  # racing: how long UDP goes alone before TCP starts
        "tcp_connect_timeout_s": 3.0,  # how long a TCP connect may take before the next port
        "retransmit_s": 0.5,  # first UDP retransmission (then doubling)
        "retransmit_tries": 5,
    }
