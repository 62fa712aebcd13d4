"""The user-space host: interfaces, demultiplexing, timers and the application API.

A HostStack owns a node's addresses and TCP connections. Its driver (the
simulator now, a Mininet endpoint process later) hands it received IP
packets with :meth:`HostStack.input_packet` and gives it a ``transmit``
callback and a scheduler. Applications get asyncio-Protocol-like callbacks
(see :class:`StreamHandler`) and a :class:`Stream` to write to.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from lab.errors import ConfigError, DecodeError, LocalProtocolError
from lab.stack.ipfrag import FragmentLimits, Ipv4Reassembler, Ipv6Reassembler, fragment_ipv4, fragment_ipv6
from lab.stack.syn_backlog import DEFAULT_BACKLOG, SynCookies
from lab.tcp import TcpConfig, TcpConnection
from lab.tcp.addresses import FourTuple
from lab.tcp.events import ConnectionEstablished, ConnectionTerminated, DataReceived, StreamEnded
from lab.tcp.extension import TcpExtension
from lab.tcp.group import ConnectionGroup, GroupConfig, GroupHook
from lab.tcp.segments import _option_record
from lab.tcp.state import TcpState
from lab.trace import NULL_TRACER, Tracer
from lab.wire.checksum import finish_partial_checksum, ones_sum, pack_address, unpack_address
from lab.wire.ip import IPV4_HEADER, Ipv4Packet, encode_ipv4
from lab.wire.tcp import ACK, RST, SYN, MaxSegmentSize, TcpSegment, decode_segment, encode_segment
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, decode_datagram, encode_datagram

TCP = 6
_from_bytes = int.from_bytes
_pack_ipv4 = IPV4_HEADER.pack


def _ipv4_constant_sum(src: bytes, dst: bytes, proto: int) -> int:
    """The sum of the header words that do not change from packet to packet."""
    return sum(struct.unpack("!10H", IPV4_HEADER.pack(0x45, 0, 0, 0, 0x4000, 64, proto, 0, src, dst)))


def _ipv4_packet(base: int, ident: int, src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    """An IPv4 packet (no options, DF, TTL 64) with its header checksum from ``base``."""
    total = 20 + len(payload)
    csum = base + total + ident
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = (csum & 0xFFFF) + (csum >> 16)
    return IPV4_HEADER.pack(0x45, 0, total, ident, 0x4000, 64, proto, ~csum & 0xFFFF, src, dst) + payload


_WRITABLE_STATES = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})
_V6_HEADER = struct.Struct("!IHBB16s16s")
WRITE_LOW_WATER = 256 * 1024
IPV6_FRAGMENT_HEADER = 44  # RFC 8200 §4.5
IPV6_REASSEMBLY_TIMEOUT_S = 60.0  # RFC 8200 §4.5
GROUP_EVICT_AFTER_S = 1.0  # a half-open group this old (a whole initial RTO unanswered) may give way to a new SYN


class Scheduler(Protocol):
    def call_at(self, when: float, callback: Callable[[], None]) -> None: ...

    @property
    def now(self) -> float: ...


class StreamHandler:
    """Application callbacks for one TCP connection; override what you need."""

    def connection_made(self, stream: Stream) -> None: ...

    def data_received(self, stream: Stream, data: bytes) -> None: ...

    def eof_received(self, stream: Stream) -> None:
        """The peer closed its direction."""

    def writable(self, stream: Stream) -> None:
        """The send buffer drained below the low-water mark."""

    def connection_lost(self, stream: Stream, reason: str, reset: bool) -> None: ...


class DatagramHandler:
    def datagram_received(self, host: HostStack, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None: ...


class _Entry:
    """What the host keeps per connection it drives: a TcpConnection, or a ConnectionGroup
    (``group`` is then the entry of the group the member belongs to)."""

    __slots__ = ("conn", "group", "hook", "key", "pumping", "route", "stream", "timer_at")

    def __init__(self, conn: Any, stream: Stream | None, key: bytes = b"") -> None:
        self.conn = conn
        self.stream = stream
        self.key = key
        self.pumping = False
        self.timer_at: float | None = None  # the wake-up the host has scheduled
        self.route: tuple | None = None  # the cached way out (see HostStack._route_for)
        self.group: _Entry | None = None  # for a member connection: its group's entry
        self.hook: GroupHook | None = None  # for a group: the hook that made it


class Stream:
    """A connection as an application sees it."""

    def __init__(self, host: HostStack, entry: _Entry, handler: StreamHandler) -> None:
        self.host = host
        self._entry = entry
        self.conn = entry.conn
        self.handler = handler
        self.closed = False
        self.wants_writable = type(handler).writable is not StreamHandler.writable

    @property
    def addr(self) -> FourTuple:
        return self.conn.addr

    def send(self, data: bytes) -> None:
        """Raises LocalProtocolError after close()."""
        self.conn.send(data)
        self.host._touched = True
        self.host._pump(self._entry)

    def close(self) -> None:
        if self.conn.state in (TcpState.CLOSED,):
            return
        self.conn.close(now=self.host.now)
        self.host._touched = True
        self.host._pump(self._entry)

    def abort(self, reason: str = "aborted by application") -> None:
        self.conn.abort(reason, now=self.host.now)
        self.host._touched = True
        self.host._pump(self._entry)

    def pause_reading(self) -> None:
        self.conn.pause_reading()

    def resume_reading(self) -> None:
        self.conn.resume_reading(now=self.host.now)
        self.host._touched = True
        self.host._pump(self._entry)

    @property
    def send_buffered(self) -> int:
        """Bytes written but not yet sent once (as an MPTCP connection counts them): an
        application that keeps this topped up never leaves the window idle, however
        large the window grows; sent data waits for its ACK in the connection."""
        conn = self.conn
        return conn.unsent_bytes if isinstance(conn, TcpConnection) else conn.send_buffered


class HostStack:
    """TCP/UDP for one host, driven by packets in and a scheduler.

    Protocols made of several TCP connections (Multipath TCP) plug in through
    :mod:`lab.tcp.group`: ``connect``/``listen`` take their config as ``group=``.
    """

    def __init__(
        self,
        name: str,
        *,
        interfaces: dict[str, list[str]],
        transmit: Callable[[str, bytes], None],
        scheduler: Scheduler,
        tracer: Tracer = NULL_TRACER,
        rng: random.Random | None = None,
        tcp_config: TcpConfig | None = None,
        mtus: dict[str, int] | None = None,
        fragment_limits: FragmentLimits | None = None,
    ) -> None:
        """``interfaces`` maps interface name -> its addresses (IPv4 and/or IPv6 text); ``mtus``
        interface name -> its MTU (a UDP datagram larger than it leaves as IP fragments;
        interfaces not named have no limit)."""
        self.name = name
        self.tracer = tracer
        self._trace_on = tracer.enabled
        self._transmit = transmit
        # per-interface senders when the driver offers them (saves a lookup per packet)
        self._senders: dict[str, Callable[[bytes], None]] = {}
        self._checksum_offload: set[str] = set()  # interfaces whose sender finishes TCP checksums
        self._scheduler = scheduler
        self.rng = rng or random.Random(0)
        self.tcp_config = tcp_config or TcpConfig()
        self._egress: dict[bytes, str] = {}
        self.addresses: list[str] = []
        for ifname, addrs in interfaces.items():
            for a in addrs:
                self._egress[pack_address(a)] = ifname
                self.addresses.append(a)
        self._conns: dict[bytes, _Entry] = {}
        # the same IPv4 entries keyed as packets carry them: src, dst, sport, dport
        self._wire_conns: dict[bytes, _Entry] = {}
        self._listeners: dict[
            int,
            tuple[
                Callable[[], StreamHandler],
                TcpConfig | None,
                Callable[[], TcpExtension | None] | None,
                GroupConfig | None,
            ],
        ] = {}
        self._udp: dict[int, DatagramHandler] = {}
        self.reserved_ports: set[int] = set()  # fixed client ports a workload will connect() from
        self._ident = 0
        self._header_sums: dict[tuple[bytes, bytes, int], int] = {}
        self._next_port = 40000 + self.rng.randrange(0, 20000)
        self._touched = False  # an application call since the pump last looked
        self._hooks: dict[Any, GroupHook] = {}  # hook class -> this host's hook
        self._groups: dict[int, _Entry] = {}  # id(group) -> its entry, while it lives
        self._group_routes: dict[FourTuple, tuple] = {}
        self._backlog: dict[int, int] = {}  # listening port -> most half-open connections it keeps
        self._half_open: dict[int, list[_Entry]] = {}  # listening port -> connections it made, maybe half-open
        self._half_open_groups: dict[int, list[tuple[float, _Entry]]] = {}  # the same for groups, with their birth
        self._cookies: SynCookies | None = None  # made when a backlog first fills
        self.mtus = dict(mtus or {})
        self._mtu_of_source = {
            pack_address(a): self.mtus[ifname]
            for ifname, addrs in interfaces.items()
            if ifname in self.mtus
            for a in addrs
            if a
        }
        self.reassembler = Ipv4Reassembler(fragment_limits, on_drop=self._fragment_dropped)
        limits6 = fragment_limits or FragmentLimits(timeout_s=IPV6_REASSEMBLY_TIMEOUT_S)
        self.reassembler6 = Ipv6Reassembler(limits6, on_drop=self._fragment_dropped)
        self._reassembly_timer_at: float | None = None

    @property
    def now(self) -> float:
        return self._scheduler.now

    def set_interface_sender(
        self, ifname: str, sender: Callable[[bytes], None], *, checksum_offload: bool = False
    ) -> None:
        """Let packets for ``ifname`` go straight to ``sender`` instead of ``transmit``. With
        ``checksum_offload`` the sender finishes every IPv4 TCP checksum itself: connections
        leaving there may hand it data segments whose checksum field is not filled in."""
        self._senders[ifname] = sender
        if checksum_offload:
            self._checksum_offload.add(ifname)
        else:
            self._checksum_offload.discard(ifname)
        self._group_routes.clear()  # cached ways out name their sender
        for entry in self._conns.values():
            entry.route = None
            entry.conn.checksum_offload = False  # until its way out is known again

    # --- application API

    def connect(
        self,
        remote_addr: str,
        remote_port: int,
        handler: StreamHandler,
        *,
        local_addr: str | None = None,
        local_port: int | None = None,
        config: TcpConfig | None = None,
        extension: TcpExtension | None = None,
        group: GroupConfig | None = None,
    ) -> Stream:
        """Open a connection (with ``group``, one of that protocol, e.g. ``MptcpConfig()``).
        Raises ConfigError for an address this host does not own."""
        family_v6 = ":" in remote_addr
        if local_addr is None:
            local_addr = next((a for a in self.addresses if (":" in a) == family_v6), None)
            if local_addr is None:
                raise ConfigError(f"{self.name} has no {'IPv6' if family_v6 else 'IPv4'} address")
        elif pack_address(local_addr) not in self._egress:
            raise ConfigError(f"{self.name} does not own address {local_addr}")
        if local_port is None:
            local_port = self._alloc_port()
        addr = FourTuple(local_addr, local_port, remote_addr, remote_port)
        if group is not None:
            hook = self._hook(group)
            conn = hook.open(group, tcp_config=config)
            entry = self._group_entry(conn, hook)
            stream = entry.stream = Stream(self, entry, handler)
            conn.connect(addr, now=self.now)  # type: ignore[attr-defined]
            self._pump(entry)
            return stream
        conn = self._new_conn(addr, config, extension)
        entry = _Entry(conn, None, _key(addr))
        stream = entry.stream = Stream(self, entry, handler)
        self._register(entry)
        conn.connect(now=self.now)
        self._pump(entry)
        return stream

    def listen(
        self,
        port: int,
        handler_factory: Callable[[], StreamHandler],
        *,
        config: TcpConfig | None = None,
        extension_factory: Callable[[], TcpExtension | None] | None = None,
        group: GroupConfig | None = None,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        """Accept connections on ``port`` (any local address), as ``group``'s protocol when given
        (plain TCP for clients that do not offer it). At most ``backlog`` plain TCP connections
        are half-open at once; beyond, SYNs get SYN cookies, or are dropped when an extension
        needs state from the SYN (see :mod:`lab.stack.syn_backlog`). Raises ConfigError if the
        port is taken or ``backlog`` is not 1..65535."""
        if not 0 < port < 65536:
            raise ConfigError(f"port must be 1..65535, got {port}")
        if isinstance(backlog, bool) or not isinstance(backlog, int) or not 0 < backlog < 65536:
            raise ConfigError(f"backlog must be 1..65535, got {backlog!r}")
        self._backlog[port] = backlog
        if port in self._listeners:
            raise ConfigError(f"{self.name}: port {port} already has a listener")
        self._listeners[port] = (handler_factory, config, extension_factory, group)
        if group is not None:
            self._hook(group).listening(port, group)

    def reserve_port(self, port: int) -> None:
        """Announce that a connect() will use ``port`` as its local port: the port
        allocator skips it and a real-network backend fences it off from the kernel.
        Raises ConfigError for a port outside 1..65535."""
        if not 0 < port < 65536:
            raise ConfigError(f"port must be 1..65535, got {port}")
        self.reserved_ports.add(port)

    def allocate_port(self) -> int:
        """A free local port (40000..60999). Raises LocalProtocolError when none is left."""
        return self._alloc_port()

    def bind_udp(self, port: int, handler: DatagramHandler) -> None:
        if port in self._udp:
            raise ConfigError(f"{self.name}: UDP port {port} already bound")
        self._udp[port] = handler

    def send_datagram(self, data: bytes, *, src: tuple[str, int], dst: tuple[str, int]) -> None:
        """Send one UDP datagram; larger than its interface's MTU, it leaves as IP fragments (IPv4
        with DF clear, as Linux sends a UDP socket's datagram larger than the path; IPv6 with a
        Fragment header)."""
        sp, dp = pack_address(src[0]), pack_address(dst[0])
        payload = encode_datagram(UdpDatagram(src[1], dst[1], data), sp, dp)
        mtu = self._mtu_of_source.get(sp)
        if mtu is not None and (20 if len(sp) == 4 else 40) + len(payload) > mtu:
            self._send_fragments(sp, dp, UDP_PROTOCOL, payload, mtu)
            return
        self._send_ip(sp, dp, UDP_PROTOCOL, payload)

    def connections(self) -> list[TcpConnection]:
        """Every TCP connection, members of groups (MPTCP subflows) included."""
        return [e.conn for e in self._conns.values()]

    def streams(self) -> list[Stream]:
        """Every stream an application holds on this host (a connection or a group)."""
        return [e.stream for e in self._conns.values() if e.stream is not None] + [
            e.stream for e in self._groups.values() if e.stream is not None
        ]

    def groups(self) -> list[ConnectionGroup]:
        """Every live connection group (MPTCP connection) of this host."""
        return [g for hook in self._hooks.values() for g in hook.groups()]

    def hook(self, cls: type[GroupHook]) -> GroupHook | None:
        """This host's hook of class ``cls``, once a connect or listen has needed one."""
        return self._hooks.get(cls)

    def interface_changed(self, ifname: str, up: bool) -> None:
        """The carrier of ``ifname`` went down or came back: groups react (MPTCP path managers
        close the subflows on its addresses and REMOVE_ADDR them, or announce and rejoin)."""
        addresses = [a for a in self.addresses if self._egress.get(pack_address(a)) == ifname]
        for group in self.groups():
            for address in addresses:
                group.address_changed(address, up, now=self.now)
            entry = self._groups.get(id(group))
            if entry is not None:
                self._pump(entry)

    # --- packets in

    def input_packet(self, packet: bytes, *, checksum_partial: bool = False) -> None:
        """One received IP packet. Never raises: bad packets are recorded and dropped.

        ``checksum_partial``: a TCP packet that the receiving kernel coalesced from segments it
        had checked (GRO, on Mininet), whose checksum field holds only the pseudo-header's sum.
        An established connection takes it as checked; any other path finishes the checksum
        first and checks it as usual."""
        if len(packet) >= 40 and packet[0] == 0x45 and packet[9] == TCP and not (packet[6] & 0x3F or packet[7]):
            # the common case: IPv4 without options carrying TCP, not a fragment
            total = (packet[2] << 8) | packet[3]
            header = _from_bytes(packet[:20], "big")
            dst = packet[16:20]
            if total == len(packet) and header and not header % 0xFFFF and dst in self._egress:
                entry = self._wire_conns.get(packet[12:24])
                if entry is not None:  # an established demultiplexing entry: straight in
                    entry.conn.receive_segment(packet[20:], now=self._scheduler.now, verified=checksum_partial)
                    self._pump(entry)
                    return
                if checksum_partial:
                    packet = finish_partial_checksum(packet, 20, 16)
                self._input_tcp(packet[12:16], dst, packet[20:])
                return
        if checksum_partial and len(packet) >= 60:
            version = packet[0] >> 4
            if version == 4 and packet[9] == TCP:
                packet = finish_partial_checksum(packet, (packet[0] & 0x0F) * 4, 16)
            elif version == 6 and packet[6] == TCP:
                packet = finish_partial_checksum(packet, 40, 16)
        try:
            version = packet[0] >> 4 if packet else 0
            if version == 4:
                if len(packet) < 20:
                    raise DecodeError("IPv4 header truncated", field="header", offset=len(packet))
                vihl, _tos, total, _id, _frag, _ttl, proto, _c, src, dst = IPV4_HEADER.unpack_from(packet)
                ihl = (vihl & 0x0F) * 4
                if ihl < 20 or total < ihl or total > len(packet):
                    raise DecodeError("bad IPv4 lengths", field="total_length", offset=2)
                if ones_sum(packet[:ihl]) != 0xFFFF:
                    raise DecodeError("IPv4 header checksum mismatch", field="header_checksum", offset=10)
                if _frag & 0x3FFF:  # MF or an offset: a fragment
                    if dst in self._egress:
                        self._input_fragment(packet)
                    else:
                        self._drop(f"not addressed to {self.name}: {unpack_address(dst)}")
                    return
                payload = packet[ihl:total]
            elif version == 6:
                if len(packet) < 40:
                    raise DecodeError("IPv6 header truncated", field="header", offset=len(packet))
                _first, plen, proto, _hl, src, dst = _V6_HEADER.unpack_from(packet)
                if 40 + plen > len(packet):
                    raise DecodeError("bad IPv6 payload length", field="payload_length", offset=4)
                if proto == IPV6_FRAGMENT_HEADER:
                    if dst in self._egress:
                        self._input_fragment(packet)
                    else:
                        self._drop(f"not addressed to {self.name}: {unpack_address(dst)}")
                    return
                payload = packet[40 : 40 + plen]
            else:
                raise DecodeError(f"IP version {version}", field="version", offset=0)
        except DecodeError as exc:
            self._drop(f"bad IP packet: {exc}")
            return
        if dst not in self._egress:
            self._drop(f"not addressed to {self.name}: {unpack_address(dst)}")
            return
        if proto == TCP:
            self._input_tcp(src, dst, payload)
        elif proto == UDP_PROTOCOL:
            self._input_udp(src, dst, payload)
        else:
            self._drop(f"protocol {proto} not handled")

    def _drop(self, reason: str) -> None:
        if self._trace_on:
            self.tracer.record(self.now, "ip", "segment_dropped", {"reason": reason})

    # --- IP fragments (lab.stack.ipfrag)

    def _send_fragments(self, src: bytes, dst: bytes, proto: int, payload: bytes, mtu: int) -> None:
        ifname = self._egress.get(src)
        if ifname is None:
            self._drop(f"no interface owns source {unpack_address(src)}")
            return
        self._ident = ident = (self._ident + 1) & 0xFFFF
        if len(src) == 4:
            whole = encode_ipv4(
                Ipv4Packet(unpack_address(src), unpack_address(dst), proto, payload, identification=ident, flags=0)
            )
            fragments = fragment_ipv4(whole, mtu)
        else:  # RFC 8200 §4.5: only the source fragments, with a Fragment header
            whole = _V6_HEADER.pack(6 << 28, len(payload), proto, 64, src, dst) + payload
            fragments = fragment_ipv6(whole, mtu, ident)
        if self._trace_on:
            self.tracer.record(
                self.now,
                "ip",
                "segment_sent",
                {"event": "fragmented", "id": ident, "len": len(whole), "fragments": len(fragments), "mtu": mtu},
            )
        sender = self._senders.get(ifname)
        for fragment in fragments:
            if sender is not None:
                sender(fragment)
            else:
                self._transmit(ifname, fragment)

    def _input_fragment(self, packet: bytes) -> None:
        now = self.now
        whole = (self.reassembler if packet[0] >> 4 == 4 else self.reassembler6).add(packet, now)
        if whole is None:
            self._arm_reassembly_timer()
            return
        if self._trace_on:
            self.tracer.record(
                now,
                "ip",
                "segment_received",
                {"event": "reassembled", "len": len(whole)}
                | ({"id": (whole[4] << 8) | whole[5]} if whole[0] >> 4 == 4 else {}),
            )
        self._arm_reassembly_timer()
        self.input_packet(whole)

    def _arm_reassembly_timer(self) -> None:
        when = min(
            (t for t in (self.reassembler.next_expiry(), self.reassembler6.next_expiry()) if t is not None),
            default=None,
        )
        if when is None or (self._reassembly_timer_at is not None and self._reassembly_timer_at <= when):
            return
        self._reassembly_timer_at = when
        self._scheduler.call_at(when, self._reassembly_timeout)

    def _reassembly_timeout(self) -> None:
        self._reassembly_timer_at = None
        self.reassembler.expire(self.now)
        self.reassembler6.expire(self.now)
        self._arm_reassembly_timer()

    def _fragment_dropped(self, reason: str, detail: dict) -> None:
        if self._trace_on:
            self.tracer.record(self.now, "ip", "segment_dropped", {"reason": reason, **detail})

    def _input_tcp(self, src: bytes, dst: bytes, seg: bytes) -> None:
        if len(seg) < 20:
            self._drop("TCP segment shorter than its header")
            return
        key = dst + seg[2:4] + src + seg[0:2]
        entry = self._conns.get(key)
        if entry is not None:
            entry.conn.receive_segment(seg, now=self._scheduler.now)
            self._pump(entry)
            return
        dport = (seg[2] << 8) | seg[3]
        sport = (seg[0] << 8) | seg[1]
        listener = self._listeners.get(dport)
        flags = seg[13]
        if flags & SYN and not flags & (ACK | RST):
            if listener is not None:
                factory, config, ext_factory, group = listener
                addr = FourTuple(unpack_address(dst), dport, unpack_address(src), sport)
                if group is not None:
                    hook = self._hook(group)
                    if hook.makes_group(seg) and not self._group_backlog_admits(dport):
                        return
                    verdict = self._group_syn(hook, addr, seg, group, config, factory)
                    if verdict is False:
                        return
                    if verdict is True or isinstance(verdict, tuple):
                        self._reset_unknown(src, dst, seg, options=() if verdict is True else verdict)
                        return
                if self._backlog_full(dport):
                    if ext_factory is None and group is None:
                        self._send_cookie(src, dst, seg, config)
                    else:
                        self._drop(f"SYN to port {dport}: backlog of {self._backlog[dport]} half-open connections full")
                    return
                conn = self._new_conn(addr, config, ext_factory() if ext_factory else None)
                entry = _Entry(conn, None, _key(addr))
                entry.stream = Stream(self, entry, factory())
                self._register(entry)
                self._half_open.setdefault(dport, []).append(entry)
                conn.listen(now=self.now)
                conn.receive_segment(seg, now=self.now)
                self._pump(entry)
                return
            if self._hooks:  # a port a hook announced (MPTCP: MP_JOIN SYNs only)
                addr = FourTuple(unpack_address(dst), dport, unpack_address(src), sport)
                for hook in self._hooks.values():
                    verdict = self._group_syn(hook, addr, seg, None, None, None)
                    if verdict is False:
                        return
                    if verdict is True:
                        break
                    if isinstance(verdict, tuple):
                        self._reset_unknown(src, dst, seg, options=verdict)
                        return
        elif (
            flags & ACK
            and not flags & (SYN | RST)
            and self._cookies is not None
            and listener is not None
            and listener[2] is None
            and listener[3] is None
            and self._accept_cookie(src, dst, seg, listener)
        ):
            return
        self._reset_unknown(src, dst, seg)

    def _backlog_full(self, port: int) -> bool:
        """Whether ``port``'s listener already holds its backlog of half-open connections."""
        made = self._half_open.get(port)
        limit = self._backlog.get(port, DEFAULT_BACKLOG)
        if made is None or len(made) < limit:
            return False
        made[:] = [e for e in made if e.conn.state in (TcpState.LISTEN, TcpState.SYN_RECEIVED)]
        return len(made) >= limit

    def _group_backlog_admits(self, port: int) -> bool:
        """Whether a SYN that makes a new group (an MPTCP connection) may have state: yes below the
        listener's backlog of half-open ones; at it, only by evicting the oldest when its SYN/ACK has
        gone unanswered for GROUP_EVICT_AFTER_S (as BSD's syncache drops its oldest entry: a flood's
        spoofed SYNs never answer, a real client answers within a round trip). Otherwise the SYN is
        dropped and the client retries (lab.stack.syn_backlog)."""
        made = self._half_open_groups.get(port)
        limit = self._backlog.get(port, DEFAULT_BACKLOG)
        if not made or len(made) < limit:
            return True
        made[:] = [(born, e) for born, e in made if e.conn.state is TcpState.SYN_SENT]
        if len(made) < limit:
            return True
        born, oldest = made[0]
        if self.now - born >= GROUP_EVICT_AFTER_S:
            made.pop(0)
            if self._trace_on:
                self.tracer.record(
                    self.now,
                    "tcp",
                    "state_updated",
                    {"conn": str(oldest.conn.addr), "syn_backlog": "evicted", "age_s": round(self.now - born, 3)},
                )
            if oldest.stream is not None:  # the application never saw this connection: it hears nothing
                oldest.stream.handler = StreamHandler()
            oldest.conn.abort("half-open connection evicted: SYN backlog full", now=self.now)
            self._touched = True
            self._pump(oldest)
            return True
        self._drop(f"SYN to port {port}: backlog of {limit} half-open connections full")
        return False

    def _send_cookie(self, src: bytes, dst: bytes, raw: bytes, config: TcpConfig | None) -> None:
        """Answer a SYN beyond the backlog with a SYN cookie and keep nothing (lab.stack.syn_backlog)."""
        try:
            syn = decode_segment(raw, src, dst)
        except DecodeError as exc:
            self._drop(f"bad TCP segment: {exc}")
            return
        if self._cookies is None:
            self._cookies = SynCookies(self.rng.randbytes(16))
        peer_mss = next((o.value for o in syn.options if type(o) is MaxSegmentSize), 536)
        four = dst + src + raw[2:4] + raw[0:2]
        isn, mss = self._cookies.make(four, syn.seq, min(peer_mss, (config or self.tcp_config).mss), now=self.now)
        reply = TcpSegment(
            syn.dst_port, syn.src_port, isn, (syn.seq + 1) & 0xFFFFFFFF, SYN | ACK, 65535, (MaxSegmentSize(mss),)
        )
        if self._trace_on:
            self.tracer.record(
                self.now,
                "tcp",
                "segment_sent",
                {
                    "conn": str(FourTuple(unpack_address(dst), syn.dst_port, unpack_address(src), syn.src_port)),
                    "flags": "SA",
                    "seq": isn,
                    "ack": reply.ack,
                    "len": 0,
                    "win": 65535,
                    "options": [{"kind": "MSS", "value": mss}],
                    "reason": "SYN cookie: backlog full",
                },
            )
        self._send_ip(dst, src, TCP, encode_segment(reply, dst, src))

    def _accept_cookie(self, src: bytes, dst: bytes, raw: bytes, listener: tuple) -> bool:
        """An ACK for no connection that returns a valid SYN cookie makes the connection."""
        assert self._cookies is not None
        seq = int.from_bytes(raw[4:8], "big")
        ack = int.from_bytes(raw[8:12], "big")
        four = dst + src + raw[2:4] + raw[0:2]
        mss = self._cookies.check(four, (seq - 1) & 0xFFFFFFFF, (ack - 1) & 0xFFFFFFFF, now=self.now)
        if mss is None:
            return False
        factory, config, _ext, _group = listener
        sport, dport = int.from_bytes(raw[0:2], "big"), int.from_bytes(raw[2:4], "big")
        addr = FourTuple(unpack_address(dst), dport, unpack_address(src), sport)
        conn = self._new_conn(addr, config, None)
        conn._iss = (ack - 1) & 0xFFFFFFFF
        entry = _Entry(conn, None, _key(addr))
        entry.stream = Stream(self, entry, factory())
        self._register(entry)
        conn.listen(now=self.now)
        # the SYN the cookie stands for (its MSS; nothing else fits in a cookie), and our SYN/ACK
        # to it, which went out already: replayed without a trace, then the ACK as it came
        window = int.from_bytes(raw[14:16], "big")
        syn = TcpSegment(sport, dport, (seq - 1) & 0xFFFFFFFF, 0, SYN, window, (MaxSegmentSize(mss),))
        tracer, trace_on = conn._tracer, conn._trace_on
        conn._tracer, conn._trace_on = NULL_TRACER, False
        conn.receive_segment(encode_segment(syn, src, dst), now=self.now)
        conn.segments_to_send(now=self.now)
        conn._tracer, conn._trace_on = tracer, trace_on
        if self._trace_on:
            self.tracer.record(
                self.now, "tcp", "state_updated", {"conn": str(addr), "syn_cookie": "accepted", "mss": mss}
            )
        conn.receive_segment(raw, now=self.now)
        self._pump(entry)
        return True

    def _group_syn(
        self,
        hook: GroupHook,
        addr: FourTuple,
        seg: bytes,
        group: GroupConfig | None,
        config: TcpConfig | None,
        factory: Callable[[], StreamHandler] | None,
    ) -> bool | None:
        """Offer a SYN to ``hook``: False when a group took it, True when the hook wants it
        reset (a tuple: reset with these TCP options), None when the hook left it alone."""
        taken = hook.syn_arrived(addr, seg, config=group, tcp_config=config, now=self.now)
        if taken is None or taken is True or taken is False or isinstance(taken, tuple):
            return taken
        entry = self._groups.get(id(taken))
        if entry is None:
            entry = self._group_entry(taken, hook)
            if factory is not None:
                entry.stream = Stream(self, entry, factory())
                self._half_open_groups.setdefault(addr.local_port, []).append((self.now, entry))
        self._pump(entry)
        return False

    def _reset_unknown(self, src: bytes, dst: bytes, raw: bytes, *, options: tuple = ()) -> None:
        """RFC 9293 3.10.7.1: a segment for no connection gets a RST (unless it is one);
        ``options`` ride on it (MPTCP: MP_TCPRST saying why a join was refused)."""
        try:
            seg = decode_segment(raw, src, dst)
        except DecodeError as exc:
            self._drop(f"bad TCP segment: {exc}")
            return
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            rst = TcpSegment(seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & 0xFFFFFFFF, RST | ACK, 0)
        if options:
            rst = replace(rst, options=tuple(options))
        if self._trace_on:
            self.tracer.record(
                self.now,
                "tcp",
                "segment_sent",
                {
                    "conn": str(FourTuple(unpack_address(dst), seg.dst_port, unpack_address(src), seg.src_port)),
                    "flags": "RA" if rst.flags & ACK else "R",
                    "seq": rst.seq,
                    "ack": rst.ack,
                    "len": 0,
                    "win": 0,
                    "reason": "no connection" if not options else "refused",
                    **({"options": [_option_record(o) for o in options]} if options else {}),
                },
            )
        self._send_ip(dst, src, TCP, encode_segment(rst, dst, src))

    def _input_udp(self, src: bytes, dst: bytes, payload: bytes) -> None:
        try:
            dgram = decode_datagram(payload, src, dst)
        except DecodeError as exc:
            self._drop(f"bad UDP datagram: {exc}")
            return
        handler = self._udp.get(dgram.dst_port)
        if handler is None:
            self._drop(f"UDP port {dgram.dst_port} unreachable")
            return
        handler.datagram_received(
            self, dgram.payload, (unpack_address(src), dgram.src_port), (unpack_address(dst), dgram.dst_port)
        )

    # --- connection groups (lab.tcp.group)

    def _hook(self, group: GroupConfig) -> GroupHook:
        cls = group.hook
        hook = self._hooks.get(cls)
        if hook is None:
            hook = self._hooks[cls] = cls(self)
        return hook

    def _group_entry(self, group: ConnectionGroup, hook: GroupHook) -> _Entry:
        entry = _Entry(group, None)
        entry.group = entry
        entry.hook = hook
        self._groups[id(group)] = entry
        return entry

    def _pump_group(self, entry: _Entry) -> None:
        if entry.pumping:
            return
        entry.pumping = True
        group = entry.conn
        stream: Stream | None = entry.stream
        now = self._scheduler.now
        writable_checked = False
        try:
            for _ in range(100000):
                outs = group.segments_to_send(now=now)
                for conn in group.take_new_subflows():
                    member = _Entry(conn, stream, _key(conn.addr))
                    member.group = entry
                    self._register(member)
                for conn in group.take_closed_subflows():
                    self._unregister(conn.addr)
                    self._group_routes.pop(conn.addr, None)
                routes = self._group_routes
                for out in outs:
                    route = routes.get(out.addr)
                    if route is None:
                        route = routes[out.addr] = self._group_route(out.addr)
                    src, dst, sender, base = route
                    if sender is None:
                        self._send_ip(src, dst, TCP, out.data)
                        continue
                    # IPv4 with a direct sender: _ipv4_packet() inlined, as in _pump()
                    self._ident = ident = (self._ident + 1) & 0xFFFF
                    data = out.data
                    total = 20 + len(data)
                    csum = base + total + ident
                    csum = (csum & 0xFFFF) + (csum >> 16)
                    csum = (csum & 0xFFFF) + (csum >> 16)
                    sender(_pack_ipv4(0x45, 0, total, ident, 0x4000, 64, TCP, ~csum & 0xFFFF, src, dst) + data)
                self._touched = False
                while (e := group.next_event()) is not None:
                    if stream is None:
                        continue
                    handler = stream.handler
                    t = type(e)
                    if t is DataReceived:
                        handler.data_received(stream, e.data)
                    elif t is ConnectionEstablished:
                        handler.connection_made(stream)
                    elif t is StreamEnded:
                        handler.eof_received(stream)
                    elif t is ConnectionTerminated:
                        stream.closed = True
                        handler.connection_lost(stream, e.reason, e.reset)
                if (
                    stream is not None
                    and stream.wants_writable
                    and not writable_checked
                    and not stream.closed
                    and group.writable
                    and group.send_buffered < WRITE_LOW_WATER
                ):
                    writable_checked = True
                    stream.handler.writable(stream)
                if not self._touched:
                    break
        finally:
            entry.pumping = False
        entry.hook.pumped(group)  # type: ignore[union-attr]
        if group.terminated:
            self._groups.pop(id(group), None)
        when = group.get_timer()
        if when is not None:
            scheduled = entry.timer_at
            if scheduled is None or when < scheduled:
                entry.timer_at = when
                self._scheduler.call_at(when, lambda e=entry, w=when: self._fire(e, w))

    # --- internals

    def _register(self, entry: _Entry) -> None:
        addr = entry.conn.addr
        self._conns[entry.key] = entry
        wire = _wire_key(addr)
        if wire is not None:
            self._wire_conns[wire] = entry

    def _unregister(self, addr: FourTuple) -> None:
        self._conns.pop(_key(addr), None)
        wire = _wire_key(addr)
        if wire is not None:
            self._wire_conns.pop(wire, None)

    def _alloc_port(self) -> int:
        for _ in range(30000):
            port = self._next_port
            self._next_port = 40000 if port >= 60999 else port + 1
            if (
                port not in self._listeners
                and port not in self.reserved_ports
                and not any(e.conn.addr.local_port == port for e in self._conns.values())
            ):
                return port
        raise LocalProtocolError(f"{self.name}: no free port")

    def _new_conn(self, addr: FourTuple, config: TcpConfig | None, extension: TcpExtension | None) -> TcpConnection:
        config = config or self.tcp_config
        mtu = self._mtu_of_source.get(pack_address(addr.local_addr)) if self._mtu_of_source else None
        if mtu is not None and mtu - 40 < config.mss:  # the MSS announced fits the interface (RFC 9293 §3.7.1)
            config = replace(config, mss=max(64, mtu - 40))
        return TcpConnection(
            addr=addr,
            config=config,
            tracer=self.tracer,
            rng=random.Random(self.rng.getrandbits(64)),
            extension=extension,
        )

    def _group_route(self, addr: FourTuple) -> tuple:
        """(src, dst, sender, constant header sum) for a member's packets; sender is None
        (and every packet goes through _send_ip) unless IPv4 with a direct sender."""
        src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
        ifname = self._egress.get(src)
        sender = self._senders.get(ifname) if ifname is not None else None
        if len(src) != 4 or sender is None:
            return (src, dst, None, 0)
        return (src, dst, sender, _ipv4_constant_sum(src, dst, TCP))

    def _route_for(self, conn: TcpConnection) -> tuple | tuple[Callable[[bytes], None], int, bytes, bytes]:
        """(sender, constant header sum, src, dst) for an IPv4 connection whose interface
        has a direct sender, else () (then every packet goes through _send_ip)."""
        src, dst = conn._local_packed, conn._remote_packed
        ifname = self._egress.get(src)
        sender = self._senders.get(ifname) if ifname is not None else None
        if len(src) != 4 or sender is None:
            conn.checksum_offload = False
            return ()
        conn.checksum_offload = ifname in self._checksum_offload
        return (sender, _ipv4_constant_sum(src, dst, TCP), src, dst)

    def _send_ip(self, src: bytes, dst: bytes, proto: int, payload: bytes) -> None:
        ifname = self._egress.get(src)
        if ifname is None:
            self._drop(f"no interface owns source {unpack_address(src)}")
            return
        if len(src) == 4:
            self._ident = ident = (self._ident + 1) & 0xFFFF
            key = (src, dst, proto)
            base = self._header_sums.get(key)
            if base is None:
                base = self._header_sums[key] = _ipv4_constant_sum(src, dst, proto)
            packet = _ipv4_packet(base, ident, src, dst, proto, payload)
        else:
            packet = _V6_HEADER.pack(6 << 28, len(payload), proto, 64, src, dst) + payload
        sender = self._senders.get(ifname)
        if sender is not None:
            sender(packet)
        else:
            self._transmit(ifname, packet)

    def _pump(self, entry: _Entry) -> None:
        """Move segments out, events to the application, and re-arm the timer."""
        group = entry.group
        if group is not None:  # a connection group or one of its members
            self._pump_group(group)
            return
        if entry.pumping:
            return  # an application callback inside this pump; the outer loop carries on
        entry.pumping = True
        conn = entry.conn
        stream: Stream | None = entry.stream
        now = self._scheduler.now
        send_ip = self._send_ip
        writable_checked = False
        wants_writable = stream is not None and stream.wants_writable
        try:
            for _ in range(100000):
                outs = conn.segments_to_send(now=now)
                if outs:
                    route = entry.route
                    if route is None:
                        route = entry.route = self._route_for(conn)
                    if route:  # IPv4 with a direct sender: build the header here
                        sender, base, src, dst = route
                        ident = self._ident
                        for out in outs:
                            ident = (ident + 1) & 0xFFFF
                            self._ident = ident
                            # _ipv4_packet() inlined: the checksum from the constant words' sum
                            data = out.data
                            total = 20 + len(data)
                            csum = base + total + ident
                            csum = (csum & 0xFFFF) + (csum >> 16)
                            csum = (csum & 0xFFFF) + (csum >> 16)
                            sender(_pack_ipv4(0x45, 0, total, ident, 0x4000, 64, TCP, ~csum & 0xFFFF, src, dst) + data)
                    else:
                        local = conn._local_packed
                        remote = conn._remote_packed
                        for out in outs:
                            send_ip(local, remote, TCP, out.data)
                self._touched = False
                events = conn._events
                while events:
                    ev = events.popleft()
                    if stream is None:
                        continue
                    handler = stream.handler
                    t = type(ev)
                    if t is DataReceived:
                        handler.data_received(stream, ev.data)
                    elif t is ConnectionEstablished:
                        handler.connection_made(stream)
                    elif t is StreamEnded:
                        handler.eof_received(stream)
                    elif t is ConnectionTerminated:
                        stream.closed = True
                        self._unregister(conn.addr)
                        handler.connection_lost(stream, ev.reason, ev.reset)
                if (
                    wants_writable
                    and not writable_checked
                    and not stream.closed
                    and conn.unsent_bytes < WRITE_LOW_WATER
                    and conn.state in _WRITABLE_STATES
                ):
                    writable_checked = True
                    stream.handler.writable(stream)
                if not self._touched:
                    break  # the application did nothing that could produce output
        finally:
            entry.pumping = False
        when = conn.get_timer()
        if when is not None:
            scheduled = entry.timer_at
            if scheduled is None or when < scheduled:
                entry.timer_at = when
                self._scheduler.call_at(when, lambda e=entry, w=when: self._fire(e, w))

    def _fire(self, entry: _Entry, when: float) -> None:
        if entry.timer_at != when:
            return  # superseded by an earlier timer
        entry.timer_at = None
        conn = entry.conn
        due = conn.get_timer()
        if due is not None and due <= self.now:
            conn.handle_timer(now=self.now)
        self._pump(entry)


def _wire_key(addr: FourTuple) -> bytes | None:
    """IPv4 header bytes 12..23 of a packet arriving on this connection."""
    if ":" in addr.local_addr:
        return None
    return (
        pack_address(addr.remote_addr)
        + pack_address(addr.local_addr)
        + addr.remote_port.to_bytes(2, "big")
        + addr.local_port.to_bytes(2, "big")
    )


def _key(addr: FourTuple) -> bytes:
    return (
        pack_address(addr.local_addr)
        + addr.local_port.to_bytes(2, "big")
        + pack_address(addr.remote_addr)
        + addr.remote_port.to_bytes(2, "big")
    )
