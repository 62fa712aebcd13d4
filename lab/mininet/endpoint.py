"""The endpoint process: a scenario's workloads on real packets inside one Mininet host.

``python -m lab.mininet.endpoint --config FILE`` runs inside a host (started
by :mod:`lab.mininet.run` through ``MininetBackend.popen``). It runs the same
:class:`lab.stack.host.HostStack` as the simulator, on the host's real interfaces:

* Packets. Per interface, an AF_PACKET ``SOCK_DGRAM`` socket per IP version
  receives the IP packets (the kernel strips the Ethernet header, so what
  ``recv`` returns goes straight to ``HostStack.input_packet`` without another
  copy); a classic BPF filter, attached before the socket is bound, lets
  through only TCP/UDP packets for the ports the user-space stack owns, so
  the stack never sees (or resets) the kernel's own connections. Packets
  leave through an AF_PACKET ``SOCK_RAW`` socket with a prebuilt Ethernet
  header towards the link's peer, whose MAC comes from the kernel's
  neighbour table or, failing that, from an ARP request of our own (the
  kernel owns the addresses and keeps answering ARP). Frames go through the
  interface's qdisc, so HTB shaping applies; a full queue (ENOBUFS) is a drop.
  The kernel is kept off the same segments by the fence
  (:mod:`lab.mininet.fence`), which the controller installs.
* Bulk. Python pays per packet, so where the kernel can batch, it does (the
  controller names the interfaces in the config's ``gro`` and ``gso``).
  GRO: on such an interface (as for GSO below) that no capture watches, the
  kernel coalesces received segments of a connection; the reader (a ``SOCK_RAW`` socket with
  PACKET_VNET_HDR) hands such a packet to the stack whole, marked as checked
  (the kernel checked each segment it merged). GSO: on a link with nothing to
  emulate (no rate, delay, jitter or loss: a qdisc would count a GSO frame as
  one packet), :class:`GsoSender` sends a run of consecutive full segments as
  one TCPv4 GSO frame that the kernel cuts into exactly those segments before
  the interface. The links and every capture carry the segments the stack
  made; only the number of system calls and stack calls changes.
* Time. An epoll loop with a timer heap is the HostStack's scheduler; ``now``
  is ``time.monotonic()`` minus the run's start, which the controller sends,
  so every process of a run shares one clock.
* Workloads. The process builds a run facade, :class:`EndpointRun`, with the
  attributes a :class:`lab.scenario.Workload` uses on a
  :class:`lab.scenario.ScenarioRun` (``spec``, ``seed``, ``scenario``,
  ``tracer``, ``payload()``, ``add_result()``, ``results`` and ``net`` with
  ``host()``, ``kernel_host()``, ``call_at()``, ``now``), and calls every
  workload's ``schedule(run)``, in the same order in every process.
  ``run.net.host(name)`` is the real HostStack for this process's own host
  and a :class:`RemoteHost` stand-in (every call a no-op) for the others;
  ``run.net.kernel_host(name, mptcp=...)`` likewise gives this host's kernel
  TCP or MPTCP behind the same application API
  (:class:`lab.mininet.apps.KernelStack`). So a workload written for the
  simulator runs unchanged: each process does its own host's part, and
  payloads and result slots line up because ``payload()``/``add_result()``
  are deterministic. No workload knows which backend runs it. What a
  workload learns on one host (the receiver's bytes and hash, the sender's
  start) goes into that host's half of the TransferResult; the controller
  merges the halves (the earliest ``started_at``, the receiver's
  ``completed_at`` and hash, ``extra`` dicts by key), so a check that needs
  both ends' state puts each end's facts into ``extra``.
  ``lab.scenario.runs_here(run, host)`` (``run.net.is_local``) tells a
  workload whether a host's part runs in this process, for protocol objects
  it would otherwise build for both ends.
* Reporting. Everything goes to the controller over stdout, one JSON object
  per line: trace records exactly as ``trace.jsonl`` holds them (``t`` in
  seconds since the run's start, ``node`` this host), and messages with a
  ``msg`` key: ``ready`` (owned ports, result slots), ``results`` (the
  local half of each TransferResult, whenever it changed; the controller
  merges the halves), ``stopped`` (counters) and ``error``. The controller answers
  on stdin with ``{"cmd": "start", "t0": MONOTONIC}`` and ``{"cmd": "stop"}``;
  end of stdin also stops the process.

Exit status: 0 after a stop, 2 for a scenario that does not fit (a
ConfigError, reported as an ``error`` message first), 1 for anything else.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import heapq
import itertools
import json
import os
import pickle
import random
import select
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from lab.errors import ConfigError
from lab.mininet.apps import KernelStack, mptcp_counters, tcp_info
from lab.mininet.fence import PortSet
from lab.scenario import Scenario, ScenarioRun
from lab.stack.apps import TransferResult
from lab.stack.host import HostStack
from lab.tcp import TcpConfig
from lab.topology import TopologySpec
from lab.trace import NULL_TRACER, Tracer, TraceRecord
from lab.wire.checksum import internet_checksum, ones_sum

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
SO_ATTACH_FILTER = 26
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 64 << 20  # holds a full receive window of frames at skb truesize
SNDBUF_BYTES = 16 << 20  # the interface's qdisc, not the socket, decides drops
RX_BATCH = 256
# GRO (on the host's interfaces the controller names in the config's "gro"): the kernel hands the
# packet socket TCP segments it coalesced, each behind a virtio_net_hdr (PACKET_VNET_HDR) that says
# so; the largest is one IP packet's worth
SOL_PACKET = 263
PACKET_VNET_HDR = 15
VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size
VNET_F_NEEDS_CSUM = 1
ETH_HLEN = 14
IP_AT = VNET_HDR_LEN + ETH_HLEN  # where the IP packet starts in a frame read with the virtio_net_hdr
GRO_FRAME_BYTES = IP_AT + 65535
VNET_GSO_TCPV4 = 1
NO_VNET_HDR = bytes(VNET_HDR_LEN)  # a frame sent as it is: no offload asked
TCP4_VNET_HDR = VNET_HDR.pack(VNET_F_NEEDS_CSUM, 0, 0, 0, ETH_HLEN + 20, 16)  # the kernel finishes the checksum
_from_bytes = int.from_bytes
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
TCP_ACK = 0x10
TCP_PSH = 0x08
GSO_MAX_IP_BYTES = 65535
# how long one interface's reader may go on before the loop serves the others and the
# timers: a busy path must not hold back another path's packets (a join's SYN/ACK) for
# hundreds of packets' processing
RX_BUDGET_S = 0.002
TICK_S = 0.05
# after every result is complete the controller stops with ``settle``: a kernel socket still
# open may be about to take its peer's close or reset (a busy machine runs this process late),
# and the facts its end notes then belong to the result; wait for them at most this long
SETTLE_S = 2.0
SETTLE_POLL_S = 0.02
METRICS_INTERVAL_S = 0.1
ARP_TIMEOUT_S = 1.0
ARP_ATTEMPTS = 3

# --- classic BPF (linux/filter.h), enough to select TCP/UDP destination ports

BPF_LD_B_ABS = 0x30
BPF_LD_H_ABS = 0x28
BPF_LD_H_IND = 0x48
BPF_LDX_B_MSH = 0xB1
BPF_JEQ_K = 0x15
BPF_JGT_K = 0x25
BPF_JGE_K = 0x35
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
ACCEPT_BYTES = 0x40000


def _assemble(program: list[tuple[Any, ...]]) -> list[tuple[int, int, int, int]]:
    """Resolve labels: items are ``("label", name)`` or ``(code, jt, jf, k)`` with
    jt/jf a label name or None (the next instruction)."""
    positions: dict[str, int] = {}
    pos = 0
    for item in program:
        if item[0] == "label":
            positions[item[1]] = pos
        else:
            pos += 1
    out: list[tuple[int, int, int, int]] = []
    for item in program:
        if item[0] == "label":
            continue
        code, jt, jf, k = item
        here = len(out)

        def offset(label: str | None, here: int = here) -> int:
            if label is None:
                return 0
            delta = positions[label] - here - 1
            if not 0 <= delta <= 255:
                raise ConfigError(f"BPF jump to {label} out of range ({delta})")
            return delta

        out.append((code, offset(jt), offset(jf), k))
    return out


def _port_checks(ranges: tuple[tuple[int, int], ...], prefix: str) -> list[tuple[Any, ...]]:
    program: list[tuple[Any, ...]] = []
    for n, (lo, hi) in enumerate(ranges):
        skip = f"{prefix}{n + 1}"
        if lo == hi:
            program.append((BPF_JEQ_K, "accept", None, lo))
        else:
            program += [(BPF_JGE_K, None, skip, lo), (BPF_JGT_K, skip, "accept", hi)]
        program.append(("label", skip))
    program.append((BPF_RET_K, None, None, 0))
    return program


def port_filter(ports: PortSet, *, ipv6: bool, offset: int = 0) -> list[tuple[int, int, int, int]]:
    """A classic BPF program over IP packets that accepts TCP/UDP packets to ``ports`` (first
    fragments included) and later IPv4 fragments of UDP datagrams. The IP header starts at
    ``offset``: 0 on a SOCK_DGRAM packet socket, 14 (after the Ethernet header) on SOCK_RAW."""
    program: list[tuple[Any, ...]] = []
    if ipv6:
        program += [(BPF_LD_B_ABS, None, None, 6), (BPF_JEQ_K, "tcp", None, 6), (BPF_JEQ_K, "udp", "drop", 17)]
        program += [("label", "tcp"), (BPF_LD_H_ABS, None, None, 42), *_port_checks(ports.tcp, "t")]
        program += [("label", "udp"), (BPF_LD_H_ABS, None, None, 42), *_port_checks(ports.udp, "u")]
    else:
        program += [(BPF_LD_B_ABS, None, None, 9), (BPF_JEQ_K, "tcp", None, 6), (BPF_JEQ_K, "udp", "drop", 17)]
        for proto, ranges in (("tcp", ports.tcp), ("udp", ports.udp)):
            program += [
                ("label", proto),
                (BPF_LD_H_ABS, None, None, 6),
                # a later fragment carries no ports: TCP ones are not ours (we send TCP with DF), UDP ones may
                # be (a large IKE message): the host stack reassembles them and drops what no one listens to
                (BPF_JSET_K, "accept" if proto == "udp" else "drop", None, 0x1FFF),
                (BPF_LDX_B_MSH, None, None, 0),
                (BPF_LD_H_IND, None, None, 2),
                *_port_checks(ranges, proto[0]),
            ]
    program += [
        ("label", "accept"),
        (BPF_RET_K, None, None, ACCEPT_BYTES),
        ("label", "drop"),
        (BPF_RET_K, None, None, 0),
    ]
    if offset:  # every load is relative to the packet's start: move them past the link header
        loads = (BPF_LD_B_ABS, BPF_LD_H_ABS, BPF_LDX_B_MSH, BPF_LD_H_IND)
        program = [(i[0], i[1], i[2], i[3] + offset) if i[0] in loads else i for i in program]
    return _assemble(program)


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER. Raises OSError."""
    raw = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# --- neighbours


