"""Building TCP segments: the header, options (SYN options, SACK blocks, timestamps),
the advertised window, and choosing what data to send next (RFC 9293 3.8.6,
RFC 7323, RFC 2018, RFC 6691).

:class:`SegmentBuilder` is a part of :class:`~lab.tcp.connection.TcpConnection`
(a mixin over the connection's state); the constants here are shared with
the rest of the endpoint.
"""

from __future__ import annotations

import struct

from lab.tcp.addresses import Outgoing
from lab.tcp.extension import SegmentRole
from lab.tcp.state import TcpState
from lab.wire.tcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    MaxSegmentSize,
    NoOperation,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
    encode_raw,
    encode_segment,
    flags_text,
    push_options,
    timestamps_option,
)

MASK = 0xFFFFFFFF
HALF = 0x80000000
DEFAULT_MSS = 536  # RFC 9293 3.7.1: assumed when the peer sends no MSS option
_NOP = NoOperation()
_SACK_PERMITTED = SackPermitted()
_HEADER = struct.Struct("!HHIIBBHHH")
_TS_PAIR = struct.Struct("!II")


def _stamp(r: list) -> int:
    return r[3]


_TS_HEADER = struct.Struct("!HHIIBBHHH4xII")  # header, NOP NOP kind len, TSval, TSecr
# a TCP header with NOP, NOP, Timestamps (RFC 7323 appendix A): the common segment
_TS_SEGMENT = struct.Struct("!HHIIBBHHH4sII")
_TS_SEGMENT_OPTIONS = b"\x01\x01\x08\x0a"
_from_bytes = int.from_bytes
_M6016 = (1 << 6016) - 1
_M3008 = (1 << 3008) - 1
_M1504 = (1 << 1504) - 1
_TS_PREFIX = b"\x01\x01\x08\x0a"  # NOP NOP Timestamps(len 10)
_PREDICT_MASK = 0xFF & ~PSH  # ACK alone, PSH allowed
_new_outgoing = tuple.__new__  # Outgoing(addr, data) without the Python-level __new__

S = TcpState


class _Sent:
    """One transmitted, not yet cumulatively acknowledged segment (the scoreboard)."""

    __slots__ = ("end", "fin", "lost", "order", "retransmits", "sacked", "sent_at", "start")

    def __init__(self, start: int, end: int, fin: bool, sent_at: float, order: int) -> None:
        self.start = start
        self.end = end
        self.fin = fin
        self.sent_at = sent_at
        self.order = order  # the transmission's place in send order (RACK_sent_after)
        self.retransmits = 0
        self.sacked = False
        self.lost = False


