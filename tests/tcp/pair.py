"""Two TcpConnections wired back to back, with time moved by hand."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from lab.tcp import TcpConfig, TcpConnection, TcpState
from lab.tcp.addresses import FourTuple
from lab.tcp.events import ConnectionTerminated, DataReceived, TcpEvent
from lab.tcp.extension import TcpExtension
from lab.trace import NULL_TRACER, MemoryTracer, TraceRecord
from lab.wire.checksum import pack_address
from lab.wire.tcp import TcpSegment, decode_segment, encode_segment

CLIENT_ADDR = FourTuple("10.0.0.1", 40000, "10.0.0.2", 80)

Fault = Callable[[TcpConnection, bytes], list[bytes]]


class TcpPair:
    """A client and a server; ``one_way_s`` delays each segment.

    ``fault(sender, data) -> list[bytes]`` may drop (``[]``), corrupt,
    duplicate or pass the segment. With ``reorder_rng`` each segment gets an
    extra random delay of up to ``one_way_s``, so segments overtake each other.
    """

    def __init__(
        self,
        *,
        client_config: TcpConfig | None = None,
        server_config: TcpConfig | None = None,
        one_way_s: float = 0.01,
        seed: int = 1,
        fault: Fault | None = None,
        reorder_rng: random.Random | None = None,
        client_extension: TcpExtension | None = None,
        server_extension: TcpExtension | None = None,
        trace: bool = True,
    ) -> None:
        """With ``trace=False`` the connections get a NullTracer (their untraced fast paths run)."""
        self.tracer = MemoryTracer()
        self.client = TcpConnection(
            addr=CLIENT_ADDR,
            config=client_config,
            tracer=self.tracer.bind("client") if trace else NULL_TRACER,
            rng=random.Random(seed),
            extension=client_extension,
        )
        self.server = TcpConnection(
            addr=CLIENT_ADDR.reversed(),
            config=server_config,
            tracer=self.tracer.bind("server") if trace else NULL_TRACER,
            rng=random.Random(seed + 1),
            extension=server_extension,
        )
        self.one_way_s = one_way_s
        self.fault = fault
        self.reorder_rng = reorder_rng
        self.in_flight: list[tuple[float, int, TcpConnection, bytes]] = []
        self._n = 0
        self.received: dict[int, bytearray] = {id(self.client): bytearray(), id(self.server): bytearray()}
        self.events: dict[int, list[TcpEvent]] = {id(self.client): [], id(self.server): []}
        self.now = 0.0

    def peer(self, conn: TcpConnection) -> TcpConnection:
        return self.server if conn is self.client else self.client

    def _collect(self, conn: TcpConnection) -> None:
        for out in conn.segments_to_send(now=self.now):
            datas = self.fault(conn, out.data) if self.fault else [out.data]
            for data in datas:
                delay = self.one_way_s
                if self.reorder_rng is not None:
                    delay += self.reorder_rng.uniform(0, self.one_way_s)
                self._n += 1
                self.in_flight.append((self.now + delay, self._n, self.peer(conn), data))
        while (ev := conn.next_event()) is not None:
            self.events[id(conn)].append(ev)
            if isinstance(ev, DataReceived):
                self.received[id(conn)] += ev.data

    def run(self, *, until: float, stop: Callable[[], bool] | None = None) -> None:
        """Advance time, delivering segments and firing timers, until ``until`` or ``stop()``.

        When nothing is left to do, the clock still moves on to ``until``.
        """
        self._collect(self.client)
        self._collect(self.server)
        while self.now < until:
            if stop is not None and stop():
                return
            candidates = []
            if self.in_flight:
                candidates.append(min(self.in_flight)[0])
            for conn in (self.client, self.server):
                t = conn.get_timer()
                if t is not None:
                    candidates.append(t)
            if not candidates:
                self.now = until
                return
            self.now = max(self.now, min(candidates))
            if self.now > until:
                self.now = until
                return
            due = sorted(x for x in self.in_flight if x[0] <= self.now)
            self.in_flight = [x for x in self.in_flight if x[0] > self.now]
            for _, _, dst, data in due:
                dst.receive_segment(data, now=self.now)
                self._collect(dst)
            for conn in (self.client, self.server):
                t = conn.get_timer()
                if t is not None and t <= self.now:
                    conn.handle_timer(now=self.now)
                self._collect(conn)

    def events_of(self, conn: TcpConnection, cls: type) -> list:
        return [e for e in self.events[id(conn)] if isinstance(e, cls)]

    # --- helpers added for the tcp tests

    def handshake(self, *, until: float = 30.0) -> None:
        """Server listens, client connects; run until both are ESTABLISHED."""
        self.server.listen(now=self.now)
        self.client.connect(now=self.now)
        self.run(until=until, stop=self.both_established)

    def both_established(self) -> bool:
        return self.client.state is TcpState.ESTABLISHED and self.server.state is TcpState.ESTABLISHED

    def data(self, conn: TcpConnection) -> bytes:
        """Everything ``conn`` has delivered to its application so far."""
        return bytes(self.received[id(conn)])

    def terminated(self, conn: TcpConnection) -> list[ConnectionTerminated]:
        return self.events_of(conn, ConnectionTerminated)

    def collect(self) -> None:
        """Pick up what API calls made outside run() produced."""
        self._collect(self.client)
        self._collect(self.server)

    def inject(self, dst: TcpConnection, segment: TcpSegment) -> None:
        """Deliver a hand-made segment to ``dst`` now (as if sent by its peer)."""
        src_addr, dst_addr = dst.addr.remote_addr, dst.addr.local_addr
        raw = encode_segment(segment, pack_address(src_addr), pack_address(dst_addr))
        dst.receive_segment(raw, now=self.now)
        self._collect(dst)

    def records(self, *, node: str | None = None, name: str | None = None) -> list[TraceRecord]:
        return self.tracer.select(layer="tcp", node=node, name=name)

    def node(self, conn: TcpConnection) -> str:
        return "client" if conn is self.client else "server"

    def transfer(
        self,
        client_data: bytes,
        server_data: bytes = b"",
        *,
        until: float = 300.0,
        close: bool = True,
    ) -> None:
        """After the handshake: each side sends its data (and closes); run until both got all of it."""
        if client_data:
            self.client.send(client_data)
        if server_data:
            self.server.send(server_data)
        if close:
            self.client.close(now=self.now)
            self.server.close(now=self.now)

        def done() -> bool:
            return len(self.received[id(self.server)]) >= len(client_data) and len(
                self.received[id(self.client)]
            ) >= len(server_data)

        self.run(until=until, stop=done if not close else None)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def peek(data: bytes) -> TcpSegment:
    """Decode a segment without checking its checksum (for fault callbacks)."""
    return decode_segment(data)


def random_loss(rng: random.Random, loss_pct: float, *, inner: Fault | None = None) -> Fault:
    """Drop each segment with probability ``loss_pct`` %, in both directions."""

    def fault(sender: TcpConnection, data: bytes) -> list[bytes]:
        if rng.random() < loss_pct / 100:
            return []
        return inner(sender, data) if inner else [data]

    return fault


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)