def arp_table(ifname: str) -> dict[str, bytes]:
    """Complete IPv4 neighbour entries of ``ifname`` in this namespace (/proc/net/arp)."""
    out = {}
    try:
        with open("/proc/net/arp", encoding="ascii") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[5] == ifname and int(parts[2], 16) & 0x2:
            out[parts[0]] = bytes.fromhex(parts[3].replace(":", ""))
    return out


def resolve_mac(ifname: str, ip: str, *, own_mac: bytes, own_ip: str) -> bytes:
    """The MAC address of neighbour ``ip`` on ``ifname``: from the kernel's table, else
    by asking with ARP ourselves. Raises ConfigError when nobody answers."""
    known = arp_table(ifname).get(ip)
    if known is not None:
        return known
    target = socket.inet_aton(ip)
    request = b"\xff" * 6 + own_mac + struct.pack("!H", ETH_P_ARP)
    request += struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 1, own_mac, socket.inet_aton(own_ip), b"\0" * 6, target)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
        sock.bind((ifname, ETH_P_ARP))
        for _ in range(ARP_ATTEMPTS):
            sock.send(request)
            deadline = time.monotonic() + ARP_TIMEOUT_S
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                frame = sock.recv(2048)
                if len(frame) >= 42 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
                    if frame[28:32] == target:
                        return frame[22:28]
    raise ConfigError(f"{ifname}: no ARP reply from {ip}")


