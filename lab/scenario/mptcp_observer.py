"""A kernel MPTCP peer's connections, as seen on the wire of its host.

Nothing in the kernel emits trace records, so when a scenario puts a kernel
stack on a host (``Transfer(src_stack="kernel-mptcp")`` and the like), this
module watches that host's interfaces and makes the ``mptcp`` records our own
endpoint makes (docs/trace.md, "mptcp layer" and "observed on the wire"),
each marked ``"source": "wire"``:

* the connection: ``key_updated`` with both keys, tokens and IDSNs once the
  MP_CAPABLE handshake has shown them (tokens computed with
  :func:`lab.mptcp.crypto.key_token`);
* subflows: ``state_updated`` transitions (``SYN``, ``ESTABLISHED``,
  ``CLOSING``, ``CLOSED``) with ``address_id``, ``remote_id``, ``backup``,
  ``initial``; MP_JOINs are tied to their connection by the token they carry;
* connection events: ``address_added`` (an ADD_ADDR whose HMAC checks out
  with the keys seen; a wrong one is an ``error``), ``address_removed``,
  ``peer_backup``, ``data_fin_received``, ``data_fin_acked``, ``fastclose``,
  ``mp_fail``, ``infinite_mapping``, ``fallback``, ``terminated``;
* ``segment_sent`` / ``segment_received`` for segments that carry an MPTCP
  option other than a plain DSS (handshakes, ADD_ADDR, DATA_FIN, ...);
* ``metrics_updated`` per subflow every sampling interval: payload bytes
  sent, acknowledged and received (from sequence and acknowledgment
  numbers), ``rate_bps``, and ``srtt_ms`` from TCP timestamps (the
  handshake's round trip until then). ``cwnd`` is ``None``: it is not on
  the wire.

To stay cheap, data segments are not decoded: a quick walk over their
options finds only what matters (a DATA_FIN, a Data ACK while a DATA_FIN
waits for one, the timestamps); SYNs, FINs, RSTs and segments with other
MPTCP options are decoded with :mod:`lab.wire.tcp` and :mod:`lab.wire.mptcp`.

:class:`WireObserver` is a plain object fed IP packets; :func:`observe_pcap`
runs it over a capture; ``python -m lab.scenario.mptcp_observer`` runs it on live
interfaces (AF_PACKET sockets; started inside the host's namespace by
:class:`lab.mininet.liverun.MininetRun`) and prints the records as JSON
Lines on stdout, ``t`` being ``time.monotonic()`` (the caller rebases it).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.errors import DecodeError
from lab.mptcp import crypto
from lab.mptcp.options import option_record
from lab.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    frame_ip_direction,
)
from lab.trace import Tracer, TraceRecord
from lab.wire import mptcp as w
from lab.wire.tcp import ACK, FIN, RST, SYN, UnknownOption, decode_segment, flags_text

SOURCE = "wire"
MOD32 = 1 << 32
HALF32 = 1 << 31
MAX_TS_PENDING = 4096  # timestamps remembered per subflow for RTT samples
SNAPLEN = 256  # headers are all the observer reads
METRICS_INTERVAL_S = 0.1
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
TCP_KIND_TIMESTAMPS = 8
DSS_FLAG_DATA_FIN = 0x10
DSS_FLAG_DATA_ACK = 0x01


@dataclass(eq=False)
class _Subflow:
    """One subflow (a TCP connection with an MPTCP option on its SYN), from the node's side."""

    name: str  # "10.0.2.2:5001->10.0.1.1:40000"
    client: bool  # the node sent the SYN
    syn_at: float
    kind: str  # "capable" or "join"
    conn: _Connection | None = None
    state: str = "SYN"
    address_id: int = 0
    remote_id: int | None = None
    backup: bool = False
    isn_local: int | None = None
    isn_remote: int | None = None
    snd_max: int = 0  # payload bytes, relative to the ISN (unwrapped)
    rcv_max: int = 0
    acked: int = 0
    fin_sent: bool = False
    fin_received: bool = False
    fin_acked: bool = False
    fin_seq_local: int | None = None
    closed: bool = False
    srtt: float | None = None
    ts_sent: dict[int, float] = field(default_factory=dict)
    join_token: int | None = None  # the token an MP_JOIN SYN named
    join_nonce_syn: int | None = None
    last_sample: tuple[float, int] | None = None
    last_figures: tuple[Any, ...] | None = None
    rate_bps: float = 0.0


