"""An IKEv2 endpoint with its transports: UDP 500/4500 and TCP (RFC 9329), with UDP-to-TCP fallback.

The endpoint owns the IKE SAs (``lab.ike.sa``) of one host and carries their
messages and ESP packets; it opens no socket. Its driver (``lab.scenario.ike_driver`` on
the simulator, ``lab.scenario.ike_live`` on kernel sockets) performs the actions it
asks for and feeds back what happened::

    actions_to_send()  ->  UdpSend(local_port, remote, data)   TcpOpen(conn_id, remote)
                           TcpSend(conn_id, data)              TcpClose(conn_id)
    receive_datagram(data, local=, remote=, now=)      tcp_connected(conn_id, local=, remote=, now=)
    tcp_accepted(local=, remote=, now=) -> conn_id     receive_tcp_data(conn_id, data, now=)  (b"" = EOF)
    tcp_failed(conn_id, reason, now=)                  tcp_closed(conn_id, now=)
    handle_timer(now=) / get_timer()                   next_event()

Transports, as RFC 7296 §2.23, RFC 3948 and RFC 9329 have them:

* UDP: IKE_SA_INIT to port 500 without marker; afterwards both ends use
  port 4500, IKE behind the 4-byte non-ESP marker and ESP UDP-encapsulated
  (this endpoint's ESP lives in user space, so it is always encapsulated;
  §2.23 lets an initiator use 4500 "regardless of whether or not there is a
  NAT"). Behind a NAT the initiator sends NAT-keepalives (0xFF).
* TCP: the initiator (TCP Originator) connects, sends ``IKETCP``, then
  length-framed messages (``lab.wire.iketcp``). A bad prefix or an
  unparsable frame closes the connection. When the connection breaks the
  initiator reconnects and carries on with the same IKE SA; the responder
  sends on the connection the latest valid message arrived on.

Fallback (initiator): ``sequential`` tries each UDP port for
``udp_timeout_s`` and then each TCP port, each attempt with a fresh IKE SA
(new SPI and nonce, RFC 9329 §5); ``racing`` starts TCP ``race_head_start_s``
after UDP and keeps whichever completes IKE_SA_INIT first. A UDP attempt
that completed IKE_SA_INIT but then cannot finish (its IKE_INTERMEDIATE or
IKE_AUTH goes unanswered through every retransmission, as on a path that
drops large datagrams or IP fragments, or does not fit the path under
``oversize_udp="tcp"``, lab.ike.policy) starts over on TCP as well.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lab.errors import DecodeError, LocalProtocolError
from lab.esp.sa import EspDropped
from lab.ike.config import IKE_UDP_PORT, NAT_T_PORT, IkeConfig
from lab.ike.events import FallbackToTcp, IkeEvent, IkeSaDeleted, IkeSaEstablished, IkeSaRekeyed, PacketReceived
from lab.ike.sa import ZERO_SPI, Address, IkeSa
from lab.ike.state import IkeSaState
from lab.iketcp import (
    CLOSED_END_OF_STREAM,
    EspPacketReceived,
    IkeMessageReceived,
    IketcpStream,
    Role,
    StreamClosed,
)
from lab.trace import NULL_TRACER, Tracer
from lab.wire.buffer import Buffer
from lab.wire.esp import NEXT_HEADER_IPV4
from lab.wire.ikev2 import (
    COOKIE,
    IKE_SA_INIT,
    INVALID_MAJOR_VERSION,
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    IkeMessage,
    NoncePayload,
    NotifyPayload,
    classify_udp_4500,
    decode_ike_message,
    encode_ike_message,
    pull_ike_header,
)

LAYER = "ike"
COOKIE_VERSION = b"\x00\x01"  # <VersionIDofSecret> (RFC 7296 §2.6)


@dataclass(frozen=True, slots=True)
class UdpSend:
    local_port: int
    remote: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class TcpOpen:
    conn_id: int
    remote: Address


@dataclass(frozen=True, slots=True)
class TcpSend:
    conn_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TcpClose:
    conn_id: int


Action = UdpSend | TcpOpen | TcpSend | TcpClose


@dataclass
class _TcpConn:
    conn_id: int
    stream: IketcpStream | None
    remote: Address
    local: Address | None = None
    state: str = "connecting"  # connecting, open, closed
    sa: IkeSa | None = None
    opened_at: float = 0.0


@dataclass
class _Attempt:
    number: int
    transport: str
    port: int
    started_at: float
    deadline: float | None
    sa: IkeSa | None = None
    conn_id: int | None = None
    done: bool = False


@dataclass
class EspCounters:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    packets_dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "packets_received": self.packets_received,
            "bytes_received": self.bytes_received,
            "packets_dropped": self.packets_dropped,
        }


@dataclass
class _SaPath:
    """Where a responder's SA sends: a TCP connection, or UDP to ``remote`` from ``local_port``."""

    conn_id: int | None = None
    pending: list[bytes] = field(default_factory=list)