# --- GSO: runs of segments leave as one send


class GsoSender:
    """The sender of an interface whose socket has a virtio_net_hdr (PACKET_VNET_HDR): consecutive
    full-sized IPv4 TCP segments of one connection that the kernel's segmentation would rebuild byte
    for byte leave as one frame (TCPv4 GSO), the kernel cutting it into those same segments before
    the interface; anything else leaves as it is, one frame each.

    A segment extends the run when it is the next one: the same addresses, ports, ACK number,
    window and options, its sequence number where the last one's payload ends and its IP ID the
    next; every segment but the last carries exactly ``gso_size`` bytes and only ACK (the kernel
    gives PSH to the last segment alone, and IDs that count up from the first). A run leaves when
    a segment does not extend it, when it is as large as one IP packet may be, and when the
    callback that produced it is over (``EventLoop.after``). Every IPv4 TCP frame, a run or a single
    segment, leaves with its checksum for the kernel to finish (NEEDS_CSUM), so the stack need not
    sum the payloads it sends (``HostStack.set_interface_sender(checksum_offload=True)``). So the
    frames that cross the link, and their order, are the ones the stack produced; only the number
    of sends, and who sums the bytes, changes.
    """

    __slots__ = (
        "_send", "_eth", "_on_error", "_loop", "_run", "_run_bytes", "_hlen", "_size",
        "_key_addr", "_key_ack", "_key_win", "_key_opts", "_next_seq", "_next_id", "frames", "segments",
    )  # fmt: skip

    def __init__(
        self, send: Callable[[bytes], Any], eth4: bytes, eth6: bytes, loop: EventLoop, on_error: Callable[[OSError], None]
    ) -> None:
        self._send = send
        self._eth = (eth4, eth6)
        self._on_error = on_error
        self._loop = loop
        self._run: list[bytes] = []
        self._run_bytes = 0
        self._hlen = 0  # IP + TCP header bytes of the run's segments
        self._size = 0  # the run's gso_size: its first segment's payload
        # what the next segment must match: addresses and ports, ACK number and header length,
        # window, options; and its sequence number and IP ID
        self._key_addr = self._key_ack = self._key_win = self._key_opts = b""
        self._next_seq = self._next_id = 0
        self.frames = 0  # GSO frames sent, and the segments they carried
        self.segments = 0

    def __call__(self, packet: bytes) -> None:
        run = self._run
        if run:
            hlen = self._hlen
            size = len(packet) - hlen
            if (
                0 < size <= self._size
                and packet[12:24] == self._key_addr
                and packet[28:33] == self._key_ack
                and packet[34:36] == self._key_win
                and (hlen == 40 or packet[40:hlen] == self._key_opts)
                and _U32.unpack_from(packet, 24)[0] == self._next_seq
                and _U16.unpack_from(packet, 4)[0] == self._next_id
                and (packet[33] == TCP_ACK or packet[33] == TCP_ACK | TCP_PSH)
                and packet[0] == 0x45
                and packet[6] & 0x40
            ):
                run.append(packet)
                self._run_bytes += size
                if packet[33] != TCP_ACK or size < self._size or hlen + self._run_bytes + self._size > GSO_MAX_IP_BYTES:
                    self.flush()  # a last segment (PSH, or short), or as large as one IP packet may grow
                else:
                    self._next_seq = (self._next_seq + size) & 0xFFFFFFFF
                    self._next_id = (self._next_id + 1) & 0xFFFF
                return
            self.flush()
        if len(packet) >= 40 and packet[0] == 0x45 and packet[9] == 6:
            if packet[33] == TCP_ACK and packet[6] & 0x40:
                hlen = 20 + ((packet[32] >> 4) << 2)
                size = len(packet) - hlen
                if size > 0:
                    self._run = [packet]
                    self._hlen = hlen
                    self._size = self._run_bytes = size
                    self._key_addr = packet[12:24]
                    self._key_ack = packet[28:33]
                    self._key_win = packet[34:36]
                    self._key_opts = packet[40:hlen]
                    self._next_seq = (_U32.unpack_from(packet, 24)[0] + size) & 0xFFFFFFFF
                    self._next_id = (_U16.unpack_from(packet, 4)[0] + 1) & 0xFFFF
                    self._loop.after.append(self.flush)
                    return
            self._single_tcp(packet)
            return
        self._out(NO_VNET_HDR + self._eth[packet[0] >= 0x60] + packet)

    def _single_tcp(self, packet: bytes) -> None:
        """One IPv4 TCP segment, its checksum left to the kernel (the stack may not have filled it
        in: ``checksum_offload``)."""
        pseudo = (_from_bytes(packet[12:16], "big") + _from_bytes(packet[16:20], "big") + 6 + len(packet) - 20) % 0xFFFF
        self._out(
            TCP4_VNET_HDR + self._eth[0] + packet[:36] + (pseudo or 0xFFFF).to_bytes(2, "big") + packet[38:]
        )

    def flush(self) -> None:
        run = self._run
        if not run:
            return
        self._run = []
        first = run[0]
        if len(run) == 1:
            self._single_tcp(first)
            return
        hlen = self._hlen
        total = hlen + self._run_bytes
        tcp_len = total - 20
        # the IP header with the whole length (the kernel sets each segment's length, ID and checksum)
        head = bytearray(first[:hlen])
        head[2:4] = total.to_bytes(2, "big")
        head[10:12] = b"\0\0"
        head[10:12] = internet_checksum(bytes(head[:20])).to_bytes(2, "big")
        head[33] = run[-1][33]  # the last segment's flags (PSH): the kernel keeps them for the last
        # CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, the kernel adds each segment's
        pseudo = ones_sum(bytes(head[12:20]) + b"\0\x06" + tcp_len.to_bytes(2, "big"))
        head[36:38] = pseudo.to_bytes(2, "big")
        vnet = VNET_HDR.pack(VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, ETH_HLEN + hlen, self._size, ETH_HLEN + 20, 16)
        self.frames += 1
        self.segments += len(run)
        self._out(b"".join([vnet, self._eth[0], head, *[p[hlen:] for p in run]]))

    def _out(self, frame: bytes) -> None:
        try:
            self._send(frame)
        except OSError as exc:
            self._on_error(exc)


