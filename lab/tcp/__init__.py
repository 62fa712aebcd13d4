"""A sans-I/O TCP endpoint (RFC 9293 with RFC 7323, 2018, 6675, 6298, 5681, 9438).

``connection`` is the endpoint (states, input, timers), with its sending half
in ``segments`` (headers, options, what to send next) and its loss recovery
in ``recovery`` (scoreboard, SACK, RACK-TLP, the RTO); ``state`` the table of
transitions, ``congestion`` NewReno and CUBIC, ``events`` what its user
reacts to. Extensions ride on a connection through ``extension``
(TcpExtension: MPTCP subflows, TCP-ENO); protocols made of several
connections plug into a host stack through ``group`` (GroupHook,
ConnectionGroup). TCP imports none of them.
"""

from lab.tcp.config import TcpConfig
from lab.tcp.connection import TcpConnection
from lab.tcp.events import (
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    StreamEnded,
    TcpEvent,
)
from lab.tcp.extension import SegmentRole, TcpExtension
from lab.tcp.state import TcpState

__all__ = [
    "ConnectionEstablished",
    "ConnectionTerminated",
    "DataReceived",
    "SegmentRole",
    "StreamEnded",
    "TcpConfig",
    "TcpConnection",
    "TcpEvent",
    "TcpExtension",
    "TcpState",
]
