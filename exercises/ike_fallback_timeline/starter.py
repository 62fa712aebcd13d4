"""ike_fallback_timeline: when and how an IKE initiator falls back from UDP to TCP.

capture.txt lists the IPv4 packets of capture.pcap (libreswan 4.10, UDP
blocked at the responder). Fill in ANSWERS (times in seconds, to the
millisecond), then run:

    tcplab exercise check ike_fallback_timeline
"""

from __future__ import annotations

ANSWERS = {
    # how many IKE_SA_INIT requests the initiator sent over UDP
    "udp_attempts": None,
    # the time between consecutive UDP attempts, as a list of seconds, e.g. [0.5, 0.5]
    "udp_gaps_s": None,
    # seconds from the first UDP attempt to the TCP SYN
    "tcp_after_s": None,
    # seconds from the last UDP attempt to the TCP SYN
    "wait_after_last_udp_s": None,
    # the TCP port the initiator connects to
    "tcp_port": None,
    # the first bytes the initiator sends on the TCP connection, as ASCII text
    "first_tcp_payload": None,
    # this capture's TCP framing breaks RFC 9329: which field is missing? "prefix", "length" or "marker"
    "missing_field": None,
}


def answers() -> dict:
    return ANSWERS