# --- the event loop


class EventLoop:
    """epoll plus a timer heap; the Scheduler of a HostStack. ``now`` counts from
    ``origin`` (a ``time.monotonic()`` value; 0.0 until it is set) and stands still
    while one callback (one packet, one timer, one socket event) runs, so that
    everything recorded for it carries one time and records never go backwards."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.origin: float | None = None
        self.stopping = False
        self._now = 0.0
        # called once after the callback (packet, timer, socket event) during which they were added:
        # a GSO sender's run of segments leaves when the stack is done producing them
        self.after: list[Callable[[], None]] = []

    @property
    def now(self) -> float:
        return self._now

    def refresh(self) -> None:
        """Move ``now`` to the present (before handling the next thing)."""
        if self.origin is not None:
            self._now = time.monotonic() - self.origin

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), callback))

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.call_at(self.now + delay, callback)

    def add_reader(self, fd: int, callback: Callable[[int], None], events: int = select.EPOLLIN) -> None:
        self._handlers[fd] = callback
        self._epoll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events)

    def remove(self, fd: int) -> None:
        self._handlers.pop(fd, None)
        self._epoll.unregister(fd)

    def run(self) -> None:
        """Run until ``stopping`` is set. Exceptions from callbacks propagate."""
        timers = self._timers
        handlers = self._handlers
        poll = self._epoll.poll
        monotonic = time.monotonic
        after = self.after
        origin = self.origin if self.origin is not None else monotonic()
        self.origin = origin
        while not self.stopping:
            self._now = now = monotonic() - origin
            if timers and timers[0][0] <= now:
                # a timer came due while this process was away (a busy machine does not run it on time):
                # what arrived meanwhile is read first, so that an ACK waiting in a socket is not beaten
                # by the retransmission timer it cancels (a spurious retransmission, or new data sent
                # again on a subflow the peer has already closed)
                for fd, events in poll(0):
                    handler = handlers.get(fd)
                    if handler is not None:
                        self._now = monotonic() - origin
                        handler(events)
                        if after:
                            self.run_after()
                        if self.stopping:
                            return
                self._now = now = monotonic() - origin
            while timers and timers[0][0] <= now:
                heapq.heappop(timers)[2]()
                if after:
                    self.run_after()
                if self.stopping:
                    return
                self._now = now = monotonic() - origin
            timeout = min(max(timers[0][0] - now, 0.0), 1.0) if timers else 1.0
            for fd, events in poll(timeout):
                handler = handlers.get(fd)
                if handler is not None:
                    self._now = monotonic() - origin
                    handler(events)
                    if after:
                        self.run_after()

    def run_after(self) -> None:
        after = self.after
        while after:
            after.pop()()

    def close(self) -> None:
        self._epoll.close()


# --- to the controller


class Channel:
    """Lines to the controller on a blocking file descriptor, buffered."""

    def __init__(self, fd: int) -> None:
        self._fh = os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 20)

    def line(self, text: str) -> None:
        self._fh.write(text)
        self._fh.write("\n")

    def message(self, obj: dict[str, Any]) -> None:
        self.line(json.dumps(obj, separators=(",", ":")))

    def flush(self) -> None:
        try:
            self._fh.flush()
        except BrokenPipeError:
            pass


class ChannelTracer(Tracer):
    """Trace records as JSON lines on the channel."""

    def __init__(self, channel: Channel) -> None:
        self._line = channel.line

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self._line(TraceRecord(now, node, layer, name, data).to_json())


# --- the run facade


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


class RemoteHost:
    """A host that another endpoint process runs: HostStack's application API with
    every call a no-op (``connect`` returns None), so a workload's ``schedule`` does
    only this process's part. Anything else is an AttributeError, as it should be
    for a workload that reaches into the other host's internals."""

    def __init__(self, name: str, net: EndpointNet, addresses: list[str]) -> None:
        self.name = name
        self.addresses = addresses
        self.tracer: Tracer = NULL_TRACER
        self._net = net

    @property
    def now(self) -> float:
        return self._net.now

    connect = listen = bind_udp = send_datagram = set_interface_sender = input_packet = staticmethod(_noop)

    def connections(self) -> list[Any]:
        return []

    def groups(self) -> list[Any]:
        return []


