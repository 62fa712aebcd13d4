"""mptcp_fallback_fix: why did this MPTCP connection fall back to plain TCP, and how do you fix r1?

Run the broken scenario and read its trace first:

    tcplab exercise check mptcp_fallback_fix --json     (or the `option-stripper` scenario)

Fill in ANSWERS from the trace, then change FIREWALL (r1's settings) so that
MPTCP survives while r1 still enforces the site policy (253 and 254 never
cross it). Then run:

    tcplab exercise check mptcp_fallback_fix
"""

from __future__ import annotations

ANSWERS = {
    # the node whose middlebox removed the MPTCP option
    "middlebox": None,
    # the first segment that reached its receiver without option 30: "SYN", "SYN/ACK", "ACK" or "data"
    "stripped_segment": None,
    # the fallback reason h2 recorded (its mptcp state_updated record with "fallback"), word for word
    "reason_h2": None,
    # the fallback reason h1 recorded, word for word
    "reason_h1": None,
}

# r1's firewall: StripTcpOptions(kinds, when=...) — when is "all", "syn" or "after_handshake"
FIREWALL = {"kinds": [30, 253, 254], "when": "all"}


def answers() -> dict:
    return ANSWERS


def firewall() -> dict:
    return FIREWALL
