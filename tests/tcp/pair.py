"""Two TcpConnections wired back to back, with time moved by hand."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from lab.net import FourTuple
from lab.tcp import TcpConfig, TcpConnection
from lab.tcp.events import DataReceived, TcpEvent
from lab.trace import MemoryTracer

CLIENT_ADDR = FourTuple("10.0.0.1", 40000, "10.0.0.2", 80)


class TcpPair:
    """A client and a server; ``one_way_s`` delays each segment.

    ``fault(sender, data) -> list[bytes]`` may drop (``[]``), corrupt,
    duplicate or pass the segment.
    """

    def __init__(
        self,
        *,
        client_config: TcpConfig | None = None,
        server_config: TcpConfig | None = None,
        one_way_s: float = 0.01,
        seed: int = 1,
        fault: Callable[[TcpConnection, bytes], list[bytes]] | None = None,
        reorder_rng: random.Random | None = None,
    ) -> None:
        self.tracer = MemoryTracer()
        self.client = TcpConnection(addr=CLIENT_ADDR, config=client_config, tracer=self.tracer.bind("client"), rng=random.Random(seed))
        self.server = TcpConnection(
            addr=CLIENT_ADDR.reversed(), config=server_config, tracer=self.tracer.bind("server"), rng=random.Random(seed + 1)
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
        """Advance time, delivering segments and firing timers, until ``until`` or ``stop()``."""
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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
