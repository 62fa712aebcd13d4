"""The embedded discrete-event network.

Virtual time only: nothing here reads the clock except :meth:`SimNetwork.run_paced`,
which sleeps so that virtual time follows wall time for a live view. All
randomness comes from one ``random.Random(seed)``, so the same seed gives the
same run, record for record.

Links model serialization at ``bw_mbps`` (over IP packet bytes), one-way
propagation ``delay_ms`` in each direction, random loss ``loss_pct`` on the
wire, and a drop-tail queue of ``queue_packets`` packets (the one being
serialized included). ``jitter_ms`` adds to each packet's propagation a wait
drawn uniformly from [0, jitter_ms], never overtaking the packet before it (nor
arriving sooner after it than its own serialization time): the
random processing time that keeps a deterministic simulation's drop-tail queues
from dropping by arrival phase (Floyd and Jacobson, "On traffic phase effects in
packet-switched gateways", 1992). A packet's departure time is computed when it is
queued, so each hop costs one scheduled event.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from lab.errors import ConfigError
from lab.scenario.middlebox import Middlebox
from lab.stack.host import HostStack
from lab.stack.ipfrag import fragment_ipv4
from lab.tcp import TcpConfig
from lab.topology import InterfaceSpec, LinkSpec, TopologySpec
from lab.trace import NULL_TRACER, Tracer
from lab.wire.checksum import pack_address

# IPv4 header bytes 0..11: "8s" packs the first 8 bytes of the packet given, then TTL, protocol, checksum
_V4_HEAD_TTL_PROTO_CSUM = struct.Struct("!8sBBH")
_heappush = heapq.heappush


class _Direction:
    """One direction of a link: a queue feeding a serializer, then the wire."""

    __slots__ = (
        "arrive",
        "busy_until",
        "bytes_per_s",
        "delay_s",
        "deliver",
        "departures",
        "dropped",
        "dst_iface",
        "jitter_s",
        "last_arrival",
        "limit",
        "link",
        "loss",
        "sent_bytes",
        "sent_packets",
        "src_iface",
    )

    def __init__(self, link: SimLink, src_iface: SimInterface, dst_iface: SimInterface, spec: LinkSpec) -> None:
        self.link = link
        self.src_iface = src_iface
        self.dst_iface = dst_iface
        self.bytes_per_s = None if spec.bw_mbps is None else spec.bw_mbps * 1e6 / 8
        self.delay_s = spec.delay_ms / 1000.0
        self.jitter_s = spec.jitter_ms / 1000.0
        self.last_arrival = 0.0
        self.loss = spec.loss_pct / 100.0
        self.limit = spec.queue_packets
        self.busy_until = 0.0
        self.departures: deque[float] = deque()
        self.sent_packets = 0
        self.sent_bytes = 0
        self.dropped = 0
        self.deliver: Callable[[bytes], None] | None = None  # the receiving node's input
        self.arrive: Callable[[bytes], None] | None = None  # what a packet's arrival event calls


class SimLink:
    def __init__(self, spec: LinkSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.up = True
        self.generation = 0  # bumped when the link goes down: packets on the wire are lost
        self.directions: list[_Direction] = []


class SimInterface:
    __slots__ = ("mtu", "name", "node", "out", "pcap", "spec")

    def __init__(self, spec: InterfaceSpec, node: SimNode, mtu: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.node = node
        self.mtu = mtu  # its link's MTU: larger packets are fragmented (DF clear) or dropped (DF set)
        self.out: _Direction | None = None
        self.pcap = None


class SimNode:
    def __init__(self, net: SimNetwork, name: str) -> None:
        self.net = net
        self.name = name
        self.interfaces: dict[str, SimInterface] = {}

    def receive(self, iface: SimInterface, packet: bytes) -> None:
        raise NotImplementedError


class SimRouter(SimNode):
    """Forwards by destination address; middleboxes see each forwarded packet."""

    def __init__(self, net: SimNetwork, name: str) -> None:
        super().__init__(net, name)
        self.routes: dict[bytes, SimInterface] = {}
        self.source_routes: dict[tuple[bytes, bytes], SimInterface] = {}  # (src, dst) -> out
        self.middleboxes: list[Middlebox] = []
        self.tracer = net.tracer.bind(name)

    def receive(self, iface: SimInterface, packet: bytes) -> None:
        for box in self.middleboxes:  # netfilter's PREROUTING: a NAT maps replies back before routing
            packet = box.prerouting(packet, now=self.net.now, ingress=iface.name, tracer=self.tracer)
            if packet is None:
                return
        version = packet[0] >> 4
        if version == 4:
            dst = packet[16:20]
            ttl = packet[8]
        else:
            dst = packet[24:40]
            ttl = packet[7]
        out = None
        if self.source_routes:
            src = packet[12:16] if version == 4 else packet[8:24]
            out = self.source_routes.get((src, dst))
        if out is None:
            out = self.routes.get(dst)
        net = self.net
        if out is None:
            self._drop(packet, "no route")
            return
        if ttl <= 1:
            self._drop(packet, "TTL expired")
            return
        if version == 4:
            # RFC 1624 incremental update: TTL sits in the high byte of word 4
            csum = ((packet[10] << 8) | packet[11]) + 0x0100
            csum = (csum & 0xFFFF) + (csum >> 16)
            packet = _V4_HEAD_TTL_PROTO_CSUM.pack(packet, ttl - 1, packet[9], csum) + packet[12:]
        else:
            packet = b"".join((packet[:7], bytes((ttl - 1,)), packet[8:]))
        for box in self.middleboxes:
            result = box.process(packet, now=net.now, ingress=iface.name, egress=out.name, tracer=self.tracer)
            if result is None:
                return
            packet = result
        if len(packet) > out.mtu:
            self._too_big(out, packet)
            return
        net.transmit(out, packet)

    def _too_big(self, out: SimInterface, packet: bytes) -> None:
        """A packet larger than the outgoing link's MTU: fragmented when IPv4 without DF (RFC 791),
        else dropped, as a router does that then sends ICMP "fragmentation needed" / "packet too big"
        (not modelled: the drop is recorded)."""
        if packet[0] >> 4 != 4 or packet[6] & 0x40:
            self._drop(packet, f"larger than the {out.mtu}-byte MTU of {out.name} and may not be fragmented")
            return
        fragments = fragment_ipv4(packet, out.mtu)
        if self.tracer.enabled:
            self.tracer.record(
                self.net.now,
                "ip",
                "segment_sent",
                {
                    "event": "fragmented",
                    "id": (packet[4] << 8) | packet[5],
                    "len": len(packet),
                    "fragments": len(fragments),
                    "mtu": out.mtu,
                },
            )
        for fragment in fragments:
            self.net.transmit(out, fragment)

    def _drop(self, packet: bytes, reason: str) -> None:
        if self.tracer.enabled:
            self.tracer.record(self.net.now, "ip", "segment_dropped", {"reason": reason, "len": len(packet)})


class SimHost(SimNode):
    def __init__(self, net: SimNetwork, name: str, tcp_config: TcpConfig | None) -> None:
        super().__init__(net, name)
        self.tracer = net.tracer.bind(name)
        self.stack: HostStack | None = None
        self._tcp_config = tcp_config

    def start(self) -> None:
        addrs = {n: [i.spec.ipv4, i.spec.ipv6] for n, i in self.interfaces.items()}
        self.stack = HostStack(
            self.name,
            interfaces=addrs,
            transmit=self._transmit,
            scheduler=self.net,
            tracer=self.tracer,
            rng=random.Random(self.net.rng.getrandbits(64)),
            tcp_config=self._tcp_config,
            mtus={n: i.mtu for n, i in self.interfaces.items()},
        )

    def _transmit(self, ifname: str, packet: bytes) -> None:
        self.net.transmit(self.interfaces[ifname], packet)

    def receive(self, iface: SimInterface, packet: bytes) -> None:
        self.stack.input_packet(packet)


class SimNetwork:
    """A topology spec brought to life in virtual time."""

    def __init__(
        self, spec: TopologySpec, *, seed: int = 1, tracer: Tracer = NULL_TRACER, tcp_config: TcpConfig | None = None
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.rng = random.Random(seed)
        self._loss_rng = random.Random(self.rng.getrandbits(64))
        self._jitter_rng = random.Random(f"{seed}/jitter")  # its own stream: other draws stay as they were
        self.tracer = tracer
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable, object]] = []
        self._seq = 0
        self.nodes: dict[str, SimNode] = {}
        self.links: dict[str, SimLink] = {}
        self.interfaces: dict[str, SimInterface] = {}
        self.events_processed = 0
        self._pcaps: list = []
        for name, node in spec.nodes.items():
            self.nodes[name] = SimHost(self, name, tcp_config) if node.kind == "host" else SimRouter(self, name)
        for iface in spec.interfaces.values():
            sim_iface = SimInterface(iface, self.nodes[iface.node], spec.links[iface.link].mtu_bytes)
            self.nodes[iface.node].interfaces[iface.name] = sim_iface
            self.interfaces[iface.name] = sim_iface
        for name, lspec in spec.links.items():
            link = SimLink(lspec)
            ends = [i for i in self.interfaces.values() if i.spec.link == name]
            a = next(i for i in ends if i.node.name == lspec.a)
            b = next(i for i in ends if i.node.name == lspec.b)
            for src, dst in ((a, b), (b, a)):
                d = _Direction(link, src, dst, lspec)
                src.out = d
                link.directions.append(d)
            self.links[name] = link
        for route in spec.routes:
            node = self.nodes[route.node]
            if isinstance(node, SimRouter):
                out = self.interfaces[route.interface]
                if route.src is None:
                    node.routes.setdefault(pack_address(route.dst), out)
                else:
                    node.source_routes.setdefault((pack_address(route.src), pack_address(route.dst)), out)
        for node in self.nodes.values():
            if isinstance(node, SimHost):
                node.start()
        for node in self.nodes.values():
            if isinstance(node, SimHost):
                for ifname, iface in node.interfaces.items():
                    node.stack.set_interface_sender(ifname, functools.partial(self.transmit, iface))
        for link in self.links.values():
            for d in link.directions:
                node = d.dst_iface.node
                d.deliver = (
                    node.stack.input_packet
                    if isinstance(node, SimHost)
                    else functools.partial(node.receive, d.dst_iface)
                )
            self._bind_arrivals(link)

    @classmethod
    def build(
        cls, spec: TopologySpec, *, seed: int = 1, tracer: Tracer = NULL_TRACER, tcp_config: TcpConfig | None = None
    ) -> SimNetwork:
        return cls(spec, seed=seed, tracer=tracer, tcp_config=tcp_config)

    # --- scheduling (the Scheduler protocol HostStack uses)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(self.now, when), self._seq, _call, callback))

    def _push(self, when: float, fn: Callable, arg: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, arg))

    # --- access

    def host(self, name: str) -> HostStack:
        """The stack of host ``name``. Raises ConfigError for an unknown host."""
        node = self.nodes.get(name)
        if not isinstance(node, SimHost):
            raise ConfigError(f"no host named {name!r}; hosts: {', '.join(self.spec.hosts())}")
        return node.stack

    def router(self, name: str) -> SimRouter:
        node = self.nodes.get(name)
        if not isinstance(node, SimRouter):
            raise ConfigError(f"no router named {name!r}; routers: {', '.join(self.spec.routers())}")
        return node

    def add_middlebox(self, router: str, box: Middlebox) -> None:
        self.router(router).middleboxes.append(box)

    def link(self, name: str) -> SimLink:
        link = self.links.get(name)
        if link is None:
            raise ConfigError(f"no link named {name!r}; links: {', '.join(self.links)}")
        return link

    def set_link_up(self, name: str, up: bool, *, at: float | None = None) -> None:
        """Take a link down or up now, or at virtual time ``at``."""
        link = self.link(name)
        if at is not None and at > self.now:
            self.call_at(at, lambda: self.set_link_up(name, up))
            return
        if link.up == up:
            return
        link.up = up
        if not up:
            link.generation += 1
            for d in link.directions:
                self._retarget(d.arrive, _lost)  # what is on the wire now never arrives
                d.departures.clear()
                d.busy_until = self.now
        if self.tracer.enabled:
            self.tracer.record_node(self.now, "net", "link", "state_updated", {"link": name, "up": up})
        for d in link.directions:  # the hosts on the link see their carrier go and come back
            node = d.src_iface.node
            if isinstance(node, SimHost) and node.stack is not None:
                node.stack.interface_changed(d.src_iface.name, up)

    def enable_pcaps(self, directory: Path) -> list[Path]:
        """Write one pcap per interface into ``directory``."""
        from lab.pcap import PcapWriter

        paths = []
        for iface in self.interfaces.values():
            path = directory / f"{iface.name}.pcap"
            iface.pcap = PcapWriter(path)
            self._pcaps.append(iface.pcap)
            paths.append(path)
        for link in self.links.values():
            self._bind_arrivals(link)
        return paths

    def close(self) -> None:
        for w in self._pcaps:
            w.close()
        self._pcaps.clear()

    # --- the data path

    def transmit(self, iface: SimInterface, packet: bytes) -> None:
        d = iface.out
        if not d.link.up:
            self._drop(d, packet, "link down")
            return
        now = self.now
        size = len(packet)
        rate = d.bytes_per_s
        if rate is None:
            depart = now
        else:
            q = d.departures  # departure times, oldest first; those <= now have left
            if len(q) >= d.limit:  # forget the departed only when the count could matter
                while q and q[0] <= now:
                    q.popleft()
                if len(q) >= d.limit:
                    self._drop(d, packet, "queue full")
                    return
            busy = d.busy_until
            depart = (max(now, busy)) + size / rate
            d.busy_until = depart
            q.append(depart)
        if iface.pcap is not None:  # captured as it leaves: after the queue, before the wire
            self._seq += 1
            heapq.heappush(self._heap, (depart, self._seq, _capture, (iface.pcap, depart, packet)))
        d.sent_packets += 1
        d.sent_bytes += size
        if d.loss and self._loss_rng.random() < d.loss:
            self._drop(d, packet, "random loss")
            return
        self._seq = seq = self._seq + 1
        arrival = depart + d.delay_s
        if d.jitter_s:
            arrival += d.jitter_s * self._jitter_rng.random()
            # order kept: a packet never overtakes the one before it, and arrives no sooner than
            # its own bits can follow that one's over the link
            floor = d.last_arrival if rate is None else d.last_arrival + size / rate
            if arrival < floor:
                arrival = floor
            d.last_arrival = arrival
        _heappush(self._heap, (arrival, seq, d.arrive, packet))

    def _bind_arrivals(self, link: SimLink) -> None:
        """Give each direction of ``link`` its arrival callback: the receiving node's
        input itself, or a wrapper that first writes the packet to the receiving
        interface's capture. Packets already on the wire are moved to the new callback."""
        for d in link.directions:
            old = d.arrive
            d.arrive = d.deliver if d.dst_iface.pcap is None else self._make_arrival(d)
            if old is not None and old is not d.arrive:
                self._retarget(old, d.arrive)

    def _retarget(self, old: Callable, new: Callable) -> None:
        """Make the scheduled events that would call ``old`` call ``new`` instead.

        Each direction's arrival callback is a distinct object, so this touches the
        packets of one direction only; (time, sequence) stay, so the heap stays valid."""
        heap = self._heap
        for i, item in enumerate(heap):
            if item[2] is old:
                heap[i] = (item[0], item[1], new, item[3])

    def _make_arrival(self, d: _Direction) -> Callable[[bytes], None]:
        deliver = d.deliver
        pcap = d.dst_iface.pcap
        net = self

        def arrive(packet: bytes) -> None:
            pcap.write(net.now, packet)
            deliver(packet)

        return arrive

    def _drop(self, d: _Direction, packet: bytes, reason: str) -> None:
        d.dropped += 1
        if self.tracer.enabled:
            self.tracer.record_node(
                self.now,
                "net",
                "link",
                "segment_dropped",
                {"link": d.link.name, "from": d.src_iface.name, "reason": reason, "len": len(packet)},
            )

    # --- running

    def run(self, *, until: float | None = None, stop: Callable[[], bool] | None = None) -> float:
        """Process events in virtual time until ``until``, ``stop()`` is true, or nothing is left.

        Returns the virtual time reached.
        """
        heap = self._heap
        pop = heapq.heappop
        limit = float("inf") if until is None else until
        n = 0
        while heap:
            when, seq, fn, arg = pop(heap)
            if when > limit:
                _heappush(heap, (when, seq, fn, arg))  # (time, sequence) is unique: order unchanged
                self.now = until
                break
            self.now = when
            fn(arg)
            n += 1
            if not n & 63 and stop is not None and stop():
                break
        else:
            if until is not None:
                self.now = max(self.now, until)
        self.events_processed += n
        return self.now

    async def run_paced(
        self,
        *,
        speed: float = 1.0,
        until: float | None = None,
        stop: Callable[[], bool] | None = None,
        tick_s: float = 0.02,
        keep_running: bool = False,
    ) -> float:
        """Run so that virtual time advances ``speed`` times as fast as the wall clock.

        Returns at ``until``, when ``stop()`` is true, or (unless ``keep_running``)
        when no event is left. Raises ConfigError for a speed that is not positive.
        """
        if not speed > 0:
            raise ConfigError(f"speed must be positive, got {speed}")
        start_wall = time.monotonic()
        start_virtual = self.now
        while True:
            target = start_virtual + (time.monotonic() - start_wall) * speed
            if until is not None:
                target = min(target, until)
            self.run(until=target, stop=stop)
            if (stop is not None and stop()) or (until is not None and self.now >= until):
                return self.now
            if not self._heap and not keep_running:
                return self.now
            await asyncio.sleep(tick_s)

    def idle(self) -> bool:
        return not self._heap


def _call(callback: Callable[[], None]) -> None:
    callback()


def _lost(packet: bytes) -> None:
    """The arrival of a packet that was on a link when it went down."""


def _capture(item: tuple) -> None:
    writer, when, packet = item
    writer.write(when, packet)