class IkeEndpoint:
    """The IKE/ESP side of one host, initiator (``remote_addr`` given) or responder."""

    def __init__(
        self,
        *,
        config: IkeConfig,
        initiator: bool,
        local_addr: str,
        remote_addr: str | None = None,
        rng: random.Random | None = None,
        tracer: Tracer = NULL_TRACER,
        name: str = "",
    ) -> None:
        """``name`` labels this endpoint's own trace records (``session``) when a host runs several."""
        if initiator and not remote_addr:
            raise LocalProtocolError("an initiator needs remote_addr")
        self.config = config
        self.initiator = initiator
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self._rng = rng or random.Random(0)
        self._tracer = tracer
        self.name = name
        self._cookie_secret = config.cookie_secret or self._rng.randbytes(32)
        self._actions: list[Action] = []
        self._events: deque[IkeEvent] = deque()
        self._conns: dict[int, _TcpConn] = {}
        self._next_conn_id = 1
        self.sa: IkeSa | None = None  # initiator: the SA in use (the winning attempt, or what rekeyed it)
        self._retiring: list[IkeSa] = []  # initiator: IKE SAs replaced by a rekey, until their Delete is done
        self._sas: dict[bytes, IkeSa] = {}  # responder: by our own SPI (SPIr, or SPIi of an SA we rekeyed)
        self._half_open: dict[tuple[bytes, str], IkeSa] = {}  # responder: (SPIi, peer address) -> SA
        self._paths: dict[str, _SaPath] = {}
        self._attempts: list[_Attempt] = []
        self._plan: list[tuple[str, int]] = []
        self._race_at: float | None = None
        self._started_at: float | None = None
        self._failed = False
        self._keepalive_at: float | None = None
        self._metrics_at: float | None = None
        self._reconnects = 0
        self._reconnecting: dict[int, IkeSa] = {}
        self._switching: dict[int, IkeSa] = {}  # initiator: TCP opened to move IKE off UDP (separate transports)
        self._esp_udp_check: dict[str, tuple[IkeSa, float]] = {}  # initiator: SA -> when ESP over UDP is given up
        self._last_failure = ""
        self.esp_counters: dict[str, EspCounters] = {"udp": EspCounters(), "tcp": EspCounters()}
        self.established_at: float | None = None

    # --- the user's API --------------------------------------------------------------------------------------

    def connect(self, *, now: float) -> None:
        """Initiator: start the first attempt. Raises LocalProtocolError for a responder or a second call."""
        if not self.initiator or self._started_at is not None:
            raise LocalProtocolError("connect() is for an initiator, once")
        self._started_at = now
        cfg = self.config
        if cfg.transport in ("udp", "fallback"):
            # separate transports: IKE_SA_INIT goes to UDP 4500 (draft-ietf-ipsecme-ikev2-reliable-transport §3.1)
            udp_ports = (NAT_T_PORT,) if cfg.separate_transports else cfg.udp_ports
            self._plan += [("udp", p) for p in udp_ports]
        if cfg.transport in ("tcp", "fallback"):
            self._plan += [("tcp", p) for p in cfg.tcp_ports]
        self._record(
            now,
            "state_updated",
            {
                "event": "connect",
                "transport": cfg.transport,
                "fallback": cfg.fallback,
                "plan": [f"{t}:{p}" for t, p in self._plan],
            },
        )
        if cfg.transport == "fallback" and cfg.fallback == "racing":
            udp_steps = [step for step in self._plan if step[0] == "udp"]
            self._plan = [step for step in self._plan if step[0] == "tcp"]
            self._start_attempt(udp_steps[0], now, deadline=None)
            self._race_at = now + cfg.race_head_start_s
            return
        self._next_attempt(now)

    def send_packet(
        self, data: bytes, *, now: float, next_header: int = NEXT_HEADER_IPV4, sa: IkeSa | None = None
    ) -> None:
        """Send an inner packet through the Child SA (of ``sa``, else the newest established SA).

        Raises LocalProtocolError when there is no Child SA to send on.
        """
        sa = sa or self._current_sa()
        if sa is None:
            raise LocalProtocolError("no established IKE SA with a Child SA")
        child, packet = sa.protect(data, next_header=next_header)
        transport = sa.esp_transport
        counters = self.esp_counters[transport]
        counters.packets_sent += 1
        counters.bytes_sent += len(packet)
        if self._tracer.enabled:
            self._tracer.record(
                now,
                "esp",
                "segment_sent",
                {
                    "spi": f"0x{child.spi_out:08x}",
                    "seq": child.outbound.sent_seq,
                    "length": len(packet),
                    "inner_length": len(data),
                    "transport": transport,
                },
            )
        self._send_esp(sa, packet, now)
        self._watch_esp_udp(sa, now)
        self._arm_metrics(now)

    def rekey_child(self, *, now: float) -> None:
        """CREATE_CHILD_SA for the current Child SA. Raises LocalProtocolError without an established SA."""
        sa = self._current_sa()
        if sa is None:
            raise LocalProtocolError("no established IKE SA")
        sa.rekey_child(now=now)
        self._pump_sa(sa, now)

    def rekey_ike(self, *, now: float) -> None:
        """Rekey the current IKE SA (RFC 7296 §1.3.2). Raises LocalProtocolError without an established SA."""
        sa = self._current_sa(with_child=False)
        if sa is None:
            raise LocalProtocolError("no established IKE SA")
        sa.rekey_ike(now=now)
        self._pump_sa(sa, now)

    def check_liveness(self, *, now: float) -> None:
        """An empty INFORMATIONAL request. Raises LocalProtocolError without an established SA."""
        sa = self._current_sa(with_child=False)
        if sa is None:
            raise LocalProtocolError("no established IKE SA")
        sa.check_liveness(now=now)
        self._pump_sa(sa, now)

    def close(self, *, now: float) -> None:
        """Delete every IKE SA (INFORMATIONAL Delete)."""
        for sa in self._all_sas():
            sa.close(now=now)
            self._pump_sa(sa, now)

    def sas(self) -> list[IkeSa]:
        return self._all_sas()

    def retiring_sas(self) -> list[IkeSa]:
        """IKE SAs replaced by a rekey whose Delete has not completed yet (initiator and responder)."""
        if self.initiator:
            return [sa for sa in self._retiring if not sa.closed]
        return [sa for sa in self._sas.values() if sa.successor is not None and not sa.closed]

    # --- output ---------------------------------------------------------------------------------------------------

    def actions_to_send(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [t for t in (self._race_at, self._keepalive_at, self._metrics_at) if t is not None]
        times += [at for _, at in self._esp_udp_check.values()]
        times += [a.deadline for a in self._attempts if not a.done and a.deadline is not None]
        for sa in self._all_sas(include_attempts=True):
            t = sa.get_timer()
            if t is not None:
                times.append(t)
        return min(times) if times else None

    # --- input: timers ------------------------------------------------------------------------------------------

    def handle_timer(self, *, now: float) -> None:
        if self._race_at is not None and now >= self._race_at:
            self._race_at = None
            if self.sa is None and not self._failed:
                self._next_attempt(now)
        for attempt in self._attempts:
            if not attempt.done and attempt.deadline is not None and now >= attempt.deadline:
                self._attempt_failed(attempt, "timeout", now)
        for sa in self._all_sas(include_attempts=True):
            t = sa.get_timer()
            if t is not None and t <= now:
                sa.handle_timer(now=now)
                self._pump_sa(sa, now)
        for label, (sa, at) in list(self._esp_udp_check.items()):
            if now >= at:
                del self._esp_udp_check[label]
                if not sa.closed and sa.esp_path is not None:
                    timeout = self.config.esp_udp_timeout_s
                    self._esp_to_tcp(sa, f"no ESP came back over UDP within {timeout:g} s of sending", now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._send_nat_keepalive(now)
        if self._metrics_at is not None and now >= self._metrics_at:
            self._metrics_at = None
            self._record_metrics(now)

    # --- input: UDP ----------------------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, *, local: Address, remote: Address, now: float) -> None:
        """One UDP payload that arrived on ``local`` (port 500 or 4500) from ``remote``. Never raises."""
        if local[1] == NAT_T_PORT:
            try:
                kind = classify_udp_4500(data)
            except DecodeError as exc:
                self._record(
                    now, "segment_dropped", {"reason": "unparsable_udp_4500", "detail": str(exc), "transport": "udp"}
                )
                return
            if kind == "keepalive":
                self._record(
                    now, "segment_received", {"kind": "nat_keepalive", "transport": "udp", "remote": _fmt(remote)}
                )
                return
            if kind == "esp":
                self._receive_esp(data, "udp", now)
                return
            data = data[len(NON_ESP_MARKER) :]
        elif local[1] == IKE_UDP_PORT and data[:4] == NON_ESP_MARKER:
            self._record(now, "segment_dropped", {"reason": "non_esp_marker_on_port_500", "transport": "udp"})
            return
        self._receive_ike(data, transport="udp", local=local, remote=remote, conn=None, now=now)

    # --- input: TCP ----------------------------------------------------------------------------------------------

    def tcp_connected(self, conn_id: int, *, local: Address, remote: Address, now: float) -> None:
        """Initiator: the TCP connection asked for by ``TcpOpen`` is established."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.state != "connecting":
            return
        conn.state = "open"
        conn.local = local
        conn.stream = IketcpStream(role=Role.INITIATOR, tracer=self._tracer, conn=self._conn_label(conn_id), now=now)
        self._record_tcp(
            now, conn_id, "connected", local=_fmt(local), remote=_fmt(remote), after_s=round(now - conn.opened_at, 6)
        )
        attempt = next((a for a in self._attempts if a.conn_id == conn_id and not a.done), None)
        reconnected = self._reconnecting.pop(conn_id, None)
        switching = self._switching.pop(conn_id, None)
        if switching is not None and not switching.closed:  # IKE moves to TCP; ESP stays where it is
            if attempt is not None:
                attempt.deadline = None
            conn.sa = switching
            switching.local, switching.remote = local, remote
            self._record(
                now,
                "state_updated",
                {
                    "sa": switching.label,
                    "event": "ike_on_tcp",
                    "conn": self._conn_label(conn_id),
                    "remote": _fmt(remote),
                },
            )
            path = self._paths.get(switching.label)
            if path is not None and path.pending:
                pending, path.pending = path.pending, []
                for message in pending:
                    self._route(switching, message, now)
            self._pump_sa(switching, now)
        elif reconnected is not None and not reconnected.closed:
            if attempt is not None:
                attempt.deadline = None
            conn.sa = reconnected  # a reconnect: same IKE SA, new stream (RFC 9329 §6.1)
            reconnected.local = local
            reconnected.resend_outstanding(now=now)
            path = self._paths.get(reconnected.label)
            if path is not None and path.pending:
                pending, path.pending = path.pending, []
                for message in pending:
                    self._route(reconnected, message, now)
            self._pump_sa(reconnected, now)
        elif attempt is not None:
            attempt.deadline = None
            sa = self._new_sa("tcp", local, remote)
            attempt.sa = sa
            conn.sa = sa
            sa.start(now=now)
            self._pump_sa(sa, now)
        else:
            self._actions.append(TcpClose(conn_id))  # nothing wants it any more
            conn.state = "closed"
            return
        self._flush_stream(conn)

    def tcp_accepted(self, *, local: Address, remote: Address, now: float) -> int:
        """Responder: a connection came in; returns its id for the calls that follow."""
        conn_id = self._new_conn_id()
        conn = _TcpConn(
            conn_id,
            IketcpStream(role=Role.RESPONDER, tracer=self._tracer, conn=self._conn_label(conn_id), now=now),
            remote,
            local,
            "open",
            opened_at=now,
        )
        self._conns[conn_id] = conn
        self._record_tcp(now, conn_id, "accepted", local=_fmt(local), remote=_fmt(remote))
        return conn_id

    def tcp_failed(self, conn_id: int, reason: str, *, now: float, refused: bool = False) -> None:
        """The connection could not be established (refused, timed out) or was reset before it was.

        ``refused``: the peer answered the SYN with a RST (ECONNREFUSED): nothing listens there any
        more, so a reconnecting initiator gives the IKE SA up at once instead of waiting out its
        response timeout.
        """
        conn = self._conns.get(conn_id)
        if conn is None or conn.state == "closed":
            return
        conn.state = "closed"
        self._record_tcp(now, conn_id, "connect_failed", reason=reason, refused=refused)
        self._connection_gone(conn, now, refused=refused, reason=reason)

    def receive_tcp_data(self, conn_id: int, data: bytes, *, now: float) -> None:
        """In-order bytes of connection ``conn_id``; ``b""`` is the end of the peer's stream. Never raises."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.stream is None or conn.state != "open":
            return
        conn.stream.receive_data(data, now=now)
        while (event := conn.stream.next_event()) is not None:
            if isinstance(event, IkeMessageReceived):
                self._receive_ike(
                    event.message, transport="tcp", local=conn.local, remote=conn.remote, conn=conn, now=now
                )
            elif isinstance(event, EspPacketReceived):
                self._receive_esp(event.packet, "tcp", now)
            elif isinstance(event, StreamClosed):
                if event.reason != CLOSED_END_OF_STREAM:  # RFC 9329 §3, §4: close on framing errors
                    self._record_tcp(now, conn_id, "closing", reason=event.reason, detail=event.detail)
                self._actions.append(TcpClose(conn_id))
                conn.state = "closed"
                self._connection_gone(conn, now)
                return
            if conn.state != "open":
                return
        self._flush_stream(conn)

    def tcp_closed(self, conn_id: int, *, now: float) -> None:
        """The connection is gone (reset, or closed after both FINs)."""
        conn = self._conns.get(conn_id)
        if conn is None or conn.state == "closed":
            return
        conn.state = "closed"
        self._record_tcp(now, conn_id, "closed")
        self._connection_gone(conn, now)

    # --- attempts (initiator) -------------------------------------------------------------------------------------------

    def _next_attempt(self, now: float) -> None:
        if not self._plan:
            if not any(not a.done for a in self._attempts) and self.sa is None and not self._failed:
                self._failed = True
                reason = "no transport got through" + (f" (last: {self._last_failure})" if self._last_failure else "")
                self._record(now, "state_updated", {"event": "failed", "reason": reason})
                self._events.append(IkeSaDeleted(reason=reason, error=True))
            return
        step = self._plan.pop(0)
        more_after = bool(self._plan)
        cfg = self.config
        if step[0] == "udp":
            deadline = now + cfg.udp_timeout_s if more_after and cfg.fallback == "sequential" else None
        else:
            deadline = now + cfg.tcp_connect_timeout_s
        self._start_attempt(step, now, deadline=deadline)

    def _start_attempt(self, step: tuple[str, int], now: float, *, deadline: float | None) -> None:
        transport, port = step
        attempt = _Attempt(len(self._attempts) + 1, transport, port, now, deadline)
        self._attempts.append(attempt)
        self._record(
            now, "state_updated", {"attempt": attempt.number, "event": "started", "transport": transport, "port": port}
        )
        if transport == "tcp" and any(a.transport == "udp" for a in self._attempts[:-1]):
            self._events.append(FallbackToTcp(port=port))
        if transport == "udp":
            sa = self._new_sa("udp", (self.local_addr, port), (self.remote_addr, port))
            attempt.sa = sa
            sa.start(now=now)
            self._pump_sa(sa, now)
        else:
            conn_id = self._new_conn_id()
            attempt.conn_id = conn_id
            self._conns[conn_id] = _TcpConn(conn_id, None, (self.remote_addr, port), opened_at=now)
            self._record_tcp(now, conn_id, "connecting", remote=_fmt((self.remote_addr, port)))
            self._actions.append(TcpOpen(conn_id, (self.remote_addr, port)))

    def _attempt_failed(self, attempt: _Attempt, reason: str, now: float) -> None:
        if attempt.done:
            return
        attempt.done = True
        self._record(
            now,
            "state_updated",
            {
                "attempt": attempt.number,
                "event": reason,
                "transport": attempt.transport,
                "port": attempt.port,
                "after_s": round(now - attempt.started_at, 6),
            },
        )
        if attempt.sa is not None:
            attempt.sa.abandon(reason, now=now)
        if attempt.conn_id is not None:
            conn = self._conns.get(attempt.conn_id)
            if conn is not None and conn.state != "closed":
                conn.state = "closed"
                self._actions.append(TcpClose(attempt.conn_id))
        if self.sa is None:
            self._next_attempt(now)

    def _choose_winner(self, sa: IkeSa, now: float) -> None:
        attempt = next((a for a in self._attempts if a.sa is sa), None)
        if attempt is None or self.sa is not None:
            return
        self.sa = sa
        attempt.done = True
        self._race_at = None
        self._plan.clear()
        self._record(
            now,
            "state_updated",
            {
                "attempt": attempt.number,
                "event": "won",
                "sa": sa.label,
                "transport": attempt.transport,
                "port": attempt.port,
                "after_s": round(now - (self._started_at or 0.0), 6),
            },
        )
        for other in self._attempts:
            if not other.done:
                self._attempt_failed(other, "abandoned", now)

    # --- IKE messages in --------------------------------------------------------------------------------------------

    def _receive_ike(
        self, data: bytes, *, transport: str, local: Address | None, remote: Address, conn: _TcpConn | None, now: float
    ) -> None:
        try:
            header = pull_ike_header(Buffer(data))
        except DecodeError as exc:
            self._record(now, "segment_dropped", {"reason": "malformed", "detail": str(exc), "transport": transport})
            return
        if self.initiator:
            sa = self._initiator_sa_for(header.spi_i)
            if sa is None:
                self._record(
                    now,
                    "segment_dropped",
                    {"reason": "unknown_spi", "spi_i": header.spi_i.hex(), "transport": transport},
                )
                return
            before = sa.state
            sa.receive_message(data, now=now)
            if sa.last_received_at == now and transport == "tcp":
                self._reconnects = 0  # the connection works: a later break gets fresh reconnect tries
            if before is IkeSaState.INIT_SENT and sa.state in (IkeSaState.INTERMEDIATE_SENT, IkeSaState.AUTH_SENT):
                self._choose_winner(sa, now)
            self._pump_sa(sa, now)
            return
        if local is None:
            return
        if not header.response and header.exchange_type == IKE_SA_INIT and header.spi_r == ZERO_SPI:
            self._receive_init_request(data, transport=transport, local=local, remote=remote, conn=conn, now=now)
            return
        sa = self._responder_sa_for(header.spi_i, header.spi_r)
        if sa is None:
            self._record(
                now,
                "segment_dropped",
                {
                    "reason": "unknown_spi",
                    "spi_i": header.spi_i.hex(),
                    "spi_r": header.spi_r.hex(),
                    "transport": transport,
                },
            )
            return
        before = (sa.last_received_at, sa.transport, sa.remote)
        sa.receive_message(data, now=now, path=(transport, local, remote))
        if sa.last_received_at == now and before != (now, transport, remote):
            self._move_sa(sa, before, conn, now)  # the latest valid message decides (RFC 9329 §6.1, RFC 7296 §2.23)
        self._pump_sa(sa, now)

    def _initiator_sa_for(self, spi_i: bytes) -> IkeSa | None:
        if self.sa is not None and self.sa.spi_i == spi_i:
            return self.sa
        old = next((sa for sa in self._retiring if sa.spi_i == spi_i and not sa.closed), None)
        if old is not None:
            return old
        return next((a.sa for a in self._attempts if a.sa is not None and a.sa.spi_i == spi_i and not a.done), None)

    def _responder_sa_for(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        sa = self._sas.get(spi_r)
        if sa is not None and sa.spi_i == spi_i:
            return sa
        sa = self._sas.get(spi_i)  # an SA we made by rekeying: its SPIi is ours
        return sa if sa is not None and sa.spi_r == spi_r else None

    def _move_sa(self, sa: IkeSa, before: tuple[float, str, Address], conn: _TcpConn | None, now: float) -> None:
        changed = before[1:] != (sa.transport, sa.remote)
        transport, remote = sa.transport, sa.remote
        path = self._paths.setdefault(sa.label, _SaPath())
        new_conn = conn.conn_id if conn is not None else None
        if path.conn_id != new_conn:
            changed = True
            path.conn_id = new_conn
        if conn is not None:
            conn.sa = sa
        if changed:
            self._record(
                now,
                "state_updated",
                {"sa": sa.label, "event": "path", "transport": transport, "remote": _fmt(remote), "conn": new_conn},
            )
            if sa.separate_transports and before[1] != transport:
                self._record(
                    now,
                    "state_updated",
                    {
                        "event": "transport_switched",
                        "sa": sa.label,
                        "ike_transport": transport,
                        "esp_transport": sa.esp_transport,
                        "esp_remote": _fmt(sa.esp_remote),
                    },
                )
        if path.pending and (conn is None or conn.state == "open"):
            pending, path.pending = path.pending, []
            for msg in pending:
                self._route(sa, msg, now)

    def _receive_init_request(
        self, data: bytes, *, transport: str, local: Address, remote: Address, conn: _TcpConn | None, now: float
    ) -> None:
        try:
            message = decode_ike_message(data)
        except DecodeError as exc:
            self._record(
                now,
                "segment_dropped",
                {"reason": "malformed", "exchange": "IKE_SA_INIT", "detail": str(exc), "transport": transport},
            )
            return  # RFC 7296 §2.21.1: no response to a malformed IKE_SA_INIT
        key = (message.spi_i, remote[0])
        existing = self._half_open.get(key)
        if existing is not None and not existing.closed:
            existing.receive_message(data, now=now)  # a retransmission gets the cached response
            self._pump_sa(existing, now)
            return
        if message.major_version > 2:
            self._reply_stateless(
                message, [NotifyPayload(INVALID_MAJOR_VERSION, bytes((0x20,)))], transport, local, remote, conn, now
            )
            return
        if not self._cookie_ok(message, remote, now):
            nonce = message.payload(NoncePayload)
            cookie = self._cookie(nonce.nonce if nonce else b"", remote[0], message.spi_i)
            self._record(
                now,
                "state_updated",
                {"event": "cookie_requested", "spi_i": message.spi_i.hex(), "half_open": self._half_open_count()},
            )
            self._reply_stateless(message, [NotifyPayload(COOKIE, cookie)], transport, local, remote, conn, now)
            return
        sa = self._new_sa(transport, local, remote)
        self._sas[_own_spi(sa)] = sa
        self._paths[message.spi_i.hex()] = _SaPath(conn.conn_id if conn is not None else None)
        if conn is not None:
            conn.sa = sa
        sa.receive_init_request(data, message, now=now)
        if sa.state is IkeSaState.INIT_RESPONDED:
            self._half_open[key] = sa
        self._pump_sa(sa, now)

    def _half_open_count(self) -> int:
        return sum(1 for sa in self._half_open.values() if sa.state is IkeSaState.INIT_RESPONDED)

    def _cookie(self, ni: bytes, address: str, spi_i: bytes) -> bytes:
        """``<VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)`` (RFC 7296 §2.6)."""
        return COOKIE_VERSION + hashlib.sha256(ni + address.encode() + spi_i + self._cookie_secret).digest()

    def _cookie_ok(self, message: IkeMessage, remote: Address, now: float) -> bool:
        threshold = self.config.cookie_threshold
        if threshold is None or self._half_open_count() < threshold:
            return True
        notifies = message.notifies(COOKIE)
        nonce = message.payload(NoncePayload)
        if not notifies or nonce is None:
            return False
        ok = notifies[0].data == self._cookie(nonce.nonce, remote[0], message.spi_i)
        if not ok:
            self._record(now, "segment_dropped", {"reason": "bad_cookie", "spi_i": message.spi_i.hex()})
        return ok

    def _reply_stateless(
        self,
        request: IkeMessage,
        payloads: list,
        transport: str,
        local: Address,
        remote: Address,
        conn: _TcpConn | None,
        now: float,
    ) -> None:
        out = encode_ike_message(IkeMessage(request.spi_i, ZERO_SPI, IKE_SA_INIT, 0, tuple(payloads), response=True))
        self._record(
            now,
            "segment_sent",
            {
                "sa": request.spi_i.hex(),
                "exchange": "IKE_SA_INIT",
                "message_id": 0,
                "response": True,
                "length": len(out),
                "transport": transport,
                "port": local[1],
                "stateless": True,
            },
        )
        if conn is not None and conn.stream is not None and conn.state == "open":
            conn.stream.send_ike(out, now=now)
            self._flush_stream(conn)
        elif conn is None:
            self._actions.append(UdpSend(local[1], remote, NON_ESP_MARKER + out if local[1] == NAT_T_PORT else out))

    # --- ESP in ---------------------------------------------------------------------------------------------------------

    def _receive_esp(self, packet: bytes, transport: str, now: float) -> None:
        counters = self.esp_counters[transport]
        spi = int.from_bytes(packet[:4], "big")
        sa = next((s for s in self._all_sas() if spi in s.children), None)
        if sa is None:
            counters.packets_dropped += 1
            if self._tracer.enabled:
                self._tracer.record(
                    now,
                    "esp",
                    "segment_dropped",
                    {"reason": "unknown_spi", "spi": f"0x{spi:08x}", "transport": transport},
                )
            self._arm_metrics(now)
            return
        try:
            plain = sa.unprotect(spi, packet, now=now)
        except EspDropped:
            counters.packets_dropped += 1  # recorded by the SA; no plaintext leaves it
            self._arm_metrics(now)
            return
        if sa.esp_path is not None:
            if transport == "udp":
                self._esp_udp_check.pop(sa.label, None)  # ESP gets through over UDP
            else:  # the peer moved ESP into the TCP connection: follow it
                self._esp_to_tcp(sa, "the peer sends ESP over TCP", now)
        counters.packets_received += 1
        counters.bytes_received += len(packet)
        seq = int.from_bytes(packet[4:8], "big")
        if self._tracer.enabled:
            self._tracer.record(
                now,
                "esp",
                "segment_received",
                {
                    "spi": f"0x{spi:08x}",
                    "seq": seq,
                    "length": len(packet),
                    "inner_length": len(plain.data),
                    "transport": transport,
                },
            )
        self._arm_metrics(now)
        if not plain.is_dummy:
            self._events.append(PacketReceived(data=plain.data, next_header=plain.next_header, spi=spi))

    def _send_esp(self, sa: IkeSa, packet: bytes, now: float) -> None:
        if sa.esp_transport == "udp":
            self._actions.append(UdpSend(sa.esp_local[1], sa.esp_remote, packet))
            return
        conn = self._conn_for(sa)
        if conn is None:
            self._record(now, "segment_dropped", {"reason": "no_connection", "kind": "esp", "sa": sa.label})
            return
        conn.stream.send_esp(packet, now=now)
        self._flush_stream(conn)

    # --- plumbing ----------------------------------------------------------------------------------------------------------

    def _new_sa(self, transport: str, local: Address, remote: Address) -> IkeSa:
        return IkeSa(
            config=self.config,
            initiator=self.initiator,
            transport=transport,
            local=local,
            remote=remote,
            rng=random.Random(self._rng.getrandbits(64)),
            tracer=self._tracer,
        )

    def _new_conn_id(self) -> int:
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        return conn_id

    def _all_sas(self, *, include_attempts: bool = False) -> list[IkeSa]:
        if not self.initiator:
            return list(self._sas.values())
        sas = [] if self.sa is None else [self.sa]
        if include_attempts:
            sas += [a.sa for a in self._attempts if a.sa is not None and a.sa is not self.sa and not a.done]
            sas += [sa for sa in self._retiring if not sa.closed]
        return sas

    def _current_sa(self, *, with_child: bool = True) -> IkeSa | None:
        candidates = [s for s in self._all_sas() if s.established and (s.child is not None or not with_child)]
        return max(candidates, key=lambda s: s.established_at or 0.0, default=None)

    def _conn_for(self, sa: IkeSa) -> _TcpConn | None:
        if self.initiator:
            while True:  # a rekeyed SA's last messages (its Delete) go where its successor's go
                conn = next((c for c in self._conns.values() if c.sa is sa and c.state == "open"), None)
                if conn is not None or sa.successor is None:
                    return conn
                sa = sa.successor
        path = self._paths.get(sa.label)
        if path is None or path.conn_id is None:
            return None
        conn = self._conns.get(path.conn_id)
        return conn if conn is not None and conn.state == "open" else None

    def _route(self, sa: IkeSa, message: bytes, now: float) -> None:
        if sa.transport == "udp":
            port = sa.local[1]
            self._actions.append(UdpSend(port, sa.remote, NON_ESP_MARKER + message if port == NAT_T_PORT else message))
            return
        conn = self._conn_for(sa)
        if conn is None:
            self._paths.setdefault(sa.label, _SaPath()).pending.append(message)
            if self.initiator and sa.separate_transports and not sa.closed:
                waiting = (*self._switching.values(), *self._reconnecting.values())
                if not any(other is sa for other in waiting):
                    self._open_separate_tcp(sa, now, why="switch")
            return
        conn.stream.send_ike(message, now=now)
        self._flush_stream(conn)

    def _watch_esp_udp(self, sa: IkeSa, now: float) -> None:
        """Initiator with separate transports: ESP was sent over UDP; expect ESP back before the deadline."""
        timeout = self.config.esp_udp_timeout_s
        if timeout is None or not self.initiator or sa.esp_path is None or sa.label in self._esp_udp_check:
            return
        self._esp_udp_check[sa.label] = (sa, now + timeout)

    def _esp_to_tcp(self, sa: IkeSa, reason: str, now: float) -> None:
        """ESP over UDP gets nothing through: ESP joins IKE in the TCP connection (RFC 9329 framing)."""
        sa.esp_path = None
        self._esp_udp_check.pop(sa.label, None)
        self._keepalive_at = None if sa is self.sa else self._keepalive_at
        self._record(
            now,
            "state_updated",
            {"event": "esp_moved", "sa": sa.label, "esp_transport": sa.esp_transport, "reason": reason},
        )

    def _open_separate_tcp(self, sa: IkeSa, now: float, *, why: str) -> None:
        """Initiator: SEPARATE_TRANSPORTS was agreed; IKE goes on over TCP (RFC 9329), ESP stays on UDP."""
        remote = (sa.remote[0], self.config.tcp_ports[0])
        conn_id = self._new_conn_id()
        self._conns[conn_id] = _TcpConn(conn_id, None, remote, opened_at=now)
        self._switching[conn_id] = sa
        self._record_tcp(
            now, conn_id, "connecting", remote=_fmt(remote), sa=sa.label, purpose="separate_transports", why=why
        )
        self._actions.append(TcpOpen(conn_id, remote))

    def _pump_sa(self, sa: IkeSa, now: float) -> None:
        for message in sa.messages_to_send():
            self._route(sa, message, now)
        attempt = next((a for a in self._attempts if a.sa is sa), None) if self.initiator else None
        while (event := sa.next_event()) is not None:
            if isinstance(event, IkeSaRekeyed):
                self._rekeyed(sa, now)
                self._events.append(event)
                continue
            if sa.successor is not None:  # a rekeyed SA going away: its Child SAs live on in the new one
                if isinstance(event, IkeSaDeleted):
                    self._record(now, "state_updated", {"sa": sa.label, "event": "retired", "reason": event.reason})
                    self._sa_gone(sa, now)
                    if sa in self._retiring:
                        self._retiring.remove(sa)
                    continue
                self._events.append(event)
                continue
            if self.initiator and sa is not self.sa:
                if isinstance(event, IkeSaDeleted) and attempt is not None and not attempt.done:
                    if event.notify_type is not None:  # the responder answered: another transport would not help
                        self._plan.clear()
                        self._failed = True
                        for other in self._attempts:
                            self._attempt_failed(other, "failed" if other is attempt else "abandoned", now)
                        self._record(now, "state_updated", {"event": "failed", "reason": event.reason})
                        self._events.append(event)
                    else:
                        self._last_failure = event.reason
                        if sa.too_big_for_udp:  # straight to TCP: other UDP ports would not fit either
                            self._plan = [step for step in self._plan if step[0] == "tcp"]
                            self._attempt_failed(attempt, "too_big_for_udp", now)
                        else:
                            self._attempt_failed(attempt, "failed", now)
                continue
            if isinstance(event, IkeSaDeleted) and self._udp_setup_failed(sa, event):
                self._udp_too_small(sa, event.reason, now, "too_big_for_udp" if sa.too_big_for_udp else "unanswered")
                continue
            if isinstance(event, IkeSaDeleted):
                self._sa_gone(sa, now)
            elif isinstance(event, IkeSaEstablished):
                self.established_at = now
                self._arm_keepalive(sa, now)
            self._events.append(event)

    def _udp_setup_failed(self, sa: IkeSa, event: IkeSaDeleted) -> bool:
        """Whether the UDP attempt that won IKE_SA_INIT died before IKE_AUTH completed without the peer refusing
        anything: its next message did not fit (lab.ike.policy), or it was never answered (a path that drops
        the large IKE_INTERMEDIATE or IKE_AUTH datagrams, or their IP fragments)."""
        return (
            self.initiator
            and self.config.transport == "fallback"
            and sa is self.sa
            and sa.transport == "udp"
            and sa.established_at is None
            and event.error
            and event.notify_type is None
            and (bool(sa.too_big_for_udp) or sa.unanswered)
        )

    def _udp_too_small(self, sa: IkeSa, reason: str, now: float, why: str) -> None:
        """The UDP attempt that won IKE_SA_INIT could not finish (``why``): with fallback, on to TCP (RFC 9329 §5)."""
        attempt = next((a for a in self._attempts if a.sa is sa), None)
        self.sa = None
        self._last_failure = reason
        self._plan = [("tcp", p) for p in self.config.tcp_ports]
        if attempt is not None:
            self._record(
                now,
                "state_updated",
                {
                    "attempt": attempt.number,
                    "event": why,
                    "transport": attempt.transport,
                    "port": attempt.port,
                    "after_s": round(now - attempt.started_at, 6),
                },
            )
        self._next_attempt(now)

    def _rekeyed(self, old: IkeSa, now: float) -> None:
        """``old`` has a successor (RFC 7296 §2.18): carry on with it on the same transport."""
        new = old.successor
        assert new is not None
        if self.initiator:
            if old is self.sa:
                self.sa = new
            self._retiring.append(old)
            for conn in self._conns.values():
                if conn.sa is old:
                    conn.sa = new
            for conn_id, sa in list(self._reconnecting.items()):
                if sa is old:
                    self._reconnecting[conn_id] = new
            watch = self._esp_udp_check.pop(old.label, None)
            if watch is not None:  # the Child SAs moved: so does the wait for ESP back over UDP
                self._esp_udp_check[new.label] = (new, watch[1])
        else:
            self._sas[_own_spi(new)] = new
            path = self._paths.get(old.label)
            self._paths[new.label] = _SaPath(path.conn_id if path is not None else None)
        self._record(now, "state_updated", {"sa": old.label, "event": "rekeyed", "new_sa": new.label})
        self._pump_sa(new, now)

    def _sa_gone(self, sa: IkeSa, now: float) -> None:
        if not self.initiator:
            if self._sas.get(_own_spi(sa)) is sa:
                del self._sas[_own_spi(sa)]
            for key in [k for k, v in self._half_open.items() if v is sa]:
                del self._half_open[key]
            self._paths.pop(sa.label, None)
        if self.initiator and sa is self.sa:
            self._keepalive_at = None
        for conn in self._conns.values():
            if conn.sa is sa and conn.state == "open" and self.initiator:
                conn.state = "closed"
                self._actions.append(TcpClose(conn.conn_id))
                self._record_tcp(now, conn.conn_id, "closing", reason="IKE SA gone")
        self._record_metrics(now)

    def _flush_stream(self, conn: _TcpConn) -> None:
        if conn.stream is None or conn.state != "open":
            return
        data = conn.stream.data_to_send()
        if data:
            self._actions.append(TcpSend(conn.conn_id, data))

    def _connection_gone(self, conn: _TcpConn, now: float, *, refused: bool = False, reason: str = "") -> None:
        if not self.initiator:
            for path in self._paths.values():
                if path.conn_id == conn.conn_id:
                    path.conn_id = None  # wait for the initiator to come back on a new connection
            return
        switching = self._switching.pop(conn.conn_id, None)
        if switching is not None and conn.local is None:  # the connection IKE was to move to never came up
            if not refused and not switching.closed and self._reconnects < self.config.tcp_reconnect_tries:
                self._reconnects += 1
                self._open_separate_tcp(switching, now, why="retry")
                return
            why = f"TCP {conn.remote[1]} for IKE (separate transports) did not connect ({reason or 'failed'})"
            self._record_tcp(now, conn.conn_id, "peer_gone", sa=switching.label, reason=why)
            switching.transport_lost(why, now=now)
            self._pump_sa(switching, now)
            return
        attempt = next((a for a in self._attempts if a.conn_id == conn.conn_id and not a.done), None)
        sa = conn.sa
        reconnecting = self._reconnecting.pop(conn.conn_id, None)
        if reconnecting is not None and conn.local is None and attempt is None:
            sa = reconnecting  # a reconnect that never came up
            if refused:
                why = f"TCP reconnect refused by the peer ({reason})" if reason else "TCP reconnect refused by the peer"
                self._record_tcp(now, conn.conn_id, "peer_gone", sa=sa.label, reason=why)
                sa.transport_lost(why, now=now)
                self._pump_sa(sa, now)
                return
        was_up = conn.local is not None or reconnecting is not None  # a failed reconnect tries again while it may
        usable = sa is not None and not sa.closed and sa.transport == "tcp" and (attempt is not None or sa is self.sa)
        if usable and was_up:  # reconnect, same IKE SA (RFC 9329 §6.1)
            if self._reconnects < self.config.tcp_reconnect_tries:
                self._reconnects += 1
                conn_id = self._new_conn_id()
                self._conns[conn_id] = _TcpConn(conn_id, None, conn.remote, opened_at=now)
                self._reconnecting[conn_id] = sa
                if attempt is not None:
                    attempt.conn_id = conn_id
                    attempt.deadline = now + self.config.tcp_connect_timeout_s
                self._record_tcp(
                    now, conn_id, "reconnecting", remote=_fmt(conn.remote), attempt=self._reconnects, sa=sa.label
                )
                self._actions.append(TcpOpen(conn_id, conn.remote))
                return
            self._record_tcp(now, conn.conn_id, "reconnect_exhausted", sa=sa.label)
        if attempt is not None:
            self._attempt_failed(attempt, "connection_closed" if conn.local is not None else "connect_failed", now)
            return
        if usable:
            sa.transport_lost("TCP connection lost", now=now)
            self._pump_sa(sa, now)

    def _arm_keepalive(self, sa: IkeSa, now: float) -> None:
        if self.initiator and sa.esp_transport == "udp" and sa.nat_detected_local:
            self._keepalive_at = now + self.config.nat_keepalive_s

    def _send_nat_keepalive(self, now: float) -> None:
        sa = self.sa
        self._keepalive_at = None
        if sa is None or sa.closed or sa.esp_transport != "udp":
            return
        self._actions.append(UdpSend(sa.esp_local[1], sa.esp_remote, NAT_KEEPALIVE))  # RFC 3948 §2.3
        self._record(now, "segment_sent", {"kind": "nat_keepalive", "transport": "udp", "sa": sa.label})
        self._keepalive_at = now + self.config.nat_keepalive_s

    def _arm_metrics(self, now: float) -> None:
        if self._tracer.enabled and self._metrics_at is None:
            self._metrics_at = now + self.config.metrics_interval_s

    def _record_metrics(self, now: float) -> None:
        if not self._tracer.enabled:
            return
        for transport, counters in self.esp_counters.items():
            if counters.packets_sent or counters.packets_received or counters.packets_dropped:
                data = {"transport": transport, **counters.to_dict()}
                if self.name:
                    data["session"] = self.name  # a node with several IKE endpoints: each counts its own
                self._tracer.record(now, "esp", "metrics_updated", data)

    def _record(self, now: float, name: str, data: dict[str, Any]) -> None:
        if self._tracer.enabled:
            if self.name:
                data["session"] = self.name
            self._tracer.record(now, LAYER, name, data)

    def _record_tcp(self, now: float, conn_id: int, event: str, **fields: Any) -> None:
        if self._tracer.enabled:
            data = {"conn": self._conn_label(conn_id), "event": event, **fields}
            if self.name:
                data["session"] = self.name
            self._tracer.record(now, "iketcp", "state_updated", data)

    def _conn_label(self, conn_id: int) -> str:
        return f"{self.name}/{conn_id}" if self.name else str(conn_id)

    def claims(self, data: bytes, *, local_port: int) -> bool:
        """Whether a UDP payload belongs to this endpoint (several endpoints may share a host's ports)."""
        if not self.initiator:
            return True
        if local_port == NAT_T_PORT:
            if data == NAT_KEEPALIVE or len(data) < 4:
                return False
            if data[:4] != NON_ESP_MARKER:
                spi = int.from_bytes(data[:4], "big")
                return any(spi in sa.children for sa in self._all_sas())
            data = data[4:]
        spi_i = data[:8]
        return any(a.sa is not None and a.sa.spi_i == spi_i for a in self._attempts) or any(
            sa.spi_i == spi_i for sa in self._all_sas(include_attempts=True)
        )


def _own_spi(sa: IkeSa) -> bytes:
    """The SPI this end chose for ``sa``: SPIi when it is the SA's original initiator, else SPIr."""
    return sa.spi_i if sa.initiator else sa.spi_r


def _fmt(addr: Address | None) -> str:
    if addr is None:
        return ""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