@dataclass(eq=False)
class _Connection:
    """One MPTCP connection, from the node's side."""

    initial: _Subflow
    version: int = 1
    local_key: int | None = None
    remote_key: int | None = None
    checksum: bool = False
    local_token: int | None = None
    remote_token: int | None = None
    fallback: str | None = None
    pending: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    subflows: list[_Subflow] = field(default_factory=list)
    fin_ack_expected: int | None = None  # low 32 bits of the Data ACK that covers our DATA_FIN
    data_fin_received: bool = False
    data_fin_acked: bool = False
    mp_fail_seen: bool = False
    terminated: bool = False
    keys_recorded: bool = False

    @property
    def local_idsn(self) -> int | None:
        return None if self.local_key is None else crypto.key_idsn(self.local_key, version=self.version)

    @property
    def remote_idsn(self) -> int | None:
        return None if self.remote_key is None else crypto.key_idsn(self.remote_key, version=self.version)


def _fmt(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _advance(current: int, base: int | None, value: int) -> int:
    """``value`` (a 32-bit sequence number) as an offset past ``base``, unwrapped near ``current``."""
    if base is None:
        return current
    rel32 = (value - base - 1) % MOD32
    delta = (rel32 - current) % MOD32
    if delta < HALF32:
        return current + delta
    return current


class WireObserver:
    """Makes ``mptcp`` records for ``node`` from the packets its interfaces carried.

    ``addresses`` are the node's own addresses (they tell sent from received
    where the caller does not say); ``ports``, when given, keeps only TCP
    connections with one end on one of them (the kernel application's
    ports); ``exclude_local_ports`` (inclusive ranges) leaves out
    connections whose local port is one the host's user-space stack owns (its
    fence), which makes its own records. Only a SYN starts a subflow. Never
    raises on a packet: a malformed one is skipped and counted in
    ``malformed``.
    """

    def __init__(
        self,
        node: str,
        addresses: Iterable[str],
        tracer: Tracer,
        *,
        ports: Iterable[int] | None = None,
        exclude_local_ports: Iterable[tuple[int, int]] = (),
    ) -> None:
        self.node = node
        self.addresses = {ipaddress.ip_address(a).packed for a in addresses}
        self.ports = None if ports is None else frozenset(int(p) for p in ports)
        self.exclude_local_ports = [(int(lo), int(hi)) for lo, hi in exclude_local_ports]
        self._tracer = tracer
        self._subflows: dict[bytes, _Subflow] = {}  # raw (local addr, remote addr, ports) -> subflow
        self._by_token: dict[int, _Connection] = {}  # the node's own token -> connection
        self._by_remote_token: dict[int, _Connection] = {}
        self.connections: list[_Connection] = []
        self.packets = 0
        self.malformed = 0

    # --- input

    def observe(self, packet: bytes, *, now: float, sent: bool | None = None, length: int | None = None) -> None:
        """One IP packet (possibly cut to its headers) that the node sent or received."""
        self.packets += 1
        try:
            self._observe(packet, now, sent)
        except (DecodeError, ValueError, IndexError, struct.error):
            self.malformed += 1

    def _observe(self, packet: bytes, now: float, sent: bool | None) -> None:
        version = packet[0] >> 4
        if version == 4:
            ihl = (packet[0] & 0x0F) * 4
            if packet[9] != 6 or struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
                return
            total = struct.unpack_from("!H", packet, 2)[0]
            src, dst = packet[12:16], packet[16:20]
            tcp_at = ihl
            tcp_len = total - ihl
        elif version == 6:
            if packet[6] != 6:
                return
            tcp_len = struct.unpack_from("!H", packet, 4)[0]
            src, dst = packet[8:24], packet[24:40]
            tcp_at = 40
        else:
            return
        sport, dport, seq, ack, off, flags = struct.unpack_from("!HHIIBB", packet, tcp_at)
        hlen = (off >> 4) * 4
        payload = tcp_len - hlen
        if hlen < 20 or payload < 0:
            raise ValueError("bad TCP header length")
        if sent is None:
            sent = src in self.addresses
        if self.ports is not None and sport not in self.ports and dport not in self.ports:
            return
        if sent:
            key = src + dst + struct.pack("!HH", sport, dport)
        else:
            key = dst + src + struct.pack("!HH", dport, sport)
        sf = self._subflows.get(key)
        if sf is None or (sf.closed and flags & SYN):
            if flags & (SYN | ACK) != SYN:
                return  # only a SYN starts a subflow; the rest of an unknown flow costs nothing
            local_port = sport if sent else dport
            if any(lo <= local_port <= hi for lo, hi in self.exclude_local_ports):
                return
            sf = None
        if flags & SYN or sf is None or flags & (FIN | RST) or sf.state != "ESTABLISHED":
            self._full(packet, tcp_at, hlen, tcp_len, src, dst, key, sf, sent, now)
            return
        # the fast path: an established subflow's data or ACK
        options = packet[tcp_at + 20 : tcp_at + hlen]
        if self._account(sf, sent, seq, ack, flags, payload, now, options):
            self._full(packet, tcp_at, hlen, tcp_len, src, dst, key, sf, sent, now)

    def _account(
        self, sf: _Subflow, sent: bool, seq: int, ack: int, flags: int, payload: int, now: float, options: bytes
    ) -> bool:
        """Byte counts and timestamps; True when an option needs a full decode (a DATA_FIN,
        a Data ACK while our DATA_FIN waits for one, an option other than DSS)."""
        conn = sf.conn
        tsval = tsecr = None
        decode = False
        i, n = 0, len(options)
        while i < n:
            kind = options[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= n:
                break
            length = options[i + 1]
            if length < 2:
                break
            if kind == TCP_KIND_TIMESTAMPS and length == 10:
                tsval, tsecr = struct.unpack_from("!II", options, i + 2)
            elif kind == w.MPTCP_KIND and length > 2:
                subtype = options[i + 2] >> 4
                if subtype != w.DSS or conn is None:
                    decode = True
                elif length > 3:
                    dflags = options[i + 3]
                    if dflags & DSS_FLAG_DATA_FIN or conn.mp_fail_seen:
                        decode = True
                    elif not sent and dflags & DSS_FLAG_DATA_ACK and conn.fin_ack_expected is not None:
                        decode = True
            i += length
        if sent:
            sf.snd_max = _advance(sf.snd_max, sf.isn_local, seq + payload) if payload else sf.snd_max
            if tsval is not None and tsval not in sf.ts_sent:
                if len(sf.ts_sent) >= MAX_TS_PENDING:
                    sf.ts_sent.clear()
                sf.ts_sent[tsval] = now
        else:
            if payload:
                sf.rcv_max = _advance(sf.rcv_max, sf.isn_remote, seq + payload)
            if flags & ACK:
                new_acked = min(_advance(sf.acked, sf.isn_local, ack), sf.snd_max)
                advanced = new_acked > sf.acked
                sf.acked = max(sf.acked, new_acked)
            else:
                advanced = False
            if tsecr is not None and (advanced or payload):
                sent_at = sf.ts_sent.pop(tsecr, None)
                if sent_at is not None:
                    sample = now - sent_at
                    sf.srtt = sample if sf.srtt is None else 0.875 * sf.srtt + 0.125 * sample
        return decode

    def _full(
        self,
        packet: bytes,
        tcp_at: int,
        hlen: int,
        tcp_len: int,
        src: bytes,
        dst: bytes,
        key: bytes,
        sf: _Subflow | None,
        sent: bool,
        now: float,
    ) -> None:
        header = packet[tcp_at : tcp_at + hlen]
        seg = decode_segment(header)  # the header only: the payload may not have been captured
        payload = tcp_len - hlen
        mptcp: list[w.MptcpOption] = []
        for opt in seg.options:
            if type(opt) is UnknownOption and opt.kind == w.MPTCP_KIND:
                version = sf.conn.version if sf is not None and sf.conn is not None else None
                try:
                    mptcp.append(
                        w.from_tcp_option(opt, version=version, syn=bool(seg.flags & SYN), ack=bool(seg.flags & ACK))
                    )
                except DecodeError as exc:
                    if sf is not None:
                        self._conn_record(sf, now, "segment_dropped", {"reason": f"bad MPTCP option: {exc}"})
        syn = bool(seg.flags & SYN)
        if sf is None:
            if not syn or seg.flags & ACK or not mptcp:
                return  # not the start of an MPTCP subflow (or we missed it)
            local = src if sent else dst
            remote = dst if sent else src
            lport, rport = (seg.src_port, seg.dst_port) if sent else (seg.dst_port, seg.src_port)
            name = f"{_fmt(str(ipaddress.ip_address(local)), lport)}->{_fmt(str(ipaddress.ip_address(remote)), rport)}"
            first = mptcp[0]
            kind = "join" if isinstance(first, w.MpJoinSyn) else "capable"
            if kind == "capable" and not isinstance(first, w.MpCapableSyn):
                return
            sf = _Subflow(name=name, client=sent, syn_at=now, kind=kind)
            self._subflows[key] = sf
        self._segment(sf, seg, payload, mptcp, sent, now)

    # --- the state of one subflow

    def _segment(
        self, sf: _Subflow, seg: Any, payload: int, mptcp: list[w.MptcpOption], sent: bool, now: float
    ) -> None:
        flags = seg.flags
        syn = bool(flags & SYN)
        if syn:
            if sent:
                sf.isn_local = seg.seq
            else:
                sf.isn_remote = seg.seq
        if syn:
            self._handshake(sf, mptcp, sent, bool(flags & ACK), now)
        if mptcp and (syn or any(not isinstance(o, w.Dss) for o in mptcp) or self._dss_notable(mptcp)):
            data = {
                "subflow": sf.name,
                "flags": flags_text(flags),
                "len": payload,
                "mptcp": [option_record(o) for o in mptcp],
            }
            self._conn_record(sf, now, "segment_sent" if sent else "segment_received", data, join_ok=True)
        if not syn and sf.state == "SYN" and flags & ACK:
            self._third_ack(sf, mptcp, sent, now)
        options_raw = b""
        if sf.state != "SYN":
            ts = next((o for o in seg.options if getattr(o, "kind", None) == TCP_KIND_TIMESTAMPS), None)
            if ts is not None:
                options_raw = struct.pack("!BBII", TCP_KIND_TIMESTAMPS, 10, ts.tsval, ts.tsecr)
            self._account(sf, sent, seg.seq, seg.ack, flags, payload, now, options_raw)
        conn = sf.conn
        if conn is not None:
            for opt in mptcp:
                self._option(conn, sf, opt, sent, now)
        if flags & RST:
            self._close(sf, now, reason="reset", reset=True)
            return
        if flags & FIN:
            if sent:
                sf.fin_sent = True
                sf.fin_seq_local = seg.seq + payload
            else:
                sf.fin_received = True
            if sf.state in ("ESTABLISHED", "SYN"):
                self._set_state(sf, "CLOSING", now)
        if not sent and sf.fin_sent and flags & ACK and sf.fin_seq_local is not None:
            if (seg.ack - sf.fin_seq_local - 1) % MOD32 < HALF32:
                sf.fin_acked = True
        if sf.fin_sent and sf.fin_received and (sf.fin_acked or (sent and flags & ACK and not flags & FIN)):
            self._close(sf, now, reason="FIN both ways", reset=False)

    @staticmethod
    def _dss_notable(mptcp: list[w.MptcpOption]) -> bool:
        return any(
            isinstance(o, w.Dss) and (o.data_fin or (o.data_seq is not None and o.data_level_length == 0))
            for o in mptcp
        )

    def _handshake(self, sf: _Subflow, mptcp: list[w.MptcpOption], sent: bool, is_synack: bool, now: float) -> None:
        if not is_synack:  # the SYN
            if sf.conn is not None or sf.state != "SYN":
                return  # a retransmitted SYN: the subflow is known
            if sf.kind == "capable":
                opt = next((o for o in mptcp if isinstance(o, w.MpCapableSyn)), None)
                if opt is None:
                    return
                conn = _Connection(initial=sf, version=opt.version, checksum=opt.checksum_required)
                if opt.sender_key is not None:  # v0 carries the client's key here
                    if sent:
                        conn.local_key = opt.sender_key
                    else:
                        conn.remote_key = opt.sender_key
                sf.conn = conn
                conn.subflows.append(sf)
                self.connections.append(conn)
                self._learn_keys(conn, now)
                self._subflow_state(sf, now, None, "SYN", initial=True)
            else:
                opt = next((o for o in mptcp if isinstance(o, w.MpJoinSyn)), None)
                if opt is None:
                    return
                sf.join_token = opt.token
                sf.join_nonce_syn = opt.nonce
                conn = (self._by_remote_token if sent else self._by_token).get(opt.token)
                if sent:
                    sf.address_id, sf.backup = opt.address_id, opt.backup
                else:
                    sf.remote_id = opt.address_id
                if conn is None:
                    self._record(
                        now,
                        "error",
                        {"token": None, "subflow": sf.name, "reason": f"MP_JOIN for unknown token {opt.token}"},
                    )
                    return
                sf.conn = conn
                conn.subflows.append(sf)
                self._subflow_state(sf, now, None, "SYN", initial=False)
            return
        conn = sf.conn
        if conn is None:
            return
        if sf.kind == "capable":
            opt = next((o for o in mptcp if isinstance(o, w.MpCapableSynAck)), None)
            if opt is None:
                self._fallback(conn, now, "no MP_CAPABLE in the SYN/ACK")
                return
            conn.checksum = conn.checksum or opt.checksum_required
            if sent:
                conn.local_key = opt.sender_key
            else:
                conn.remote_key = opt.sender_key
            self._learn_keys(conn, now)
        else:
            opt = next((o for o in mptcp if isinstance(o, w.MpJoinSynAck)), None)
            if opt is None:
                self._close(sf, now, reason="no MP_JOIN in the SYN/ACK", reset=False)
                return
            if sent:
                sf.address_id, sf.backup = opt.address_id, opt.backup
            else:
                sf.remote_id = opt.address_id
        if sf.srtt is None and sf.client and not sent:
            sf.srtt = now - sf.syn_at  # the handshake's round trip, until timestamps give better
        if not sf.client and sent:
            sf.syn_at = now  # the server times SYN/ACK to third ACK

    def _third_ack(self, sf: _Subflow, mptcp: list[w.MptcpOption], sent: bool, now: float) -> None:
        conn = sf.conn
        if conn is None or sf.client != sent:
            return
        if sf.kind == "capable" and conn.fallback is None:
            opt = next((o for o in mptcp if isinstance(o, (w.MpCapableAck, w.MpCapableAckData))), None)
            if opt is None:
                self._fallback(conn, now, "the client's keys never arrived (third ACK without MP_CAPABLE)")
            else:
                if sent:
                    conn.local_key, conn.remote_key = opt.sender_key, opt.receiver_key
                else:
                    conn.remote_key, conn.local_key = opt.sender_key, opt.receiver_key
                self._learn_keys(conn, now)
        if sf.srtt is None and not sf.client and not sent:
            sf.srtt = now - sf.syn_at
        self._set_state(sf, "ESTABLISHED", now, **({"remote_id": sf.remote_id} if sf.kind == "join" else {}))

    def _option(self, conn: _Connection, sf: _Subflow, opt: w.MptcpOption, sent: bool, now: float) -> None:
        if isinstance(opt, w.Dss):
            if opt.data_seq is not None and opt.data_level_length == 0 and not opt.data_fin:
                self._conn_record(sf, now, "state_updated", {"infinite_mapping": True})
                self._fallback(conn, now, "infinite mapping (after MP_FAIL)")
            if opt.data_fin and opt.data_seq is not None:
                end = (opt.data_seq + opt.data_level_length) % MOD32
                if sent and conn.fin_ack_expected is None:
                    conn.fin_ack_expected = end
                elif not sent and not conn.data_fin_received:
                    conn.data_fin_received = True
                    idsn = conn.remote_idsn
                    offset = None if idsn is None else (opt.data_seq - idsn - 1) % MOD32 + opt.data_level_length - 1
                    self._conn_record(sf, now, "state_updated", {"data_fin_received": offset})
            if (
                not sent
                and opt.data_ack is not None
                and conn.fin_ack_expected is not None
                and not conn.data_fin_acked
                and (opt.data_ack - conn.fin_ack_expected) % MOD32 < HALF32
            ):
                conn.data_fin_acked = True
                self._conn_record(sf, now, "state_updated", {"data_fin_acked": True})
        elif isinstance(opt, (w.AddAddr, w.AddAddrV0)) and not sent:
            if isinstance(opt, w.AddAddr):
                if opt.echo:
                    return
                if conn.local_key is not None and conn.remote_key is not None:
                    expected = crypto.add_addr_hmac(
                        conn.remote_key, conn.local_key, opt.address_id, opt.address, opt.port
                    )
                    if expected != opt.truncated_hmac:
                        self._conn_record(
                            sf, now, "error", {"reason": f"ADD_ADDR for {opt.address} with a wrong HMAC: ignored"}
                        )
                        return
            data: dict[str, Any] = {"address_added": opt.address, "address_id": opt.address_id}
            if opt.port:
                data["port"] = opt.port
            self._conn_record(sf, now, "state_updated", data)
        elif isinstance(opt, w.RemoveAddr) and not sent:
            self._conn_record(sf, now, "state_updated", {"address_removed": list(opt.address_ids)})
        elif isinstance(opt, w.MpPrio):
            if sent:
                sf.backup = opt.backup
                self._conn_record(sf, now, "state_updated", {"subflow": sf.name, "backup": opt.backup})
            else:
                self._conn_record(sf, now, "state_updated", {"subflow": sf.name, "peer_backup": opt.backup})
        elif isinstance(opt, w.MpFail):
            conn.mp_fail_seen = True
            self._conn_record(sf, now, "state_updated", {"mp_fail": opt.data_seq, "sender": "node" if sent else "peer"})
        elif isinstance(opt, w.MpFastclose):
            self._conn_record(sf, now, "state_updated", {"fastclose": True, "sender": "node" if sent else "peer"})

    # --- connection and subflow changes

    def _learn_keys(self, conn: _Connection, now: float) -> None:
        if conn.local_key is not None and conn.local_token is None:
            conn.local_token = crypto.key_token(conn.local_key, version=conn.version)
            self._by_token[conn.local_token] = conn
        if conn.remote_key is not None and conn.remote_token is None:
            conn.remote_token = crypto.key_token(conn.remote_key, version=conn.version)
            self._by_remote_token[conn.remote_token] = conn
        if conn.local_token is not None and conn.pending:
            pending, conn.pending = conn.pending, []
            for t, name, data in pending:
                self._record(t, name, {"token": conn.local_token, **data})
        if not conn.keys_recorded and conn.local_key is not None and conn.remote_key is not None:
            conn.keys_recorded = True
            self._record(
                now,
                "key_updated",
                {
                    "token": conn.local_token,
                    "version": conn.version,
                    "local_key": f"{conn.local_key:016x}",
                    "local_token": conn.local_token,
                    "local_idsn": f"{conn.local_idsn:016x}",
                    "remote_key": f"{conn.remote_key:016x}",
                    "remote_token": conn.remote_token,
                    "remote_idsn": f"{conn.remote_idsn:016x}",
                    "checksum": conn.checksum,
                },
            )

    def _fallback(self, conn: _Connection, now: float, reason: str) -> None:
        if conn.fallback is not None:
            return
        conn.fallback = reason
        self._conn_record(conn.initial, now, "state_updated", {"fallback": reason})
        if conn.local_token is None:  # no token will come: what waited goes out without one
            pending, conn.pending = conn.pending, []
            for t, name, data in pending:
                self._record(t, name, {"token": None, "conn": conn.initial.name, **data})

    def _subflow_state(self, sf: _Subflow, now: float, old: str | None, new: str, **extra: Any) -> None:
        self._conn_record(
            sf,
            now,
            "state_updated",
            {"subflow": sf.name, "address_id": sf.address_id, "from": old, "to": new, "backup": sf.backup, **extra},
        )

    def _set_state(self, sf: _Subflow, new: str, now: float, **extra: Any) -> None:
        old = sf.state
        if old == new:
            return
        sf.state = new
        self._subflow_state(sf, now, old, new, **extra)

    def _close(self, sf: _Subflow, now: float, *, reason: str, reset: bool) -> None:
        if sf.closed:
            return
        sf.closed = True
        self.sample(now, only=[sf], force=True)
        self._set_state(sf, "CLOSED", now, reason=reason, reset=reset, bytes_sent=sf.snd_max, bytes_received=sf.rcv_max)
        conn = sf.conn
        if conn is not None and not conn.terminated and all(s.closed for s in conn.subflows):
            conn.terminated = True
            self._conn_record(sf, now, "state_updated", {"terminated": "all subflows closed", "reset": reset})

    # --- metrics

    def sample(self, now: float, *, only: list[_Subflow] | None = None, force: bool = False) -> None:
        """``metrics_updated`` for each subflow whose figures moved since the last sample."""
        for sf in only if only is not None else list(self._subflows.values()):
            if sf.conn is None or (sf.closed and not force):
                continue
            moved = sf.acked + sf.rcv_max
            if sf.last_sample is not None and now > sf.last_sample[0]:
                sf.rate_bps = (moved - sf.last_sample[1]) * 8 / (now - sf.last_sample[0])
            figures = (sf.state, sf.snd_max, sf.acked, sf.rcv_max, sf.backup)
            if sf.last_sample is None or now > sf.last_sample[0]:
                sf.last_sample = (now, moved)
            if figures == sf.last_figures and not sf.rate_bps:
                continue
            sf.last_figures = figures
            self._conn_record(
                sf,
                now,
                "metrics_updated",
                {
                    "subflow": sf.name,
                    "address_id": sf.address_id,
                    "state": sf.state,
                    "backup": sf.backup,
                    "srtt_ms": None if sf.srtt is None else round(sf.srtt * 1000, 3),
                    "cwnd": None,
                    "bytes_sent": sf.snd_max,
                    "bytes_acked": sf.acked,
                    "bytes_received": sf.rcv_max,
                    "rate_bps": round(sf.rate_bps),
                },
            )

    # --- records

    def _conn_record(self, sf: _Subflow, now: float, name: str, data: dict[str, Any], *, join_ok: bool = False) -> None:
        conn = sf.conn
        if conn is None:
            if sf.kind == "join" and join_ok:
                self._record(now, name, {"token": None, **data})
            return
        if conn.local_token is None and conn.fallback is None:
            conn.pending.append((now, name, data))
            return
        token = conn.local_token
        extra = {} if token is not None else {"conn": conn.initial.name}
        self._record(now, name, {"token": token, **extra, **data})

    def _record(self, now: float, name: str, data: dict[str, Any]) -> None:
        self._tracer.record_node(now, self.node, "mptcp", name, {**data, "source": SOURCE})


class ListTracer(Tracer):
    """Keeps records in a list."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self.records.append(TraceRecord(now, node, layer, name, data))


# --- captures

def _ip_of(linktype: int, frame: bytes) -> tuple[bytes, bool | None] | None:
    """The IP packet of a captured frame, and whether it was outgoing when the capture says."""
    if linktype not in (LINKTYPE_RAW, LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        raise DecodeError(f"link type {linktype} is not one the observer reads", field="linktype", offset=20)
    return frame_ip_direction(linktype, frame)


def observe_pcap(
    path: str | os.PathLike[str],
    node: str,
    addresses: Iterable[str],
    *,
    ports: Iterable[int] | None = None,
    interval_s: float = METRICS_INTERVAL_S,
) -> list[TraceRecord]:
    """Every record the observer makes of a capture, as seen from the host with ``addresses``
    (direction by address: a capture on the host's interfaces). Raises DecodeError (not a
    pcap file, a link type it does not read) and OSError."""
    from lab.pcap import read_pcap_linktype

    linktype, frames = read_pcap_linktype(path)
    tracer = ListTracer()
    observer = WireObserver(node, addresses, tracer, ports=ports)
    next_sample = None
    last = 0.0
    for ts, frame in frames:
        ip = _ip_of(linktype, frame)
        if ip is None:
            continue
        if next_sample is None:
            next_sample = ts + interval_s
        while ts >= next_sample:
            observer.sample(next_sample)
            next_sample += interval_s
        observer.observe(ip[0], now=ts)
        last = ts
    observer.sample(last)
    return tracer.records


# --- live: python -m lab.scenario.mptcp_observer


class _StdoutTracer(Tracer):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self.lines.append(TraceRecord(now, node, layer, name, data).to_json())

    def flush(self) -> None:
        if self.lines:
            sys.stdout.write("\n".join(self.lines) + "\n")
            sys.stdout.flush()
            self.lines = []


SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 16 << 20
SOL_PACKET = 263
PACKET_STATISTICS = 6
SKF_AD_PROTOCOL = -0x1000  # SKF_AD_OFF + SKF_AD_PROTOCOL (0)


def tcp_filter() -> list[tuple[int, int, int, int]]:
    """Classic BPF over a SOCK_DGRAM packet socket (offset 0: the IP header): TCP over IPv4
    or IPv6, cut to ``SNAPLEN`` bytes."""
    ld_h_abs, ld_b_abs, jeq, ret = 0x28, 0x30, 0x15, 0x06
    return [
        (ld_h_abs, 0, 0, SKF_AD_PROTOCOL & 0xFFFFFFFF),  # 0: the frame's ethertype
        (jeq, 0, 2, ETH_P_IP),  # 1: IPv4? else 4
        (ld_b_abs, 0, 0, 9),  # 2: IPv4 protocol
        (jeq, 3, 4, 6),  # 3: TCP -> 7, else 8
        (jeq, 0, 3, ETH_P_IPV6),  # 4: IPv6? else 8
        (ld_b_abs, 0, 0, 6),  # 5: next header
        (jeq, 0, 1, 6),  # 6: TCP -> 7, else 8
        (ret, 0, 0, SNAPLEN),  # 7
        (ret, 0, 0, 0),  # 8
    ]


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    import ctypes

    raw = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.scenario.mptcp_observer", description=__doc__.split("\n")[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--address", action="append", default=[], required=True)
    parser.add_argument("--interface", action="append", default=[], required=True)
    parser.add_argument("--port", action="append", type=int, default=None)
    parser.add_argument("--exclude-local", action="append", default=[], metavar="LO-HI", help="local TCP ports to skip")
    parser.add_argument("--interval", type=float, default=METRICS_INTERVAL_S)
    args = parser.parse_args(argv)
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tracer = _StdoutTracer()
    try:
        exclude = [tuple(int(v) for v in r.split("-", 1)) for r in args.exclude_local]
    except ValueError:
        parser.error(f"--exclude-local takes LO-HI, got {args.exclude_local}")
    observer = WireObserver(args.node, args.address, tracer, ports=args.port, exclude_local_ports=exclude)
    socks: list[socket.socket] = []
    try:
        for name in args.interface:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
            _attach(sock, tcp_filter())
            sock.bind((name, ETH_P_ALL))
            sock.setblocking(False)
            socks.append(sock)
    except OSError as exc:
        print(json.dumps({"msg": "error", "reason": f"cannot watch the interfaces: {exc}"}), flush=True)
        return 2
    print(json.dumps({"msg": "ready", "interfaces": args.interface}), flush=True)
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    monotonic = time.monotonic
    next_sample = monotonic() + args.interval
    observe = observer.observe
    while not stop:
        timeout = max(0.0, next_sample - monotonic())
        try:
            events = poller.poll(timeout)
        except InterruptedError:
            events = []
        for fd, _ in events:
            sock = by_fd[fd]
            for _ in range(512):
                try:
                    data, addr = sock.recvfrom(SNAPLEN)
                except BlockingIOError:
                    break
                except OSError:
                    break
                observe(data, now=monotonic(), sent=addr[2] == PACKET_OUTGOING)
        now = monotonic()
        if now >= next_sample:
            observer.sample(now)
            next_sample = now + args.interval
            try:
                tracer.flush()
            except BrokenPipeError:
                return 0
    observer.sample(monotonic())
    dropped = 0
    for sock in socks:  # what the kernel could not queue to us (each read resets the counters)
        with contextlib.suppress(OSError):
            dropped += struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
    stats = {"packets": observer.packets, "malformed": observer.malformed, "dropped": dropped}
    with contextlib.suppress(BrokenPipeError):
        tracer.flush()
        print(json.dumps({"msg": "stopped", **stats}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
