"""eno_mandatory, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations


def client_config() -> dict:
    return {
        "policy": "mandatory",  # no ENO agreement, no connection: reset rather than send in the clear
        "teps": [0x23, 0x21],
    }


ANSWERS = {
    # h1's SYN-ACK arrived without an ENO option (r1 overwrote it with NOPs)
    "refusal_reason": "no_eno_option",
}


def answers() -> dict:
    return ANSWERS
