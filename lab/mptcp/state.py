"""Subflow states of a Multipath TCP connection and the table of allowed transitions.

A subflow's TCP connection has its own states (``lab.tcp.state``); these are
the MPTCP layer's view of it (RFC 8684 §3.1, §3.2): the handshake, a joining
client's wait for its third ACK to be acknowledged (§3.2: the subflow is not
usable before), established, closing, closed. Every change goes through
``MptcpConnection._set_subflow_state``, which looks the input up here and
records ``state_updated``.
"""

from __future__ import annotations

import enum


class Role:
    CLIENT = "client"
    SERVER = "server"


class SubflowState(str, enum.Enum):
    """Values are the names trace records carry (``"from"``/``"to"`` of ``state_updated``)."""

    SYN = "SYN"  # handshake in progress
    PRE_ESTABLISHED = "PRE_ESTABLISHED"  # MP_JOIN: third ACK sent, waiting for it to be acknowledged
    ESTABLISHED = "ESTABLISHED"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"

    def __str__(self) -> str:
        return self.value


class SubflowInput(enum.Enum):
    HANDSHAKE_COMPLETED = "handshake completed"  # MP_CAPABLE done, or a passive join's third ACK verified
    JOIN_SYNACK_VERIFIED = "MP_JOIN SYN/ACK verified"  # an active join: HMAC checked, third ACK sent
    JOIN_ACK_ACKNOWLEDGED = "third ACK acknowledged"  # an active join's third ACK reached the peer
    CLOSE = "close"  # we close the subflow (FIN)
    TERMINATED = "terminated"  # its TCP connection is gone (closed, reset, timed out)


S = SubflowState
I = SubflowInput  # noqa: E741
TRANSITIONS: dict[tuple[SubflowState, SubflowInput], SubflowState] = {
    (S.SYN, I.HANDSHAKE_COMPLETED): S.ESTABLISHED,
    (S.SYN, I.JOIN_SYNACK_VERIFIED): S.PRE_ESTABLISHED,
    (S.PRE_ESTABLISHED, I.JOIN_ACK_ACKNOWLEDGED): S.ESTABLISHED,
    (S.SYN, I.CLOSE): S.CLOSING,
    (S.PRE_ESTABLISHED, I.CLOSE): S.CLOSING,
    (S.ESTABLISHED, I.CLOSE): S.CLOSING,
}
for _state in S:
    if _state is not S.CLOSED:
        TRANSITIONS[(_state, I.TERMINATED)] = S.CLOSED
del _state