class EndpointNet:
    """``run.net`` in an endpoint process."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._remote: dict[str, RemoteHost] = {}

    @property
    def now(self) -> float:
        return self._endpoint.loop.now

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        self._endpoint.loop.call_at(when, callback)

    def is_local(self, name: str) -> bool:
        """Whether host ``name``'s part of a workload runs in this process."""
        return name == self._endpoint.host

    def _check(self, name: str) -> bool:
        spec = self._endpoint.spec
        if name not in spec.hosts():
            raise ConfigError(f"no host named {name!r}; hosts: {', '.join(spec.hosts())}")
        return name == self._endpoint.host

    def _stand_in(self, name: str) -> RemoteHost:
        if name not in self._remote:
            addrs = [a for i in self._endpoint.spec.interfaces_of(name) for a in (i.ipv4, i.ipv6)]
            self._remote[name] = RemoteHost(name, self, addrs)
        return self._remote[name]

    def host(self, name: str) -> HostStack | RemoteHost:
        """The user-space stack of host ``name`` (a stand-in unless it is ours). Raises ConfigError."""
        if not self._check(name):
            return self._stand_in(name)
        self._endpoint.stack_used = True
        return self._endpoint.stack

    def kernel_host(self, name: str, *, mptcp: bool = False, mptcp_checksum: bool = False) -> KernelStack | RemoteHost:
        """The kernel's TCP (or MPTCP) on host ``name`` behind HostStack's application
        API (a stand-in unless it is ours). Raises ConfigError."""
        if not self._check(name):
            return self._stand_in(name)
        return self._endpoint.kernel_stack(mptcp=mptcp, mptcp_checksum=mptcp_checksum)


