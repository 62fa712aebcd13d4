"""Multipath TCP options as one connection builds and reads them (RFC 8684 §3).

The byte layouts are ``lab.wire.mptcp``'s; here is which option goes on
which segment: MP_CAPABLE on the handshake, MP_JOIN with its HMACs, the DSS
(Data ACK, mapping, checksum, DATA_FIN, the infinite mapping), ADD_ADDR and
REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE and MP_TCPRST, and how a
received segment's options are read and dispatched. :class:`OptionBuilder`
is a part of :class:`~lab.mptcp.connection.MptcpConnection` (a mixin over
the connection's state); the constants here are shared with it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from lab.errors import DecodeError
from lab.mptcp import crypto
from lab.mptcp import events as ev
from lab.mptcp.state import Role, SubflowInput, SubflowState
from lab.tcp.extension import SegmentRole
from lab.wire import mptcp as w
from lab.wire.tcp import TcpOption, TcpSegment, UnknownOption, decode_segment

if TYPE_CHECKING:
    from lab.mptcp.connection import Subflow

MOD64 = 1 << 64
DSS_ACK_BYTES = 12  # DSS with a 64-bit Data ACK: on every segment
DSS_MAPPING_EXTRA = 16  # + 64-bit DSN, subflow sequence number, length, checksum: on a mapping's first segment
ADD_ADDR_RETRIES = 3
MP_FAIL_WAIT_S = 5.0  # after our MP_FAIL: how long the peer's infinite mapping may take (at least)
MP_FAIL_FALLBACK = "checksum failure: MP_FAIL then infinite mapping"
MP_FAIL_CLOSED = "the peer closed the subflow before the infinite mapping our MP_FAIL asked for"
MP_FAIL_NO_MAPPING = "the peer fell back to TCP without an infinite mapping: the discarded bytes never come again"
_ROLE_SYN = SegmentRole.SYN
_ROLE_SYNACK = SegmentRole.SYN_ACK
_ROLE_ACK = SegmentRole.ACK
_ROLE_DATA = SegmentRole.DATA


def _whole_segments(n: int, mss: int) -> int:
    """The largest mapping length <= ``n`` that fills whole segments (the first one carries the
    mapping, 16 option bytes more than the others); ``n`` itself when not even one fits."""
    first = mss - DSS_ACK_BYTES - DSS_MAPPING_EXTRA
    rest = mss - DSS_ACK_BYTES
    if n < first or rest <= 0:
        return n
    return first + (n - first) // rest * rest


def option_record(opt: w.MptcpOption) -> dict:
    """A decoded option as a JSON-able dict for the trace (``subtype`` named, bytes as hex)."""
    layout = _RECORD_LAYOUTS.get(type(opt))
    if layout is None:
        layout = _RECORD_LAYOUTS[type(opt)] = _record_layout(type(opt))
    subtype, names, keys = layout
    out: dict = {"subtype": subtype}
    for name in names:
        value = getattr(opt, name)
        if type(value) is int:
            if name in keys:
                value = f"{value:016x}"
        elif isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, int) and not isinstance(value, bool) and name in keys:
            value = f"{value:016x}"
        out[name] = value
    return out


def _record_layout(cls: type) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """What option_record() needs of an option class: its subtype name, field names, key fields."""
    subtype = _SUBTYPE_NAMES.get(cls, cls.__name__.replace("Mp", "MP_").upper())
    names = tuple(f.name for f in fields(cls))
    return subtype, names, frozenset(n for n in names if n.endswith("key"))


_RECORD_LAYOUTS: dict[type, tuple[str, tuple[str, ...], frozenset[str]]] = {}


_SUBTYPE_NAMES = {
    w.MpCapableSyn: "MP_CAPABLE",
    w.MpCapableSynAck: "MP_CAPABLE",
    w.MpCapableAck: "MP_CAPABLE",
    w.MpCapableAckData: "MP_CAPABLE",
    w.MpJoinSyn: "MP_JOIN",
    w.MpJoinSynAck: "MP_JOIN",
    w.MpJoinAck: "MP_JOIN",
    w.Dss: "DSS",
    w.AddAddr: "ADD_ADDR",
    w.AddAddrV0: "ADD_ADDR",
    w.RemoveAddr: "REMOVE_ADDR",
    w.MpPrio: "MP_PRIO",
    w.MpFail: "MP_FAIL",
    w.MpFastclose: "MP_FASTCLOSE",
    w.MpTcpRst: "MP_TCPRST",
    w.UnknownMptcpOption: "UNKNOWN",
}


def syn_mptcp_option(segment: bytes) -> w.MptcpOption | None:
    """The MP_CAPABLE or MP_JOIN option of a SYN (raw TCP bytes), or None; never raises."""
    try:
        seg = decode_segment(segment)
    except DecodeError:
        return None
    for o in seg.options:
        if type(o) is UnknownOption and o.kind == w.MPTCP_KIND:
            try:
                return w.from_tcp_option(o, syn=True, ack=False)
            except DecodeError:
                return None
    return None


class OptionBuilder:
    """Which MPTCP options a segment carries, and what a received segment's options do."""

    def _options_for(
        self, sf: Subflow, role: SegmentRole, stream_offset: int, length: int, now: float
    ) -> list[TcpOption]:
        if self.fallback is not None:
            if self._infinite_map is None:
                return []
            return self._infinite_map_option(sf, role, stream_offset, length, now)
        opts: list[w.MptcpOption] = []
        v = self.version
        flags = w.MP_CAPABLE_HMAC_SHA256 | (w.MP_CAPABLE_CHECKSUM_REQUIRED if self.checksum else 0)
        if sf.initial:
            if role is _ROLE_SYN:
                if v == 1:
                    opts.append(w.MpCapableSyn(version=1, flags=flags))
                else:
                    opts.append(w.MpCapableSyn(version=0, flags=flags, sender_key=self.local_key))
            elif role is _ROLE_SYNACK:
                opts.append(w.MpCapableSynAck(sender_key=self.local_key, version=v, flags=flags))
            elif (
                self.role == Role.CLIENT
                and not self.fully_established
                and self.remote_key is not None
                and not (role is _ROLE_ACK and v == 1 and self._data_fin_due() and sf.conn.stream_offset_sent > 0)
            ):
                # (a DATA_FIN due after our data, which carried our keys in MP_CAPABLE, goes out in a DSS
                # on the next ACK instead of one more MP_CAPABLE echo: a short flow ends one RTT sooner)
                if role is _ROLE_ACK or v == 0:
                    opts.append(w.MpCapableAck(self.local_key, self.remote_key, version=v, flags=flags))
                    if v == 0 and role is _ROLE_DATA:
                        opts = [self._dss_for(sf, role, stream_offset, length)]
                else:
                    i = sf.mapping_at(stream_offset)
                    if i == 0 and sf.map_sub[0] == 0 and sf.map_data[0] == 0:
                        opts.append(
                            w.MpCapableAckData(
                                self.local_key,
                                self.remote_key,
                                sf.map_len[0],
                                checksum=sf.map_csum[0] if self.checksum else None,
                                version=v,
                                flags=flags,
                            )
                        )
                    else:
                        opts.append(self._dss_for(sf, role, stream_offset, length))
            elif self.remote_key is not None:
                opts.append(self._dss_for(sf, role, stream_offset, length))
                if role is _ROLE_ACK and sf.fail_sub_off is not None:
                    if opts[-1].data_fin:  # no room for both: the DATA_FIN is sent again later
                        opts[-1] = w.Dss(data_ack=opts[-1].data_ack, data_ack_64=True)
                    opts.append(w.MpFail(data_seq=sf.fail_dsn))  # RFC 8684 §3.7: until the infinite mapping
        else:
            if role is _ROLE_SYN:
                opts.append(
                    w.MpJoinSyn(
                        address_id=sf.local_id, token=self.remote_token or 0, nonce=sf.local_nonce, backup=sf.backup
                    )
                )
            elif role is _ROLE_SYNACK:
                mac = crypto.mp_join_synack_hmac(
                    self.local_key, self.remote_key or 0, sf.local_nonce, sf.remote_nonce, version=v
                )
                opts.append(
                    w.MpJoinSynAck(address_id=sf.local_id, truncated_hmac=mac, nonce=sf.local_nonce, backup=sf.backup)
                )
            elif sf.state in (SubflowState.SYN, SubflowState.PRE_ESTABLISHED) and self.role == Role.CLIENT:
                mac = crypto.mp_join_ack_hmac(
                    self.local_key, self.remote_key or 0, sf.local_nonce, sf.remote_nonce, version=v
                )
                opts.append(w.MpJoinAck(hmac=mac))
            elif sf.state == SubflowState.ESTABLISHED:
                opts.append(self._dss_for(sf, role, stream_offset, length))
        if (
            role is _ROLE_ACK
            and sf.state == SubflowState.ESTABLISHED
            and (self._echo or self._announce or self._signals or sf.prio_pending)
            # not beside the client's repeated MP_CAPABLE: Linux ignores an ADD_ADDR (echo) there and
            # announces again; the signal waits for the server's DSS, which requests an ACK for it
            and not (opts and type(opts[0]) in (w.MpCapableAck, w.MpCapableAckData))
        ):
            used = sum(2 + len(w.push_mptcp_option(o)) for o in opts)
            limit = 40 - (12 if sf.conn.timestamps_enabled else 0)
            # a signal too long to share a pure ACK with its Data ACK (an ADD_ADDR with a port or an
            # IPv6 address) goes out alone, as Linux sends it; the Data ACK follows on the next ACK
            alone_ok = len(opts) == 1 and type(opts[0]) is w.Dss and opts[0].data_seq is None
            signal = self._address_signals(sf, now, limit if alone_ok else limit - used)
            if signal is not None:
                if alone_ok and 2 + len(w.push_mptcp_option(signal)) > limit - used:
                    opts = [signal]
                    sf.ack_owed = True
                else:
                    opts.append(signal)
        if self._trace_on and opts:
            self._trace(
                now,
                "segment_sent",
                {"token": self.local_token, "subflow": str(sf.addr), "mptcp": [option_record(o) for o in opts]},
            )
        return [w.to_tcp_option(o) for o in opts]

    def _data_fin_due(self) -> bool:
        return self._fin_off is not None and not self._fin_acked and self._snd_nxt >= self._fin_off

    def _data_ack_value(self) -> int:
        off = self._rcv_nxt + (1 if self._peer_fin_seen else 0)
        return (self.remote_idsn + 1 + off) % MOD64

    def _dss_for(self, sf: Subflow, role: SegmentRole, stream_offset: int, length: int) -> w.Dss:
        data_ack = self._data_ack_value()
        if role is _ROLE_DATA and length:
            i = sf.mapping_at(stream_offset)
            # the mapping rides on its first segment (and that segment's retransmissions); the
            # receiver holds it until the subflow stream has passed it (RFC 8684 §3.3.1)
            if i >= 0 and sf.map_sub[i] == stream_offset:
                return w.Dss(
                    data_ack=data_ack,
                    data_ack_64=True,
                    data_seq=(self.local_idsn + 1 + sf.map_data[i]) % MOD64,
                    data_seq_64=True,
                    subflow_seq=sf.map_sub[i] + 1,
                    data_level_length=sf.map_len[i],
                    checksum=sf.map_csum[i] if self.checksum else None,
                )
        if self._fin_off is not None and not self._fin_acked and self._snd_nxt >= self._fin_off and not length:
            dsn = (self.local_idsn + 1 + self._fin_off) % MOD64
            csum = crypto.dss_checksum(dsn, 0, 1) if self.checksum else None
            return w.Dss(
                data_ack=data_ack,
                data_ack_64=True,
                data_seq=dsn,
                data_seq_64=True,
                subflow_seq=0,
                data_level_length=1,
                checksum=csum,
                data_fin=True,
            )
        return w.Dss(data_ack=data_ack, data_ack_64=True)

    def _signal_waits(self, sf: Subflow) -> bool:
        """An address signal is ready to go on ``sf``'s next pure ACK (RFC 8684 §3.4.1: an ADD_ADDR is
        echoed; Linux sends a pure ACK for it): an echo, MP_PRIO, REMOVE_ADDR or a due ADD_ADDR, on an
        established subflow where no MP_CAPABLE is repeated (see :meth:`_options_for`)."""
        if sf.state != SubflowState.ESTABLISHED or self.fallback is not None:
            return False
        if sf.initial and self.role == Role.CLIENT and not self.fully_established:
            return False
        return bool(self._echo or self._signals or sf.prio_pending or any(e[4] for e in self._announce))

    def _address_signals(self, sf: Subflow, now: float, room: int) -> w.MptcpOption | None:
        """One address signal (echo, MP_PRIO, REMOVE_ADDR, ADD_ADDR) that fits in ``room`` option bytes."""

        def fits(opt: w.MptcpOption) -> bool:
            return 2 + len(w.push_mptcp_option(opt)) <= room

        limit = 40 - (12 if sf.conn.timestamps_enabled else 0)
        while self._echo and 2 + len(w.push_mptcp_option(self._echo[0])) > limit:
            dropped = self._echo.pop(0)  # can never fit next to the timestamps
            self._trace(
                now, "error", {"token": self.local_token, "reason": f"ADD_ADDR echo for {dropped.address} does not fit"}
            )
        if self._echo and fits(self._echo[0]):
            return self._echo.pop(0)
        if sf.prio_pending and fits(w.MpPrio(backup=sf.backup)):
            sf.prio_pending = False
            return w.MpPrio(backup=sf.backup)
        if self._signals and fits(self._signals[0]):
            return self._signals.pop(0)
        entry = next((e for e in self._announce if e[4]), None)
        if entry is not None and self.remote_key is not None:
            address_id, address, port = entry[0], entry[1], entry[5]
            opt: w.MptcpOption
            if self.version == 1:
                # RFC 8684 §3.4.1: the HMAC covers Address ID, address and port (zero when none is sent)
                mac = crypto.add_addr_hmac(self.local_key, self.remote_key, address_id, address, port)
                opt = w.AddAddr(address_id=address_id, address=address, port=port, truncated_hmac=mac)
            else:
                opt = w.AddAddrV0(address_id=address_id, address=address, port=port)
            if 2 + len(w.push_mptcp_option(opt)) > limit:
                self._announce.remove(entry)
                self._trace(now, "error", {"token": self.local_token, "reason": f"ADD_ADDR for {address} does not fit"})
                return None
            if not fits(opt):
                return None
            entry[2] -= 1
            entry[4] = False
            entry[3] = now + max(1.0, 2 * (sf.conn.srtt or 0.5))
            if entry[2] <= 0 or self.version == 0:
                self._announce.remove(entry)  # v0 has no echo: sent once
            return opt
        return None

    def _initial_options(self, sf: Subflow, role, seg, opts, now) -> None:
        mpc = next(
            (o for o in opts if type(o) in (w.MpCapableSyn, w.MpCapableSynAck, w.MpCapableAck, w.MpCapableAckData)),
            None,
        )
        if role is _ROLE_SYN and self.role == Role.SERVER:
            if not isinstance(mpc, w.MpCapableSyn):
                self._fall_back("no MP_CAPABLE in the SYN", now)
                return
            # RFC 8684 §3.1: the SYN offers the client's highest version; answer with it when we speak
            # it, with our highest when the offer is higher; a lower offer we do not speak: plain TCP
            supported = self.config.supported_versions
            offered = mpc.version
            if offered not in supported and offered < supported[0]:
                self._fall_back(
                    "peer offers MPTCP v0 only" if offered == 0 else f"peer offers MPTCP v{offered} only", now
                )
                return
            chosen = offered if offered in supported else supported[0]
            if chosen != offered or len(supported) > 1:
                why = "we speak the offered version" if chosen == offered else "the offer is higher than we speak"
                self._set_version(chosen, now, offered=offered, why=why)
            if self.version == 1 and not mpc.hmac_flag:
                self._fall_back("MP_CAPABLE SYN without the H flag", now)
                return
            if self.version == 0 and offered == 0:
                if mpc.sender_key is None:
                    self._fall_back("v0 MP_CAPABLE SYN without a key", now)
                    return
                self._set_remote_key(mpc.sender_key, now)
            # answering a higher offer with v0: the client's key arrives in its v0 third ACK
            if mpc.checksum_required:
                self.checksum = True
            return
        if role is _ROLE_SYNACK and self.role == Role.CLIENT:
            supported = self.config.supported_versions
            if isinstance(mpc, w.MpCapableSynAck) and mpc.version < self.version and mpc.version in supported:
                # RFC 8684 §3.1: the server speaks a lower version that we speak too: continue with it
                self._set_version(
                    mpc.version, now, offered=self.version, why=f"the SYN/ACK answered with v{mpc.version}"
                )
                self._remember_version(mpc.version)
            if not isinstance(mpc, w.MpCapableSynAck) or mpc.version != self.version:
                if mpc is None:
                    lower = [v for v in supported if v < self.version]
                    if lower:  # maybe a server of a lower version that could not read our SYN: a
                        # new connection offers that version (this one is plain TCP now, §3.7)
                        self._remember_version(lower[0])
                        self._trace_version_fallback(now, lower[0])
                    elif self.version != self.config.version:
                        self._remember_version(None)  # the lower version did not work either
                self._fall_back(
                    "no MP_CAPABLE in the SYN/ACK"
                    if mpc is None
                    else f"SYN/ACK MP_CAPABLE version {getattr(mpc, 'version', '?')}",
                    now,
                )
                return
            if mpc.checksum_required:
                self.checksum = True
            self._set_remote_key(mpc.sender_key, now)
            self.established = True
            return
        if self.role == Role.SERVER and not self.established:
            if isinstance(mpc, (w.MpCapableAck, w.MpCapableAckData)):
                if mpc.receiver_key != self.local_key:
                    self._fall_back("MP_CAPABLE ACK echoes a key that is not ours", now)
                    return
                if self.remote_key is None:
                    self._set_remote_key(mpc.sender_key, now)
                if mpc.checksum_required:
                    self.checksum = True
                self.established = True
                if isinstance(mpc, w.MpCapableAckData) and seg.payload:
                    self._add_recv_mapping(sf, 0, mpc.data_level_length, 0, mpc.checksum, now, data_fin=False)
                    sf.got_dss = True
                return
            if role in (_ROLE_ACK, _ROLE_DATA):
                if any(type(o) is w.Dss for o in opts) and self.remote_key is not None:
                    self.established = True  # v0: keys seen in the SYN; a DSS shows the peer is MPTCP
                    return
                if role is _ROLE_ACK and any(type(o) is w.Dss for o in opts):
                    # a v1 client's DATA_FIN overtook its MP_CAPABLE (lost): wait for those to come again
                    self._trace(
                        now,
                        "segment_dropped",
                        {"token": self.local_token, "subflow": str(sf.addr), "reason": "DSS before the client's keys"},
                    )
                    return
                self._fall_back("the client's keys never arrived (third ACK without MP_CAPABLE)", now)
                return
        if self.role == Role.SERVER and isinstance(mpc, w.MpCapableAckData) and seg.payload and not sf.got_dss:
            # the client repeats MP_CAPABLE on its first data until it hears a DSS from us
            self._add_recv_mapping(sf, 0, mpc.data_level_length, 0, mpc.checksum, now, data_fin=False)
        if self.role == Role.CLIENT and not self.fully_established and any(type(o) is w.Dss for o in opts):
            self._now_fully_established(sf, now)
        if self.role == Role.CLIENT and self.established and role is not _ROLE_SYNACK and not opts and seg.payload:
            if not sf.got_dss:
                self._fall_back("server data without a DSS mapping", now)

    def _join_options(self, sf: Subflow, role, seg, opts, now) -> None:
        join = next((o for o in opts if type(o) in (w.MpJoinSyn, w.MpJoinSynAck, w.MpJoinAck)), None)
        if role is _ROLE_SYN:
            if not isinstance(join, w.MpJoinSyn) or join.token != self.local_token:
                self._reset_subflow(sf, "SYN without a valid MP_JOIN", w.MPTCP_RST_MPTCP_ERROR, now)
                return
            sf.remote_nonce = join.nonce
            sf.remote_id = join.address_id
            sf.peer_backup = join.backup
            return
        if role is _ROLE_SYNACK:
            expected = crypto.mp_join_synack_hmac(
                self.remote_key or 0,
                self.local_key,
                join.nonce if isinstance(join, w.MpJoinSynAck) else 0,
                sf.local_nonce,
                version=self.version,
            )
            if not isinstance(join, w.MpJoinSynAck):
                self._reset_subflow(sf, "no MP_JOIN in the SYN/ACK", w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now)
                return
            if join.truncated_hmac != expected:
                self._reset_subflow(sf, "MP_JOIN SYN/ACK with a wrong HMAC", w.MPTCP_RST_MPTCP_ERROR, now)
                return
            sf.remote_nonce = join.nonce
            sf.remote_id = join.address_id
            sf.peer_backup = join.backup
            self._set_subflow_state(sf, SubflowInput.JOIN_SYNACK_VERIFIED, now)
            sf.join_ack_at = now + max(0.2, 2 * (sf.conn.srtt or 0.5))
            return
        if self.role == Role.SERVER and sf.state == SubflowState.SYN:
            if not isinstance(join, w.MpJoinAck):
                self._reset_subflow(sf, "third ACK without MP_JOIN", w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now)
                return
            expected = crypto.mp_join_ack_hmac(
                self.remote_key or 0, self.local_key, sf.remote_nonce, sf.local_nonce, version=self.version
            )
            if join.hmac != expected:
                self._reset_subflow(sf, "MP_JOIN third ACK with a wrong HMAC", w.MPTCP_RST_MPTCP_ERROR, now)
                return
            self._set_subflow_state(sf, SubflowInput.HANDSHAKE_COMPLETED, now, remote_id=sf.remote_id)
            self._events.append(ev.SubflowEstablished(addr=sf.addr, address_id=sf.local_id))
            sf.conn.request_ack()  # acknowledge the third ACK (RFC 8684 §3.2)
            return
        if self.role == Role.CLIENT and sf.state == SubflowState.PRE_ESTABLISHED and role in (_ROLE_ACK, _ROLE_DATA):
            sf.join_ack_at = None
            self._set_subflow_state(sf, SubflowInput.JOIN_ACK_ACKNOWLEDGED, now, remote_id=sf.remote_id)
            self._events.append(ev.SubflowEstablished(addr=sf.addr, address_id=sf.local_id))

    def _infinite_map_option(
        self, sf: Subflow, role: SegmentRole, stream_offset: int, length: int, now: float
    ) -> list[TcpOption]:
        """After our fallback on MP_FAIL: the infinite mapping on the segment at its subflow offset
        (and that segment's retransmissions) until the peer has acknowledged it; a DSS with the
        Data ACK on the segments before it."""
        sub_off, data_seq, data_ack = self._infinite_map
        if sf.conn.stream_offset_acked > sub_off:
            self._infinite_map = None
            return []
        if role is not _ROLE_DATA or not length or stream_offset > sub_off:
            return []
        if stream_offset < sub_off:
            # bytes mapped before the MP_FAIL (the peer drops them): still MPTCP segments, so that
            # only the infinite mapping ends the peer's wait
            return [w.to_tcp_option(w.Dss(data_ack=data_ack, data_ack_64=True))]
        opt = w.Dss(
            data_ack=data_ack,
            data_ack_64=True,
            data_seq=data_seq,
            data_seq_64=True,
            subflow_seq=sub_off + 1,
            data_level_length=0,
            checksum=0 if self.checksum else None,  # RFC 8684 §3.3.1: zero in an infinite mapping
        )
        if self._trace_on:
            self._trace(
                now, "segment_sent", {"token": self.local_token, "subflow": str(sf.addr), "mptcp": [option_record(opt)]}
            )
        return [w.to_tcp_option(opt)]

    def _on_options(self, sf: Subflow, role: SegmentRole, seg: TcpSegment, stream_offset: int, now: float) -> None:
        opts: list[w.MptcpOption] = []
        syn = role in (_ROLE_SYN, _ROLE_SYNACK)
        for o in seg.options:
            if type(o) is UnknownOption and o.kind == w.MPTCP_KIND:
                try:
                    opts.append(w.from_tcp_option(o, version=self.version, syn=syn, ack=role is not _ROLE_SYN))
                except DecodeError as exc:
                    self._trace(
                        now,
                        "segment_dropped",
                        {"token": self.local_token, "subflow": str(sf.addr), "reason": f"bad MPTCP option: {exc}"},
                    )
        if self._trace_on and opts:
            self._trace(
                now,
                "segment_received",
                {"token": self.local_token, "subflow": str(sf.addr), "mptcp": [option_record(o) for o in opts]},
            )
        if self.fallback is not None:
            if self._fail_watch_off is not None:
                self._watch_after_mp_fail(opts, now)
            return
        if not opts and sf.fail_sub_off is not None and role is _ROLE_DATA:
            # after our MP_FAIL, data without any MPTCP option: once the subflow stream gets there
            # with no infinite mapping seen, the peer went plain TCP without one (Linux 6.x does so)
            if sf.plain_from is None or stream_offset < sf.plain_from:
                sf.plain_from = stream_offset
        if (
            not opts
            and not syn
            and sf.initial
            and sf.got_dss
            and sf.fail_sub_off is None
            and not sf.doomed
            and self._pending_abort is None
            and len(self.subflows) == 1
            and sf.state == SubflowState.ESTABLISHED
        ):
            # the peer spoke MPTCP on this subflow and now sends segments without any MPTCP option:
            # it fell back (an infinite mapping we may never have seen, RFC 8684 §3.7), or a box
            # strips the options. Our subflow stream is our data stream only while no data went
            # out twice and no other subflow was used: then plain TCP, else the connection ends.
            if self._infinite_ok:
                self._fall_back("the peer's segments carry no MPTCP option any more", now)
            else:
                self._abort_after_fail("the peer's segments carry no MPTCP option any more", now)
            return
        if sf.initial:
            self._initial_options(sf, role, seg, opts, now)
        else:
            self._join_options(sf, role, seg, opts, now)
        if self.fallback is not None or self.terminated:
            return
        for o in opts:
            t = type(o)
            if t is w.Dss:
                # a subflow we are closing still receives (FIN_WAIT), and the peer may still map data
                # there (Linux retransmits at data level on an idle subflow): its mapping counts
                if sf.state in (SubflowState.ESTABLISHED, SubflowState.CLOSING) or (sf.initial and self.established):
                    self._on_dss(sf, o, seg, stream_offset, now)
            elif t is w.AddAddr or t is w.AddAddrV0:
                self._on_add_addr(sf, o, now)
            elif t is w.RemoveAddr:
                self._on_remove_addr(o, now)
            elif t is w.MpPrio:
                sf.peer_backup = o.backup
                self._trace(
                    now, "state_updated", {"token": self.local_token, "subflow": str(sf.addr), "peer_backup": o.backup}
                )
            elif t is w.MpFastclose:
                if o.receiver_key == self.local_key:
                    self._trace(now, "state_updated", {"token": self.local_token, "fastclose": True})
                    for s in list(self.subflows):
                        s.conn.abort("MP_FASTCLOSE from peer", now=now)
                    self._terminate("MP_FASTCLOSE from peer", now, reset=True)
                    return
                self._trace(now, "error", {"token": self.local_token, "reason": "MP_FASTCLOSE with a wrong key"})
            elif t is w.MpFail:
                self._trace(
                    now,
                    "state_updated",
                    {
                        "token": self.local_token,
                        "subflow": str(sf.addr),
                        "mp_fail": o.data_seq,
                        "direction": "received",
                    },
                )
                if sf.fail_sub_off is not None:
                    continue  # the peer echoes our own MP_FAIL (as Linux does); we wait for its infinite mapping
                if len(self.subflows) == 1:
                    self._on_mp_fail(sf, o.data_seq, now)
                    return
                self._reset_subflow(sf, "MP_FAIL from peer", w.MPTCP_RST_MIDDLEBOX_INTERFERENCE, now)
            elif t is w.MpTcpRst:
                sf.close_reason = f"MP_TCPRST reason {o.reason}"
        if (
            role is _ROLE_DATA
            and seg.payload
            and sf.state == SubflowState.ESTABLISHED
            and not sf.got_dss
            and self.fallback is None
            and sf.fail_sub_off is None  # after our MP_FAIL, plain data waits for the infinite mapping
            and not sf.doomed  # an abort is on its way (e.g. no infinite mapping came): no fallback now
        ):
            if sf.initial and not any(type(o) in (w.Dss, w.MpCapableAckData) for o in opts):
                # RFC 8684 §3.7: data without a mapping on the initial subflow before any DSS: plain TCP
                self._fall_back("data without a DSS mapping", now)
