"""Two IKE endpoints joined by an in-memory network with time moved by hand.

UDP datagrams and TCP bytes arrive ``one_way_s`` after they were sent; TCP
connections are established one RTT after ``TcpOpen`` unless their port is
blocked (then the SYN vanishes and only the initiator's connect deadline
fires) or refused (a RST comes back after one RTT). ``tamper`` sees every datagram/TCP chunk (``("udp"|"tcp", from_initiator,
data)``) and returns what to deliver, or None to drop it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.ike.config import IkeConfig
from lab.ike.endpoint import IkeEndpoint, TcpClose, TcpOpen, TcpSend, UdpSend
from lab.ike.events import IkeEvent
from lab.trace import MemoryTracer

I_ADDR = "192.0.2.1"
R_ADDR = "192.0.2.2"
PSK = b"pair-psk-0123456789"


def configs(**overrides: object) -> tuple[IkeConfig, IkeConfig]:
    both = {k: v for k, v in overrides.items() if not k.startswith(("i_", "r_"))}
    i = {k[2:]: v for k, v in overrides.items() if k.startswith("i_")}
    r = {k[2:]: v for k, v in overrides.items() if k.startswith("r_")}
    base = {"psk": PSK, "export_keys": True}
    return (
        IkeConfig(**(base | {"local_id": b"west", "remote_id": b"east"} | both | i)),
        IkeConfig(**(base | {"local_id": b"east", "remote_id": b"west"} | both | r)),
    )


@dataclass
class Pair:
    config_i: IkeConfig
    config_r: IkeConfig
    one_way_s: float = 0.01
    blocked_udp_ports: set[int] = field(default_factory=set)
    blocked_tcp_ports: set[int] = field(default_factory=set)
    refused_tcp_ports: set[int] = field(default_factory=set)  # the SYN is answered with a RST
    tamper: Callable[[str, bool, bytes], bytes | None] | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        self.tracer = MemoryTracer()
        self.now = 0.0
        self.i = IkeEndpoint(
            config=self.config_i,
            initiator=True,
            local_addr=I_ADDR,
            remote_addr=R_ADDR,
            rng=random.Random(self.seed),
            tracer=self.tracer.bind("i"),
        )
        self.r = IkeEndpoint(
            config=self.config_r,
            initiator=False,
            local_addr=R_ADDR,
            rng=random.Random(self.seed + 1),
            tracer=self.tracer.bind("r"),
        )
        self.events: dict[str, list[IkeEvent]] = {"i": [], "r": []}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._tcp_peer: dict[int, int] = {}  # initiator conn id -> responder conn id
        self._tcp_back: dict[int, int] = {}
        self._i_ports = itertools.count(50000)
        self.sent: list[tuple[str, bool, bytes]] = []  # every datagram / TCP chunk as sent

    # --- driving

    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), fn))

    def run(self, until: float) -> None:
        self.flush()
        while True:
            times = [t for t in (self.i.get_timer(), self.r.get_timer()) if t is not None]
            if self._queue:
                times.append(self._queue[0][0])
            if not times or min(times) > until:
                break
            self.now = max(self.now, min(times))
            if self._queue and self._queue[0][0] <= self.now:
                _, _, fn = heapq.heappop(self._queue)
                fn()
            for ep in (self.i, self.r):
                t = ep.get_timer()
                if t is not None and t <= self.now:
                    ep.handle_timer(now=self.now)
            self.flush()
        self.now = max(self.now, until)

    def flush(self) -> None:
        while True:
            moved = False
            for name, ep in (("i", self.i), ("r", self.r)):
                for action in ep.actions_to_send():
                    moved = True
                    self._perform(ep is self.i, action)
                while (event := ep.next_event()) is not None:
                    moved = True
                    self.events[name].append(event)
            if not moved:
                return

    def of(self, side: str, cls: type) -> list:
        return [e for e in self.events[side] if isinstance(e, cls)]

    # --- the network

    def _deliver(self, kind: str, from_i: bool, data: bytes, fn: Callable[[bytes], None]) -> None:
        self.sent.append((kind, from_i, data))
        if self.tamper is not None:
            data = self.tamper(kind, from_i, data)
            if data is None:
                return
        self.at(self.now + self.one_way_s, lambda: fn(data))

    def _perform(self, from_i: bool, action: object) -> None:
        src, dst = (self.i, self.r) if from_i else (self.r, self.i)
        if isinstance(action, UdpSend):
            if action.local_port in self.blocked_udp_ports or action.remote[1] in self.blocked_udp_ports:
                self.sent.append(("udp", from_i, action.data))
                return
            local = ((I_ADDR if from_i else R_ADDR), action.local_port)
            self._deliver(
                "udp",
                from_i,
                action.data,
                lambda d: dst.receive_datagram(d, local=action.remote, remote=local, now=self.now),
            )
        elif isinstance(action, TcpOpen):
            if action.remote[1] in self.blocked_tcp_ports:
                return
            if action.remote[1] in self.refused_tcp_ports:
                self.at(
                    self.now + 2 * self.one_way_s,
                    lambda: self.i.tcp_failed(action.conn_id, "Connection refused", now=self.now, refused=True),
                )
                return
            port = next(self._i_ports)

            def accepted() -> None:
                rid = self.r.tcp_accepted(local=action.remote, remote=(I_ADDR, port), now=self.now)
                self._tcp_peer[action.conn_id] = rid
                self._tcp_back[rid] = action.conn_id
                self.at(
                    self.now + self.one_way_s,
                    lambda: self.i.tcp_connected(
                        action.conn_id, local=(I_ADDR, port), remote=action.remote, now=self.now
                    ),
                )

            self.at(self.now + self.one_way_s, accepted)
        elif isinstance(action, TcpSend):
            peer = self._tcp_peer.get(action.conn_id) if from_i else self._tcp_back.get(action.conn_id)
            if peer is None:
                return
            self._deliver("tcp", from_i, action.data, lambda d: dst.receive_tcp_data(peer, d, now=self.now))
        elif isinstance(action, TcpClose):
            peer = self._tcp_peer.get(action.conn_id) if from_i else self._tcp_back.get(action.conn_id)
            if peer is not None:
                self.at(self.now + self.one_way_s, lambda: dst.tcp_closed(peer, now=self.now))
            src.tcp_closed(action.conn_id, now=self.now)

    def break_tcp(self) -> None:
        """Reset every TCP connection, as a middlebox timing out its state would."""
        for iid, rid in list(self._tcp_peer.items()):
            self.i.tcp_closed(iid, now=self.now)
            self.r.tcp_closed(rid, now=self.now)
        self._tcp_peer.clear()
        self._tcp_back.clear()
        self.flush()
