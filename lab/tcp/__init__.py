"""A sans-I/O TCP endpoint (RFC 9293 with RFC 7323, 2018, 6675, 6298, 5681, 9438)."""

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
