"""eno_mandatory: make h1 refuse to send its secret in the clear (RFC 8547 §4.6).

r1 strips the ENO option from SYNs. With the settings below, h1 notices that
the SYN-ACK carries no ENO option, falls back to plain TCP and sends its 64
KiB secret in the clear. client_config() returns h1's ENO settings: the
fields of lab.eno.extension.EnoConfig (policy, teps, application_aware,
require_application_aware, experimental_encoding). Change them so that
nothing crosses r1 in the clear, answer the question in ANSWERS, then run:

    tcplab exercise check eno_mandatory
"""

from __future__ import annotations


def client_config() -> dict:
    return {
        "policy": "opportunistic",  # encrypt when the peer can, otherwise carry on as plain TCP
        "teps": [0x23, 0x21],  # tcpcrypt with X25519, then with P-256
    }


ANSWERS = {
    # the reason h1 records (eno state_updated / error) when it refuses the connection
    "refusal_reason": None,
}


def answers() -> dict:
    return ANSWERS
