"""ike_pq_path: get a hybrid post-quantum IKE SA through four networks (RFC 9370, RFC 7383, RFC 9329).

First predict, then measure. predictions() says, for the DEFAULT settings
(those initiator_config() returns below, untouched), how each network ends:
the transport the IKE SA is established over ("udp", "tcp" or "none") and how
long it takes, one of:

    "rtts"             a few round trips (well under 0.5 s)
    "udp-timeout"      the UDP attempt's timeout (udp_timeout_s) and then a few round trips
    "retransmissions"  every retransmission of a request (over 30 s), then TCP
    "never"            no IKE SA within the run's 60 s

Then change initiator_config() so the IKE SA comes up within 6 RTTs on every
network, UDP still used where UDP works. Run:

    tcplab exercise check ike_pq_path
"""

from __future__ import annotations


def predictions() -> dict:
    return {
        "open": {"transport": None, "time": None},
        "no-fragments": {"transport": None, "time": None},
        "small-udp": {"transport": None, "time": None},
        "udp-blocked": {"transport": None, "time": None},
    }


def initiator_config() -> dict:
    return {
        "transport": "fallback",  # "udp", "tcp" or "fallback" (UDP, then TCP)
        "fallback": "sequential",  # "sequential" or "racing"
        "fragmentation": False,  # offer IKE fragmentation (RFC 7383)
        "path_mtu_bytes": 1500,  # the path MTU IKE fragments are sized for
        "oversize_udp": "send",  # "send": let IP fragment a big message; "tcp": go to TCP instead
        "udp_timeout_s": 2.0,  # how long IKE_SA_INIT is tried over UDP before TCP
        "race_head_start_s": 0.02,  # racing: how long UDP goes alone before TCP starts
        "retransmit_s": 0.5,  # first retransmission of a request (then doubling)
        "retransmit_tries": 5,
    }