class EndpointRun:
    """What a Workload's ``schedule(run)`` sees in an endpoint process (see the module docstring)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.scenario: Scenario = endpoint.scenario
        self.seed: int = endpoint.seed
        self.spec: TopologySpec = endpoint.spec
        self.tracer = endpoint.tracer
        self.net = EndpointNet(endpoint)
        self.results: list[TransferResult] = []
        self.host = endpoint.host

    # the same payloads and result slots as ScenarioRun, so every process agrees
    payload = ScenarioRun.payload
    add_result = ScenarioRun.add_result

    def done(self) -> bool:
        return all(r.complete for r in self.results)


def result_state(result: TransferResult) -> dict[str, Any]:
    """The local half of a TransferResult, as the controller merges it."""
    return {
        "name": result.name,
        "bytes_expected": result.bytes_expected,
        "sha256_expected": result.sha256_expected,
        "bytes_received": result.bytes_received,
        "sha256_received": result.sha256_received,
        "started_at": result.started_at,
        "first_byte_at": result.first_byte_at,
        "completed_at": result.completed_at,
        "error": result.error,
        "sender_done": result.sender_done,
        "extra": result.extra,
    }


# --- the endpoint


class Endpoint:
    """One host's part of a scenario on real packets."""

    def __init__(self, config: dict[str, Any], channel: Channel) -> None:
        self.host: str = config["host"]
        self.scenario: Scenario = config["scenario"]
        self.spec: TopologySpec = config["spec"]
        self.seed: int = config["seed"]
        self.channel = channel
        self.trace_on: bool = config.get("trace", True)
        self.tracer: Tracer = ChannelTracer(channel) if self.trace_on else NULL_TRACER
        self.host_tracer = self.tracer.bind(self.host)
        if self.host not in self.spec.hosts():
            raise ConfigError(f"no host named {self.host!r} in topology {self.spec.name}")
        try:
            tcp_config = TcpConfig(**self.scenario.tcp)
        except TypeError as exc:
            raise ConfigError(f"scenario {self.scenario.name}: bad TCP setting: {exc}") from None
        self.loop = EventLoop()
        self.ifaces = self.spec.interfaces_of(self.host)
        self.stack = HostStack(
            self.host,
            interfaces={i.name: [i.ipv4, i.ipv6] for i in self.ifaces},
            transmit=self._transmit_unopened,
            scheduler=self.loop,
            tracer=self.host_tracer,
            rng=random.Random(f"{self.seed}:{self.host}"),
            tcp_config=tcp_config,
            # a UDP datagram larger than its link leaves as IP fragments (a frame over the MTU cannot be sent)
            mtus={i.name: self.spec.links[i.link].mtu_bytes for i in self.ifaces},
        )
        self.stack_used = False
        self.kernel_stacks: dict[bool, KernelStack] = {}
        self.ports: PortSet | None = None
        self.tx_errors: dict[str, int] = {}
        self.rx_errors: dict[str, int] = {}
        self._sockets: list[socket.socket] = []
        self.gro: frozenset[str] = frozenset(config.get("gro", ()))
        self.gso: frozenset[str] = frozenset(config.get("gso", ()))
        self.gso_senders: dict[str, GsoSender] = {}
        self.gro_frames: dict[str, list[int]] = {}  # interface -> [coalesced packets, their bytes]
        self._stdin = b""
        self._sent_key = ""
        self.run = EndpointRun(self)

    # --- setting up

    def kernel_stack(self, *, mptcp: bool, mptcp_checksum: bool) -> KernelStack:
        stack = self.kernel_stacks.get(mptcp)
        if stack is None:
            stack = KernelStack(
                self.host,
                loop=self.loop,
                interfaces=[(i.name, i.ipv4) for i in self.ifaces],
                tracer=self.host_tracer,
                mptcp=mptcp,
                mptcp_checksum=mptcp_checksum,
            )
            self.kernel_stacks[mptcp] = stack
        return stack

    def prepare(self) -> dict[str, Any]:
        """Schedule every workload and open the interfaces; the ``ready`` message.
        Raises ConfigError (a workload that does not fit, a port clash, no ARP answer)."""
        for workload in self.scenario.transfers:
            workload.schedule(self.run)
        kernel_ports = sorted({p for k in self.kernel_stacks.values() for p in k.listen_ports})
        if self.stack_used:
            self.ports = PortSet.of(tcp=[*self.stack._listeners, *self.stack.reserved_ports], udp=list(self.stack._udp))
            for port in kernel_ports:
                if self.ports.owns_tcp(port):
                    raise ConfigError(
                        f"{self.host}: kernel listener port {port} is one the user-space stack owns "
                        "(its listeners and 40000-60999); pick another port"
                    )
            self._open_interfaces()
        return {
            "msg": "ready",
            "host": self.host,
            "user_stack": self.stack_used,
            "ports": None if self.ports is None else self.ports.to_dict(),
            "kernel_ports": kernel_ports,
            "results": [result_state(r) for r in self.run.results],
        }

    def _open_interfaces(self) -> None:
        assert self.ports is not None
        for iface in self.ifaces:
            mtu = self.spec.links[iface.link].mtu_bytes
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self._sockets.append(tx)
            tx.bind((iface.name, 0))
            tx.setblocking(False)
            tx.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SNDBUF_BYTES)
            own_mac = tx.getsockname()[4]
            peer_mac = resolve_mac(iface.name, iface.peer_ipv4, own_mac=own_mac, own_ip=iface.ipv4)
            hdr4 = peer_mac + own_mac + struct.pack("!H", ETH_P_IP)
            hdr6 = peer_mac + own_mac + struct.pack("!H", ETH_P_IPV6)
            if iface.name in self.gso:
                tx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                gso = GsoSender(tx.send, hdr4, hdr6, self.loop, lambda exc, n=iface.name: self._tx_error(n, exc))
                self.gso_senders[iface.name] = gso
                self.stack.set_interface_sender(iface.name, gso, checksum_offload=True)
            else:
                self.stack.set_interface_sender(iface.name, self._sender(iface.name, tx, hdr4, hdr6))
            gro = iface.name in self.gro
            for proto, ipv6 in ((ETH_P_IP, False), (ETH_P_IPV6, True)):
                # receives nothing until bound; a virtio_net_hdr is for SOCK_RAW sockets only
                rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW if gro else socket.SOCK_DGRAM, 0)
                self._sockets.append(rx)
                rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
                attach_filter(rx, port_filter(self.ports, ipv6=ipv6, offset=ETH_HLEN if gro else 0))
                if gro:
                    rx.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                rx.bind((iface.name, proto))
                rx.setblocking(False)
                reader = self._gro_reader(iface.name, rx) if gro else self._reader(iface.name, rx, mtu + 64)
                self.loop.add_reader(rx.fileno(), reader)

    def _sender(self, ifname: str, sock: socket.socket, hdr4: bytes, hdr6: bytes) -> Callable[[bytes], None]:
        send = sock.send

        def sender(packet: bytes) -> None:
            try:
                send((hdr4 if packet[0] < 0x60 else hdr6) + packet)
            except OSError as exc:
                self._tx_error(ifname, exc)

        return sender

    def _reader(self, ifname: str, sock: socket.socket, size: int) -> Callable[[int], None]:
        recv = sock.recv
        deliver = self.stack.input_packet
        loop = self.loop
        monotonic = time.monotonic

        def on_readable(_events: int) -> None:
            origin = loop.origin or 0.0
            started = monotonic()
            for _ in range(RX_BATCH):
                try:
                    packet = recv(size)
                except BlockingIOError:
                    return
                except OSError as exc:  # ENETDOWN while the link is down
                    self._count(self.rx_errors, ifname, exc, "receive")
                    return
                now = monotonic()
                loop._now = now - origin
                deliver(packet)
                if now - started >= RX_BUDGET_S:
                    return  # the rest waits for the next round (epoll reports it again)

        return on_readable

    def _gro_reader(self, ifname: str, sock: socket.socket) -> Callable[[int], None]:
        """The reader of an interface with GRO on: each frame is a virtio_net_hdr and one IP packet,
        which may be several TCP segments the kernel coalesced (one header, their payloads in order).
        A coalesced packet's TCP checksum is left for the receiver to finish (NEEDS_CSUM: the field
        holds the pseudo-header's sum, and the kernel checked every segment it merged): the stack
        takes it as checked (``HostStack.input_packet(checksum_partial=True)``)."""
        recv = sock.recv
        deliver = self.stack.input_packet
        loop = self.loop
        monotonic = time.monotonic
        counts = self.gro_frames.setdefault(ifname, [0, 0])

        def on_readable(_events: int) -> None:
            origin = loop.origin or 0.0
            started = monotonic()
            for _ in range(RX_BATCH):
                try:
                    frame = recv(GRO_FRAME_BYTES)
                except BlockingIOError:
                    return
                except OSError as exc:  # ENETDOWN while the link is down
                    self._count(self.rx_errors, ifname, exc, "receive")
                    return
                partial = frame[0] & VNET_F_NEEDS_CSUM
                if partial and frame[1]:  # gso_type: segments the kernel coalesced
                    counts[0] += 1
                    counts[1] += len(frame) - IP_AT
                now = monotonic()
                loop._now = now - origin
                deliver(frame[IP_AT:], checksum_partial=bool(partial))
                if now - started >= RX_BUDGET_S:
                    return

        return on_readable

    def _count(self, table: dict[str, int], ifname: str, exc: OSError, what: str) -> None:
        key = f"{ifname}:{errno.errorcode.get(exc.errno or 0, str(exc.errno))}"
        table[key] = table.get(key, 0) + 1
        if table[key] == 1 and self.trace_on:
            data = {"reason": f"{what} on {ifname}: {exc.strerror or exc}", "interface": ifname}
            self.host_tracer.record(self.loop.now, "ip", "segment_dropped", data)

    def _tx_error(self, ifname: str, exc: OSError) -> None:
        self._count(self.tx_errors, ifname, exc, "local send")

    def _transmit_unopened(self, ifname: str, packet: bytes) -> None:
        self.tx_errors["unopened"] = self.tx_errors.get("unopened", 0) + 1

    # --- running

    def start(self, t0: float) -> None:
        self.loop.origin = t0
        os.set_blocking(0, False)
        self.loop.add_reader(0, self._on_stdin)
        self.loop.call_at(0.0, self._tick)
        if self.trace_on:
            self.loop.call_at(METRICS_INTERVAL_S, self._sample_metrics)
        self.loop.run()

    def _on_stdin(self, _events: int) -> None:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:
            return
        if not data:
            self.loop.stopping = True  # the controller went away
            return
        self._stdin += data
        while b"\n" in self._stdin:
            line, _, self._stdin = self._stdin.partition(b"\n")
            try:
                command = json.loads(line)
            except ValueError:
                continue
            if isinstance(command, dict) and command.get("cmd") == "stop":
                if command.get("settle"):
                    self._settle(self.loop.now + SETTLE_S)
                else:
                    self.loop.stopping = True

    def _kernel_streams_open(self) -> bool:
        return any(stack.connections() for stack in self.kernel_stacks.values())

    def _settle(self, deadline: float) -> None:
        """Stop once no kernel stream is open (each has taken its close or reset and noted
        its facts), or at ``deadline``; ``close`` then aborts what is left."""
        if not self._kernel_streams_open() or self.loop.now >= deadline:
            self.loop.stopping = True
        else:
            self.loop.call_later(SETTLE_POLL_S, lambda: self._settle(deadline))

    def _tick(self) -> None:
        self.report()
        self.channel.flush()
        self.loop.call_later(TICK_S, self._tick)

    def report(self, *, force: bool = False) -> None:
        """Send the result halves when they changed (every tick while bytes arrive)."""
        states = [result_state(r) for r in self.run.results]
        key = json.dumps(states, sort_keys=True, default=str)
        if force or key != self._sent_key:
            self._sent_key = key
            self.channel.message({"msg": "results", "host": self.host, "results": states})

    def _sample_metrics(self) -> None:
        now = self.loop.now
        for conn in self.stack.connections():
            self.host_tracer.record(now, "tcp", "metrics_updated", conn.metrics())
        for kernel in self.kernel_stacks.values():
            for stream in kernel.connections():
                data = {"conn": str(stream.addr), "stack": kernel.stack_name, **tcp_info(stream.sock)}
                self.host_tracer.record(now, "kernel", "metrics_updated", data)
        self.loop.call_later(METRICS_INTERVAL_S, self._sample_metrics)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_stack": self.stack_used, "tx_errors": self.tx_errors, "rx_errors": self.rx_errors}
        if self.gro:
            out["gro"] = {name: {"packets": n, "bytes": size} for name, (n, size) in self.gro_frames.items()}
        if self.gso_senders:
            out["gso"] = {name: {"frames": g.frames, "segments": g.segments} for name, g in self.gso_senders.items()}
        if self.kernel_stacks.get(True) is not None:
            out["mptcp_counters"] = mptcp_counters()
        return out

    def close(self) -> None:
        for stack in self.kernel_stacks.values():
            stack.close()
        for sock in self._sockets:
            sock.close()
        self.loop.close()


