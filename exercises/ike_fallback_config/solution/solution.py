"""ike_fallback_config, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations


def initiator_config() -> dict:
    return {
        "transport": "fallback",  # UDP stays first choice: it wins on an open path
        "fallback": "racing",  # TCP starts after a short head start instead of after the UDP timeout
        "udp_ports": [500],
        "tcp_ports": [4500, 443],  # the standard port first (RFC 9329 §2), then 443
        "udp_timeout_s": 2.0,
        "race_head_start_s": 0.02,
        "tcp_connect_timeout_s": 0.25,  # about six RTTs: a blocked port is given up quickly
        "retransmit_s": 0.5,
        "retransmit_tries": 5,
    }
