"""TCP connection states and the table of allowed transitions (RFC 9293 3.3.2)."""

from __future__ import annotations

import enum


class TcpState(enum.Enum):
    # identity hashing: states are looked up in sets on the per-segment path
    __hash__ = object.__hash__

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


class Input(enum.Enum):
    ACTIVE_OPEN = "active open"
    PASSIVE_OPEN = "passive open"
    RECV_SYN = "SYN received"
    RECV_SYNACK = "SYN/ACK received"
    RECV_ACK_OF_SYN = "ACK of SYN received"
    APP_CLOSE = "close"
    RECV_FIN = "FIN received"
    RECV_ACK_OF_FIN = "ACK of FIN received"
    TIMEWAIT_EXPIRED = "2MSL expired"
    RECV_RST = "RST received"
    ABORT = "abort"


S = TcpState
TRANSITIONS: dict[tuple[TcpState, Input], TcpState] = {
    (S.CLOSED, Input.ACTIVE_OPEN): S.SYN_SENT,
    (S.CLOSED, Input.PASSIVE_OPEN): S.LISTEN,
    (S.LISTEN, Input.RECV_SYN): S.SYN_RECEIVED,
    (S.LISTEN, Input.APP_CLOSE): S.CLOSED,
    (S.SYN_SENT, Input.RECV_SYNACK): S.ESTABLISHED,
    (S.SYN_SENT, Input.RECV_SYN): S.SYN_RECEIVED,  # simultaneous open
    (S.SYN_SENT, Input.APP_CLOSE): S.CLOSED,
    (S.SYN_RECEIVED, Input.RECV_ACK_OF_SYN): S.ESTABLISHED,
    (S.SYN_RECEIVED, Input.APP_CLOSE): S.FIN_WAIT_1,
    (S.SYN_RECEIVED, Input.RECV_FIN): S.CLOSE_WAIT,
    (S.ESTABLISHED, Input.APP_CLOSE): S.FIN_WAIT_1,
    (S.ESTABLISHED, Input.RECV_FIN): S.CLOSE_WAIT,
    (S.FIN_WAIT_1, Input.RECV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, Input.RECV_FIN): S.CLOSING,
    (S.FIN_WAIT_2, Input.RECV_FIN): S.TIME_WAIT,
    (S.CLOSING, Input.RECV_ACK_OF_FIN): S.TIME_WAIT,
    (S.CLOSE_WAIT, Input.APP_CLOSE): S.LAST_ACK,
    (S.LAST_ACK, Input.RECV_ACK_OF_FIN): S.CLOSED,
    (S.TIME_WAIT, Input.TIMEWAIT_EXPIRED): S.CLOSED,
}
for _state in S:
    if _state not in (S.CLOSED, S.LISTEN):
        TRANSITIONS[(_state, Input.RECV_RST)] = S.CLOSED
        TRANSITIONS[(_state, Input.ABORT)] = S.CLOSED
TRANSITIONS[(S.LISTEN, Input.ABORT)] = S.CLOSED

SYNCHRONIZED = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT})
CAN_SEND = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})
CAN_RECEIVE_DATA = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