class SegmentBuilder:
    """The sending half of a TcpConnection: segments out, header and options built here."""

    # set by the host when the interface's sender finishes TCP checksums itself (on Mininet, one
    # that hands the kernel CHECKSUM_PARTIAL frames): data segments then skip summing the payload
    checksum_offload = False

    def _rcv_window(self) -> int:
        free = self._rcv_buffer_bytes - len(self._rcv_buf) if self._rcv_buf else self._rcv_buffer_bytes
        if self._ext_rwnd is not None:
            ext_free = self._ext_rwnd()
            if ext_free is not None and ext_free < free:
                free = ext_free
        if free < 0:
            free = 0
        right = self._rcv_right_edge - self._rcv_nxt
        return right if free < right else free  # never shrink the window (RFC 9293 3.8.6.2.2)

    # --- building segments

    def _emit(
        self,
        flags: int,
        seq_off: int,
        payload: bytes,
        now: float,
        role: SegmentRole,
        options: list[TcpOption] | None = None,
    ) -> None:
        if options is None and self._ts_ok and self._plain and flags & ACK and not flags & (SYN | RST):
            # the per-segment fast path: timestamps only, no objects built
            self._ack_pending = False
            self._unacked_segments = 0
            self._delack_at = None
            self._last_ack_sent = rcv_nxt = self._rcv_nxt
            wscale = self._rcv_wscale
            # _rcv_window() inlined: free buffer, never left of the advertised right edge
            free = self._rcv_buffer_bytes - len(self._rcv_buf) if self._rcv_buf else self._rcv_buffer_bytes
            right = self._rcv_right_edge - rcv_nxt
            window = (right if free < right else free) >> wscale
            if window > 0xFFFF:
                window = 0xFFFF
            self._rcv_right_edge = rcv_nxt + (window << wscale)
            seq = (self._iss + seq_off) & MASK
            ack = (self._irs + rcv_nxt) & MASK
            tsval = (int(now * 1000) + self._ts_offset) & MASK
            ports = self._ports
            # SACK blocks only as far as they fit beside the payload in the peer's MSS
            # (RFC 6691: options count against it; a full-size segment carries none)
            nsack = min(3, (self._snd_mss - len(payload) - 4) // 8) if self._ooo and self._sack_ok else 0
            if nsack > 0:
                # timestamps plus up to three SACK blocks, most recent first (RFC 2018 4)
                recent = sorted(self._ooo, key=_stamp, reverse=True)[:nsack]
                irs = self._irs
                sack = bytearray(b"\x01\x01\x05")
                sack.append(2 + 8 * len(recent))
                for r in recent:
                    sack += _TS_PAIR.pack((irs + r[0]) & MASK, (irs + r[1]) & MASK)
                data = encode_raw(
                    ports[0],
                    ports[1],
                    seq,
                    ack,
                    flags,
                    window,
                    timestamps_option(tsval, self._ts_recent) + sack,
                    payload,
                    self._local_packed,
                    self._remote_packed,
                    0,
                    0,
                    self._address_sum,
                )
                self._out.append(_new_outgoing(Outgoing, (self.addr, data)))
                return
            ts_recent = self._ts_recent
            plen = len(payload)
            # the header's 16-bit words summed without packing it: 2**16 == 1 (mod 0xFFFF),
            # so a 32-bit field counts as its value; the constant words are summed once
            total = self._ts_header_sum + plen + seq + ack + flags + window + tsval + ts_recent
            if plen and not self.checksum_offload:
                total += _from_bytes(payload if not plen & 1 else payload + b"\x00", "big")
                if plen > 400:  # mod_ffff() inlined: fold at 16-bit multiples first
                    total = (total >> 6016) + (total & _M6016)
                    total = (total >> 3008) + (total & _M3008)
                    total = (total >> 1504) + (total & _M1504)
            csum = ~(total % 0xFFFF or 0xFFFF) & 0xFFFF
            head = _TS_SEGMENT.pack(
                ports[0], ports[1], seq, ack, 0x80, flags, window, csum, 0, _TS_SEGMENT_OPTIONS, tsval, ts_recent
            )
            self._out.append(_new_outgoing(Outgoing, (self.addr, head + payload if plen else head)))
            return
        opts: list[TcpOption] = options if options is not None else []
        if self._ts_ok and not flags & RST:
            opts.append(_NOP)
            opts.append(_NOP)
            opts.append(Timestamps(self._tsval(now), self._ts_recent))
        if self._ext is not None and flags & RST:
            opts.extend(self._ext.rst_options())
        elif self._ext is not None:
            opts.extend(
                self._ext.options_to_send(role, stream_offset=max(0, seq_off - 1), length=len(payload), now=now)
            )
        if flags & ACK:
            self._ack_pending = False
            self._unacked_segments = 0
            self._delack_at = None
            self._last_ack_sent = self._rcv_nxt
            if self._ooo and self._sack_ok:
                self._add_sack(opts, payload_len=len(payload))
            if flags & SYN:
                window = min(self._rcv_window(), 0xFFFF)
            else:
                wnd = self._rcv_window()
                window = min(wnd >> self._rcv_wscale, 0xFFFF)
                self._rcv_right_edge = self._rcv_nxt + (window << self._rcv_wscale)
            ack = (self._irs + self._rcv_nxt) & MASK
        else:
            ack = 0
            window = min(self._rcv_window(), 0xFFFF) if flags & SYN else 0
        if self._trace_on:
            seg = TcpSegment(
                self.addr.local_port,
                self.addr.remote_port,
                (self._iss + seq_off) & MASK,
                ack,
                flags,
                window,
                tuple(opts),
                payload,
            )
            self._trace_segment("segment_sent", seg, now)
            data = encode_segment(seg, self._local_packed, self._remote_packed)
        else:  # the same bytes without building the segment object
            data = encode_raw(
                self.addr.local_port,
                self.addr.remote_port,
                (self._iss + seq_off) & MASK,
                ack,
                flags,
                window,
                push_options(opts) if opts else b"",
                payload,
                self._local_packed,
                self._remote_packed,
                0,
                0,
                self._address_sum,
            )
        self._out.append(_new_outgoing(Outgoing, (self.addr, data)))

    def _add_sack(self, opts: list[TcpOption], *, payload_len: int = 0) -> None:
        used = len(push_options(opts)) if opts else 0
        space = 40 - used
        if payload_len:  # options and payload together within the peer's MSS (RFC 6691)
            space = min(space, self._snd_mss + (12 if self._ts_ok else 0) - payload_len - used)
        # SACK needs 2 + 8n bytes, plus 2 NOPs to keep alignment
        nblocks = min(len(self._ooo), (space - 4) // 8, 4)
        if nblocks <= 0:
            return
        recent = sorted(self._ooo, key=lambda r: r[3], reverse=True)[:nblocks]
        irs = self._irs
        blocks = tuple(((irs + r[0]) & MASK, (irs + r[1]) & MASK) for r in recent)
        opts.append(_NOP)
        opts.append(_NOP)
        opts.append(Sack(blocks))

    def _trace_segment(self, name: str, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        data = {
            "conn": str(self.addr),
            "flags": _FLAGS_TEXT[flags] if flags < 256 else flags_text(flags),
            "seq": seg.seq,
            "ack": seg.ack,
            "len": len(seg.payload),
            "win": seg.window,
        }
        if seg.options:
            data["options"] = [_option_record(o) for o in seg.options if type(o) is not NoOperation]
        self._tracer.record(now, "tcp", name, data)

    def _syn_options(self, now: float, synack: bool) -> list[TcpOption]:
        cfg = self.config
        opts: list[TcpOption] = [MaxSegmentSize(self._mss_announced)]
        if cfg.sack and (not synack or self._sack_ok):
            opts.append(_SACK_PERMITTED)
        if cfg.timestamps and (not synack or self._ts_ok):
            opts.append(Timestamps(self._tsval(now), self._ts_recent if synack else 0))
        else:
            opts.append(_NOP)
        if cfg.window_scaling and (not synack or self._wscale_ok):
            opts.append(_NOP)
            opts.append(WindowScale(cfg.window_shift))
        return opts

    def _send_ack(self, now: float) -> None:
        if not (self._ts_ok and self._plain) or (self._ooo and self._sack_ok):
            self._emit(ACK, self._snd_nxt, b"", now, SegmentRole.ACK)
            return
        # the common pure ACK: _emit()'s timestamps-only fast path without a payload
        self._ack_pending = False
        self._unacked_segments = 0
        self._delack_at = None
        self._last_ack_sent = rcv_nxt = self._rcv_nxt
        wscale = self._rcv_wscale
        free = self._rcv_buffer_bytes - len(self._rcv_buf) if self._rcv_buf else self._rcv_buffer_bytes
        right = self._rcv_right_edge - rcv_nxt
        window = (right if free < right else free) >> wscale
        if window > 0xFFFF:
            window = 0xFFFF
        self._rcv_right_edge = rcv_nxt + (window << wscale)
        seq = (self._iss + self._snd_nxt) & MASK
        ack = (self._irs + rcv_nxt) & MASK
        tsval = (int(now * 1000) + self._ts_offset) & MASK
        ts_recent = self._ts_recent
        total = self._ts_header_sum + seq + ack + ACK + window + tsval + ts_recent
        csum = ~(total % 0xFFFF or 0xFFFF) & 0xFFFF
        ports = self._ports
        head = _TS_SEGMENT.pack(
            ports[0], ports[1], seq, ack, 0x80, ACK, window, csum, 0, _TS_SEGMENT_OPTIONS, tsval, ts_recent
        )
        self._out.append(_new_outgoing(Outgoing, (self.addr, head)))

    def _send_data(self, now: float, *, probe: bool = False) -> None:
        """Send what cwnd, the peer's window and recovery allow; ``probe`` sends one
        new segment regardless of cwnd (a TLP probe)."""
        cfg = self.config
        cc = self._cc
        mss = self._snd_mss
        data_end = self._sbuf_off + len(self._sbuf)
        fin_off = self._fin_off
        recovering = self._recovery is not None
        if not recovering and self._snd_nxt >= data_end and (fin_off is None or self._snd_nxt > fin_off):
            return  # nothing new to send
        pending = 0
        if recovering:
            self._scoreboard_pass(now)
            pipe = self._sb_pipe
            candidates = self._sb_candidates
            # RFC 6675 NextSeg() rule 1: retransmit what is deemed lost
            first = self._sent[0] if self._sent else None
            pending = len(candidates)
            for rec in candidates:
                size = rec.end - rec.start
                if cc.cwnd - pipe < min(size, mss) and not (self._retransmit_first and rec is first):
                    break
                self._retransmit_first = False  # RFC 6675 (4.3): the first one goes out regardless of pipe
                self._retransmit(rec, now)
                pipe += size
                pending -= 1
        else:
            pipe = self._snd_max - self._snd_una

        # new data (and FIN)
        limited = 0
        if not recovering and 0 < self._dupacks < cfg.dup_thresh:
            limited = self._dupacks * mss  # RFC 3042 limited transmit
        seg_max = mss - self._opt_overhead
        wnd_edge = self._snd_una + self._snd_wnd
        cwnd_limit = cc.cwnd + limited
        sent = self._sent
        sent_new = False
        while True:
            nxt = self._snd_nxt
            if nxt < self._snd_max:  # only after an RTO collapse we re-send from snd_una
                break
            avail = data_end - nxt
            if avail <= 0 and nxt != fin_off:
                break  # nothing left, or our FIN is already out
            wnd_room = wnd_edge - nxt
            cwnd_room = cwnd_limit - pipe
            if probe and cwnd_room < mss:
                cwnd_room = mss
            size = avail if avail < seg_max else seg_max
            full = seg_max  # the largest this segment may be: Nagle holds only a smaller one
            if self._seg_limit is not None and size > 0:
                lim = self._seg_limit(nxt - 1)
                if lim <= size:
                    # the extension's boundary (a DSS mapping's end, or its option bytes at the start):
                    # the segment cannot grow by waiting, so Nagle has nothing to gain by holding it
                    size = full = lim
            if size > 0:
                if wnd_room <= 0:
                    if self._persist_at is None and self._snd_max == self._snd_una:
                        self._arm_persist(now)
                    break
                if cwnd_room < size:
                    if cwnd_room < seg_max and cwnd_room < avail:
                        break
                    size = cwnd_room
                if size > wnd_room:
                    # sender SWS avoidance (RFC 9293 3.8.6.2.1)
                    if wnd_room < seg_max and wnd_room < self._max_snd_wnd // 2:
                        if self._persist_at is None and self._snd_max == self._snd_una:
                            self._arm_persist(now)  # the override timeout; also covers a lost window update
                        break
                    size = wnd_room
                if cfg.nagle and fin_off is None and not self.push_tail and size < full and size == avail and self._snd_max > self._snd_una:
                    break  # Nagle: wait for outstanding data to be acknowledged
            elif cwnd_room <= 0 and pipe > 0:
                break
            end = nxt + size
            fin = end == fin_off
            if fin:
                seg_end = end + 1
                flags = ACK | FIN | (PSH if size else 0)
            else:
                seg_end = end
                flags = ACK | PSH if end == data_end else ACK
            self._tx_order = order = self._tx_order + 1
            sent.append(rec := _Sent(nxt, seg_end, fin, now, order))
            self._sent_by_start[nxt] = rec
            if size:  # _payload() inlined
                a = nxt - self._sbuf_off
                with memoryview(self._sbuf) as view:
                    payload = view[a : a + size].tobytes()
            else:
                payload = b""
            self._emit(flags, nxt, payload, now, SegmentRole.DATA)
            self._snd_nxt = self._snd_max = seg_end
            self._bytes_sent += size
            pipe += seg_end - nxt
            sent_new = True
            if fin or probe:
                break
        if sent_new:
            self._sb_version += 1
            if self._retransmit_at is None:
                self._retransmit_at = now + self._rto
            if not recovering:
                self._arm_tlp(now)

        if recovering and self._recovery == "fast" and not self._rescue_sent and self._sack_ok and not pending:
            self._rescue_retransmission(now, pipe)


_FLAGS_TEXT = tuple(flags_text(f) for f in range(256))


def _option_record(opt: TcpOption) -> dict:
    t = type(opt)
    if t is Timestamps:
        return {"kind": "TS", "tsval": opt.tsval, "tsecr": opt.tsecr}
    if t is Sack:
        return {"kind": "SACK", "blocks": [list(b) for b in opt.blocks]}
    if t is MaxSegmentSize:
        return {"kind": "MSS", "value": opt.value}
    if t is WindowScale:
        return {"kind": "WS", "shift": opt.shift}
    if t is SackPermitted:
        return {"kind": "SACK_PERM"}
    return {"kind": opt.kind, "data": opt.data.hex()}
