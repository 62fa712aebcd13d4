"""ike_fallback_timeline, reference solution (not handed out by `tcplab exercise start`).

Read from capture.txt: UDP attempts at 2.828, 3.830, 4.831, 6.833 (gaps 1, 1,
2 s: the retransmission interval doubles), the SYN to 4500 at
10.838. After the 6-byte prefix the next payload starts with the four zero
bytes of the non-ESP marker: the 2-byte Length of RFC 9329 §3 is missing.
"""

from __future__ import annotations

ANSWERS = {
    "udp_attempts": 4,
    "udp_gaps_s": [1.002, 1.001, 2.002],
    "tcp_after_s": 8.010,
    "wait_after_last_udp_s": 4.005,
    "tcp_port": 4500,
    "first_tcp_payload": "IKETCP",
    "missing_field": "length",
}


def answers() -> dict:
    return ANSWERS
