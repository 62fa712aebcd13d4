"""mptcp_fallback_fix reference solution.

h1's SYN left with MP_CAPABLE (option 30) but r1 turned it into NOPs, so h2
saw a plain SYN: it answers as plain TCP ("no MP_CAPABLE in the SYN"), and
h1, seeing a SYN/ACK without MP_CAPABLE, falls back too (RFC 8684 §3.1).
Option 30 must cross r1; 253 and 254 stay stripped.
"""

from __future__ import annotations

ANSWERS = {
    "middlebox": "r1",
    "stripped_segment": "SYN",
    "reason_h2": "no MP_CAPABLE in the SYN",
    "reason_h1": "no MP_CAPABLE in the SYN/ACK",
}

FIREWALL = {"kinds": [253, 254], "when": "all"}


def answers() -> dict:
    return ANSWERS


def firewall() -> dict:
    return FIREWALL
