"""Run an :class:`~lab.ike.endpoint.IkeEndpoint` on a simulated host (``lab.stack.host.HostStack``).

The driver binds UDP 500 and 4500 (shared through a per-host multiplexer,
so several endpoints can live on one host), listens on the responder's TCP
ports, opens the initiator's TCP connections with the host's own TCP, and
pumps the endpoint after every input as STYLE.md's ``pump`` does: actions
out, events to the user's callback, the timer re-armed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from lab.errors import ConfigError
from lab.ike.config import IKE_UDP_PORT, NAT_T_PORT
from lab.ike.endpoint import IkeEndpoint, TcpClose, TcpOpen, TcpSend, UdpSend
from lab.ike.events import IkeEvent
from lab.stack.host import DatagramHandler, HostStack, Stream, StreamHandler

_MUX_ATTR = "_ike_udp_mux"


class _UdpMux(DatagramHandler):
    """Hands each IKE/ESP datagram of a host to the endpoint that claims it."""

    def __init__(self) -> None:
        self.drivers: list[SimIkeDriver] = []

    def datagram_received(self, host: HostStack, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        for driver in self.drivers:
            if driver.endpoint.claims(data, local_port=dst[1]):
                driver.endpoint.receive_datagram(data, local=dst, remote=src, now=host.now)
                driver.pump()
                return
        if host.tracer.enabled:
            host.tracer.record(
                host.now,
                "ike",
                "segment_dropped",
                {"reason": "no_endpoint", "local_port": dst[1], "remote": f"{src[0]}:{src[1]}"},
            )


class _Connection(StreamHandler):
    def __init__(self, driver: SimIkeDriver, conn_id: int | None) -> None:
        self.driver = driver
        self.conn_id = conn_id
        self.stream: Stream | None = None
        self.established = False

    def connection_made(self, stream: Stream) -> None:
        self.stream = stream
        self.established = True
        endpoint, now = self.driver.endpoint, self.driver.host.now
        local, remote = (
            (stream.addr.local_addr, stream.addr.local_port),
            (stream.addr.remote_addr, stream.addr.remote_port),
        )
        if self.conn_id is None:
            self.conn_id = endpoint.tcp_accepted(local=local, remote=remote, now=now)
        else:
            endpoint.tcp_connected(self.conn_id, local=local, remote=remote, now=now)
        self.driver.streams[self.conn_id] = self
        self.driver.pump()

    def data_received(self, stream: Stream, data: bytes) -> None:
        self.driver.endpoint.receive_tcp_data(self.conn_id, data, now=self.driver.host.now)
        self.driver.pump()

    def eof_received(self, stream: Stream) -> None:
        self.driver.endpoint.receive_tcp_data(self.conn_id, b"", now=self.driver.host.now)
        self.driver.pump()

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None:
        if self.conn_id is None:
            return
        now = self.driver.host.now
        if self.established:
            self.driver.endpoint.tcp_closed(self.conn_id, now=now)
        else:
            self.driver.endpoint.tcp_failed(self.conn_id, reason, now=now, refused=reset)
        self.driver.streams.pop(self.conn_id, None)
        self.driver.pump()


class SimIkeDriver:
    """Connects one endpoint to one simulated host; ``on_event`` sees every IkeEvent."""

    def __init__(
        self, host: HostStack, endpoint: IkeEndpoint, *, on_event: Callable[[IkeEvent], None] | None = None
    ) -> None:
        self.host = host
        self.endpoint = endpoint
        self.on_event = on_event or (lambda event: None)
        self.streams: dict[int, _Connection] = {}
        self._timer_at: float | None = None
        self._pumping = False
        # TCP_NODELAY: every write is a whole IKE message or ESP packet (RFC 9329 frames), so Nagle would
        # only hold a message's short tail until the previous segment is acknowledged, a round trip and a
        # delayed ACK added to every IKE exchange larger than one segment
        self.tcp_config = replace(host.tcp_config, nagle=False)
        mux = getattr(host, _MUX_ATTR, None)
        if mux is None:
            mux = _UdpMux()
            setattr(host, _MUX_ATTR, mux)
            for port in (IKE_UDP_PORT, NAT_T_PORT):
                host.bind_udp(port, mux)
        mux.drivers.append(self)
        if not endpoint.initiator:
            for port in endpoint.config.tcp_ports:
                try:
                    host.listen(port, lambda: _Connection(self, None), config=self.tcp_config)
                except ConfigError as exc:
                    raise ConfigError(f"IKE responder on {host.name}: {exc}") from None

    def connect(self) -> None:
        self.endpoint.connect(now=self.host.now)
        self.pump()

    def pump(self) -> None:
        """Actions out, events to the user, the timer re-armed (re-entrant calls fold into the outer loop)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                actions = self.endpoint.actions_to_send()
                for action in actions:
                    self._perform(action)
                events = []
                while (event := self.endpoint.next_event()) is not None:
                    events.append(event)
                for event in events:
                    self.on_event(event)
                if not actions and not events:
                    break
        finally:
            self._pumping = False
        when = self.endpoint.get_timer()
        if when is not None and (self._timer_at is None or when < self._timer_at):
            self._timer_at = when
            self.host._scheduler.call_at(when, lambda w=when: self._fire(w))

    def _fire(self, when: float) -> None:
        if self._timer_at != when:
            return
        self._timer_at = None
        due = self.endpoint.get_timer()
        if due is not None and due <= self.host.now:
            self.endpoint.handle_timer(now=self.host.now)
        self.pump()

    def _perform(self, action: UdpSend | TcpOpen | TcpSend | TcpClose) -> None:
        if isinstance(action, UdpSend):
            self.host.send_datagram(action.data, src=(self.endpoint.local_addr, action.local_port), dst=action.remote)
        elif isinstance(action, TcpSend):
            conn = self.streams.get(action.conn_id)
            if conn is not None and conn.stream is not None and not conn.stream.closed:
                conn.stream.send(action.data)
        elif isinstance(action, TcpOpen):
            handler = _Connection(self, action.conn_id)
            handler.stream = self.host.connect(
                action.remote[0], action.remote[1], handler, local_addr=self.endpoint.local_addr, config=self.tcp_config
            )
            self.streams[action.conn_id] = handler
        elif isinstance(action, TcpClose):
            conn = self.streams.pop(action.conn_id, None)
            if conn is not None and conn.stream is not None and not conn.stream.closed:
                conn.conn_id = None  # the endpoint already forgot it
                if conn.established:
                    conn.stream.close()
                else:
                    conn.stream.abort("IKE gave this connection attempt up")
