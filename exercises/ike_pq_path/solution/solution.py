"""ike_pq_path, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations


def predictions() -> dict:
    return {
        "open": {"transport": "udp", "time": "rtts"},  # IP fragments of IKE_AUTH pass and are reassembled
        # IKE_SA_INIT fits and wins UDP; IKE_AUTH (or IKE_INTERMEDIATE) dies as dropped fragments
        "no-fragments": {"transport": "tcp", "time": "retransmissions"},
        # IKE_INTERMEDIATE with the ML-KEM-768 share is 1,281 bytes on the wire: one over the limit
        "small-udp": {"transport": "tcp", "time": "retransmissions"},
        "udp-blocked": {"transport": "tcp", "time": "udp-timeout"},  # IKE_SA_INIT itself never answered
    }


def initiator_config() -> dict:
    return {
        "transport": "fallback",  # UDP stays first: it works on the open network
        "fallback": "racing",  # UDP blocked: TCP after a short head start, not after the UDP timeout
        "fragmentation": True,  # RFC 7383: big encrypted messages as fragments that each fit
        "path_mtu_bytes": 1280,  # fragments small enough for the small-udp network too
        "oversize_udp": "send",
        "udp_timeout_s": 2.0,
        "race_head_start_s": 0.02,
        "retransmit_s": 0.5,
        "retransmit_tries": 5,
    }