def _read_command(buffer: bytearray) -> dict[str, Any] | None:
    """Block until one command line arrives on stdin; None at end of input."""
    while b"\n" not in buffer:
        data = os.read(0, 65536)
        if not data:
            return None
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    try:
        command = json.loads(line)
    except ValueError:
        return {}
    return command if isinstance(command, dict) else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.mininet.endpoint", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the pickled endpoint configuration the controller wrote")
    args = parser.parse_args(argv)
    channel = Channel(os.dup(1))
    sys.stdout = sys.stderr  # stray prints must not mix with the records
    endpoint: Endpoint | None = None
    try:
        with open(args.config, "rb") as fh:
            config = pickle.load(fh)  # noqa: S301 - written by our own controller, mode 0600
        endpoint = Endpoint(config, channel)
        channel.message(endpoint.prepare())
        channel.flush()
        buffer = bytearray()
        while True:
            command = _read_command(buffer)
            if command is None or command.get("cmd") == "stop":
                endpoint.report(force=True)
                channel.message({"msg": "stopped", "host": endpoint.host, "stats": endpoint.stats()})
                return 0
            if command.get("cmd") == "start":
                break
        endpoint.start(float(command["t0"]))
        endpoint.report(force=True)
        channel.message({"msg": "stopped", "host": endpoint.host, "stats": endpoint.stats()})
        return 0
    except ConfigError as exc:
        channel.message({"msg": "error", "reason": str(exc), "fatal": True})
        return 2
    except Exception as exc:  # noqa: BLE001 - reported to the controller, which records it
        tail = traceback.format_exc().strip().splitlines()[-6:]
        channel.message({"msg": "error", "reason": f"{type(exc).__name__}: {exc}", "traceback": tail, "fatal": True})
        return 1
    finally:
        channel.flush()
        if endpoint is not None:
            endpoint.close()


if __name__ == "__main__":
    sys.exit(main())
