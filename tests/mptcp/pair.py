"""Two MptcpConnections wired back to back, with time moved by hand.

Segments go straight from one endpoint to the other (no delay) unless a test
drops or rewrites them with ``tamper``; a SYN for a new four-tuple reaches the
server as a listener would hand it over (``accept``/``accept_join``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from lab.mptcp.config import MptcpConfig
from lab.mptcp.connection import MptcpConnection
from lab.mptcp.options import syn_mptcp_option
from lab.tcp import TcpConfig
from lab.tcp.addresses import FourTuple
from lab.trace import MemoryTracer
from lab.wire.checksum import pack_address
from lab.wire.mptcp import MPTCP_KIND, MpJoinSyn, from_tcp_option, to_tcp_option
from lab.wire.tcp import TcpSegment, UnknownOption, decode_segment, encode_segment

CLIENT_ADDRS = ("10.0.1.1", "10.0.3.1")
SERVER_ADDRS = ("10.0.2.2", "10.0.4.2")
PATH_A = FourTuple("10.0.1.1", 40001, "10.0.2.2", 5001)
PATH_B = FourTuple("10.0.3.1", 40002, "10.0.2.2", 5001)

Tamper = Callable[[str, FourTuple, bytes], bytes | None]  # ("c2s"|"s2c", sender's four-tuple, segment)


class MptcpPair:
    def __init__(
        self,
        client: MptcpConfig | None = None,
        server: MptcpConfig | None = None,
        *,
        tcp: TcpConfig | None = None,
        seed: int = 1,
    ) -> None:
        ports = iter(range(41000, 42000))
        self.client_tracer = MemoryTracer()
        self.server_tracer = MemoryTracer()
        tcp = tcp or TcpConfig()
        self.client = MptcpConnection(
            config=client or MptcpConfig(),
            role="client",
            local_addresses=list(CLIENT_ADDRS),
            tcp_config=tcp,
            tracer=self.client_tracer,
            rng=random.Random(seed),
            allocate_port=lambda: next(ports),
        )
        self.server = MptcpConnection(
            config=server or MptcpConfig(),
            role="server",
            local_addresses=list(SERVER_ADDRS),
            tcp_config=tcp,
            tracer=self.server_tracer,
            rng=random.Random(seed + 1),
        )
        self.tamper: Tamper | None = None
        self.received = {"client": bytearray(), "server": bytearray()}
        self.events: dict[str, list] = {"client": [], "server": []}
        self.join_refused: list[FourTuple] = []

    def handshake(self, *, now: float = 0.0, addr: FourTuple = PATH_A) -> None:
        self.client.connect(addr, now=now)
        self.exchange(now=now)

    def _to_server(self, addr: FourTuple, data: bytes, now: float) -> None:
        local = addr.reversed()
        if self.server.subflow_for(local) is not None:
            self.server.receive_segment(data, addr=local, now=now)
        elif not self.server.subflows:
            self.server.accept(local, data, now=now)
        elif isinstance(syn_mptcp_option(data), MpJoinSyn):
            opt = syn_mptcp_option(data)
            if opt.token != self.server.local_token or not self.server.established:
                self.join_refused.append(local)  # a host answers with a RST; the client's SYN times out here
                return
            self.server.accept_join(local, data, now=now)

    def exchange(self, *, now: float, rounds: int = 10000) -> int:
        """Move segments both ways until neither side has anything to send; returns how many moved."""
        moved = 0
        for _ in range(rounds):
            outs_c = self.client.segments_to_send(now=now)
            outs_s = self.server.segments_to_send(now=now)
            self._collect(now)
            if not outs_c and not outs_s:
                return moved
            for out in outs_c:
                data = self.tamper("c2s", out.addr, out.data) if self.tamper else out.data
                if data is not None:
                    self._to_server(out.addr, data, now)
                    moved += 1
            for out in outs_s:
                data = self.tamper("s2c", out.addr, out.data) if self.tamper else out.data
                if data is not None:
                    local = out.addr.reversed()
                    if self.client.subflow_for(local) is not None:
                        self.client.receive_segment(data, addr=local, now=now)
                    moved += 1
        raise AssertionError("the pair never went quiet")

    def _collect(self, now: float) -> None:
        for name, ep in (("client", self.client), ("server", self.server)):
            while (e := ep.next_event()) is not None:
                self.events[name].append(e)
                if type(e).__name__ == "DataReceived":
                    self.received[name] += e.data

    def run(self, *, now: float, until: float, step: float = 0.01) -> float:
        """Exchange, then fire timers, until ``until`` (timers fire at their due time)."""
        while now < until:
            self.exchange(now=now)
            due = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
            nxt = min([*due, now + step])
            now = max(now, min(nxt, until))
            for ep in (self.client, self.server):
                t = ep.get_timer()
                if t is not None and t <= now:
                    ep.handle_timer(now=now)
        self.exchange(now=now)
        return now

    def of(self, who: str, cls: type) -> list:
        return [e for e in self.events[who] if isinstance(e, cls)]

    def records(self, who: str, name: str | None = None) -> list:
        tracer = self.client_tracer if who == "client" else self.server_tracer
        return [r for r in tracer.records if r.layer == "mptcp" and (name is None or r.name == name)]


def rewrite_mptcp(segment: bytes, addr: FourTuple, change: Callable[[object], object | None]) -> bytes:
    """``segment`` (sent on ``addr``) with each kind-30 option passed through ``change``
    (None removes it), re-encoded with a valid TCP checksum."""
    src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
    seg = decode_segment(segment, src, dst)
    opts = []
    for o in seg.options:
        if isinstance(o, UnknownOption) and o.kind == MPTCP_KIND:
            new = change(from_tcp_option(o, syn=bool(seg.flags & 0x02), ack=bool(seg.flags & 0x10)))
            if new is None:
                continue
            opts.append(new if isinstance(new, UnknownOption) else to_tcp_option(new))
        else:
            opts.append(o)
    return encode_segment(replace(seg, options=tuple(opts)), src, dst)


def raw_option(segment: bytes, addr: FourTuple, kind_data: bytes) -> bytes:
    """``segment`` with its first kind-30 option replaced by raw option data (for malformed options)."""
    src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
    seg: TcpSegment = decode_segment(segment, src, dst)
    opts = []
    done = False
    for o in seg.options:
        if isinstance(o, UnknownOption) and o.kind == MPTCP_KIND and not done:
            opts.append(UnknownOption(MPTCP_KIND, kind_data))
            done = True
        else:
            opts.append(o)
    return encode_segment(replace(seg, options=tuple(opts)), src, dst)
