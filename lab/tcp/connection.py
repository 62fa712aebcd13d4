"""The sans-I/O TCP endpoint.

Sequence numbers are kept internally as unbounded offsets from the initial
sequence numbers (ISS for what we send, IRS for what we receive): the SYN is
offset 0, stream byte ``k`` is offset ``k + 1``. Offsets compare as plain
integers; the wire value is ``(ISS + offset) mod 2**32``.

RFCs followed: 9293 (TCP), 7323 (window scale, timestamps, PAWS), 2018
(SACK), 6675 (SACK-based loss recovery), 6582 (NewReno recovery without
SACK), 3042 (limited transmit), 6298 (RTO), 5681 and 9438 (congestion
control), 5961 (RST and SYN hardening), 6928 (initial window).
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import deque

from lab.errors import DecodeError, LocalProtocolError
from lab.tcp.addresses import FourTuple, Outgoing
from lab.tcp.config import TcpConfig
from lab.tcp.congestion import CongestionControl, make_congestion_control
from lab.tcp.events import (
    ConnectionEstablished,
    ConnectionTerminated,
    DataReceived,
    StreamEnded,
    TcpEvent,
)
from lab.tcp.extension import SegmentRole, TcpExtension
from lab.tcp.recovery import LossRecovery
from lab.tcp.segments import (
    _M1504,
    _M3008,
    _M6016,
    _PREDICT_MASK,
    _TS_HEADER,
    _TS_PREFIX,
    DEFAULT_MSS,
    HALF,
    MASK,
    S,
    SegmentBuilder,
    _from_bytes,
    _Sent,
)
from lab.tcp.state import CAN_RECEIVE_DATA, CAN_SEND, SYNCHRONIZED, TRANSITIONS, Input, TcpState
from lab.trace import NULL_TRACER, Tracer
from lab.wire.checksum import mod_ffff, pack_address, pseudo_header_sum
from lab.wire.tcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    MaxSegmentSize,
    Sack,
    SackPermitted,
    TcpSegment,
    Timestamps,
    WindowScale,
    decode_segment,
    encode_segment,
)

SBUF_TRIM_BYTES = 64 * 1024  # acknowledged bytes leave the send buffer's front in runs of at least this


class TcpConnection(SegmentBuilder, LossRecovery):
    """One TCP connection, driven by its caller.

    Inputs: :meth:`connect`, :meth:`listen`, :meth:`send`, :meth:`close`,
    :meth:`abort`, :meth:`receive_segment`, :meth:`handle_timer`. Outputs:
    :meth:`segments_to_send`, :meth:`get_timer`, :meth:`next_event`.
    """

    def __init__(
        self,
        *,
        addr: FourTuple,
        config: TcpConfig | None = None,
        tracer: Tracer = NULL_TRACER,
        rng: random.Random | None = None,
        extension: TcpExtension | None = None,
        congestion: CongestionControl | None = None,
    ) -> None:
        self.addr = addr
        self.config = config = config or TcpConfig()
        self._tracer = tracer
        self._trace_on = tracer.enabled
        self._rng = rng or random.Random(0)
        self._ext = extension
        self._local_packed = pack_address(addr.local_addr)
        self._remote_packed = pack_address(addr.remote_addr)
        self._ip_overhead = 40 if len(self._local_packed) == 4 else 60
        self._address_sum = pseudo_header_sum(self._local_packed, self._remote_packed, 6, 0)
        self._ports = (addr.local_port, addr.remote_port)
        # pseudo-header and the constant words of a timestamps-only header:
        # ports, data offset 8 (0x80 << 8), NOP NOP (0x0101), kind 8 length 10 (0x080a)
        self._ts_header_sum = self._address_sum + 32 + addr.local_port + addr.remote_port + 0x8000 + 0x0101 + 0x080A
        self._state = S.CLOSED
        self._events: deque[TcpEvent] = deque()
        self._out: list[Outgoing] = []
        self._keepalive_idle = config.keepalive_idle_s
        self._rcv_buffer_bytes = config.receive_buffer_bytes
        self._plain = extension is None and not self._trace_on  # nothing to tell about each segment

        # send side (offsets from ISS)
        self._iss = self._rng.getrandbits(32)
        self._snd_una = 0
        self._snd_nxt = 0
        self._snd_max = 0
        self._snd_wnd = 0
        self._max_snd_wnd = 0
        self._snd_wl1 = 0
        self._snd_wl2 = 0
        self._snd_wscale = 0
        self._sbuf = bytearray()
        self._sbuf_off = 1  # offset of _sbuf[0]
        self._sbuf_head = 0  # acknowledged bytes still at the front of _sbuf
        self._fin_queued = False
        self._fin_off: int | None = None  # offset of our FIN once queued
        self._sent: deque[_Sent] = deque()
        self._sent_by_start: dict[int, _Sent] = {}  # the same records, found by their first offset
        self._sack_memo: dict[int, int] = {}  # SACK block left edge -> right edge already applied
        self._dupacks = 0
        self._recovery: str | None = None  # None, "fast" or "rto"
        self._recovery_point = 0
        self._sacked_bytes = 0
        self._highest_sacked = 0
        self._retransmit_first = False
        self._rescue_sent = False  # RFC 6675 RescueRxt
        self._sb_version = 0  # bumped on every scoreboard change; _scoreboard_pass caches by it
        self._sb_cache: tuple[int, float] | None = None
        self._sb_pipe = 0
        self._sb_candidates: list[_Sent] = []
        self._sb_highest_unsacked: _Sent | None = None
        self._sb_rack_found = False
        self._rack_xmit_ts = 0.0  # RFC 8985: send time of the newest delivered segment
        self._rack_rtt = 0.0
        self._rack_fack = 0  # RACK.fack: the highest sequence delivered
        self._rack_reordering_seen = False
        self._rack_order = 0  # ...and its place in send order: exact where send times tie
        self._tx_order = 0
        self._rack_timer_at: float | None = None
        self._tlp_at: float | None = None  # RFC 8985 tail loss probe
        self._tlp_end: int | None = None
        self._tlp_retransmitted = False
        self._bytes_sent = 0
        self._bytes_retransmitted = 0
        self._bytes_acked = 0
        self._round_end = 0  # HyStart++ rounds (RFC 9406): snd_nxt when the round began

        # receive side (offsets from IRS)
        self._irs = 0
        self._rcv_nxt = 0
        self._rcv_wscale = 0
        self._rcv_right_edge = 0
        self._rcv_buf = bytearray()  # in-order bytes the application has not read (paused)
        self._reading = True
        self._ooo: list[list] = []  # sorted [start, end, bytearray, stamp] out-of-order ranges
        self._ooo_stamp = 0
        self._peer_fin_off: int | None = None
        self._fin_delivered = False
        self._ack_pending = False
        # the stream's owner closed it at a higher layer (MPTCP's DATA_FIN): no more data follows,
        # so Nagle holds back no short last segment, as it holds none before our own FIN
        self.push_tail = False
        self._unacked_segments = 0
        self._quickack = 0  # segments still to ACK at once (quick-ACK mode after a hole)
        self._bytes_received = 0
        self._last_ack_sent = 0

        # options
        # config.mss is for IPv4 (MTU 1500 minus 40); an IPv6 header is 20 bytes longer
        self._mss_announced = config.mss - 20 if ":" in addr.local_addr else config.mss
        self._snd_mss = DEFAULT_MSS
        self._sack_ok = False
        self._ts_ok = False
        self._ts_offset = self._rng.getrandbits(32)
        self._ts_recent = 0
        self._wscale_ok = False
        self._opt_overhead = 0

        # timing (RFC 6298)
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rto = config.initial_rto_s
        self._backoff = 0
        self._rtt_min: float | None = None
        self._rtt_last: float | None = None
        self._retransmit_at: float | None = None
        self._delack_at: float | None = None
        self._persist_at: float | None = None
        self._persist_backoff = 0
        self._keepalive_at: float | None = None
        self._keepalive_sent = 0
        self._timewait_at: float | None = None
        self._syn_sent_at = 0.0
        self._syn_retries = 0
        self._last_activity = 0.0

        self._cc = congestion or make_congestion_control(
            config.congestion_control, mss=self._snd_mss, initial_window_segments=config.initial_window_segments
        )
        self._seg_limit = None  # the extension's segment_limit, when it has one
        self._ext_rwnd = None  # the extension's receive_window, when it has one
        if extension is not None:
            if type(extension).segment_limit is not TcpExtension.segment_limit:
                self._seg_limit = extension.segment_limit
            if type(extension).receive_window is not TcpExtension.receive_window:
                self._ext_rwnd = extension.receive_window
            extension.attach(self)

    def extension_quiet(self) -> None:
        """The extension will add no option to a non-SYN segment from now on, and needs to hear of
        none it receives (TCP-ENO once both ends have seen each other's non-SYN segments): its
        segments take the plain ones' fast paths. Never undone."""
        if self._ext is not None and not self._trace_on and self._ext_rwnd is None:
            self._plain = True

    # ------------------------------------------------------------------ API

    @property
    def state(self) -> TcpState:
        return self._state

    @property
    def congestion(self) -> CongestionControl:
        return self._cc

    @property
    def mss(self) -> int:
        """Payload bytes per full segment (the peer's MSS less per-segment options)."""
        return self._snd_mss

    @property
    def srtt(self) -> float | None:
        return self._srtt

    @property
    def send_buffered(self) -> int:
        """Bytes written but not yet acknowledged."""
        return len(self._sbuf) - self._sbuf_head

    @property
    def stream_offset_sent(self) -> int:
        return max(0, self._snd_nxt - 1)

    @property
    def stream_offset_queued(self) -> int:
        """Stream offset just past the last byte queued with send()/send_stream()."""
        return self._sbuf_off - 1 + len(self._sbuf)

    @property
    def sacked_bytes(self) -> int:
        """Bytes above the cumulative ACK that the peer has SACKed (received out of order)."""
        return self._sacked_bytes

    @property
    def stream_offset_acked(self) -> int:
        """Stream offset just past the last byte the peer acknowledged."""
        return max(0, min(self._snd_una, self._sbuf_off + len(self._sbuf)) - 1)

    @property
    def flight_bytes(self) -> int:
        return self._snd_max - self._snd_una

    @property
    def pipe_bytes(self) -> int:
        """RFC 6675's pipe during loss recovery (what is still in the network: SACKed and lost
        bytes left out, as of the last scoreboard pass), otherwise the bytes in flight."""
        return self._sb_pipe if self._recovery is not None else self._snd_max - self._snd_una

    @property
    def unsent_bytes(self) -> int:
        """Queued stream bytes not yet sent once."""
        return max(0, self._sbuf_off + len(self._sbuf) - self._snd_nxt)

    @property
    def window_shift_peer(self) -> int:
        """The peer's window scale shift (RFC 7323): how its window field is scaled."""
        return self._snd_wscale

    @property
    def timestamps_enabled(self) -> bool:
        return self._ts_ok

    @property
    def rto(self) -> float:
        """The current retransmission timeout (seconds)."""
        return self._rto

    @property
    def rto_backoff(self) -> int:
        """How many times the retransmission timer has backed off since the last new ACK."""
        return self._backoff

    @property
    def peer_window(self) -> int:
        return self._snd_wnd

    def request_ack(self) -> None:
        """Send an ACK with the next segments_to_send() (an extension re-sending a signal)."""
        if self._state in SYNCHRONIZED:
            self._ack_pending = True
            self._delack_at = None

    def connect(self, *, now: float) -> None:
        """Active open: queue a SYN. Raises LocalProtocolError unless CLOSED."""
        if self._state is not S.CLOSED or self._snd_max:
            raise LocalProtocolError(f"cannot connect in state {self._state.name}")
        self._transition(Input.ACTIVE_OPEN, now)
        self._send_syn(now)

    def listen(self, *, now: float = 0.0) -> None:
        """Passive open: accept the first SYN. Raises LocalProtocolError unless CLOSED."""
        if self._state is not S.CLOSED or self._snd_max:
            raise LocalProtocolError(f"cannot listen in state {self._state.name}")
        self._transition(Input.PASSIVE_OPEN, now)

    def send(self, data: bytes) -> None:
        """Queue application data. Raises LocalProtocolError after close() or outside an open state."""
        if self._state not in CAN_SEND or self._fin_queued:
            raise LocalProtocolError(f"cannot send data in state {self._state.name}")
        if self._ext is not None and self._ext.owns_stream:
            self._ext.app_send(bytes(data))
        else:
            self._sbuf += data

    def send_stream(self, data: bytes) -> None:
        """Queue bytes on the TCP stream itself (used by an extension that owns the stream)."""
        if self._fin_queued:
            raise LocalProtocolError("cannot send after FIN")
        self._sbuf += data

    def unsend_stream(self, stream_offset: int) -> int:
        """Take back the queued stream bytes from ``stream_offset`` on, when none of them has been
        sent yet (used by an extension whose data arrived another way meanwhile); returns how many
        were taken back: 0 when some were already sent or the FIN is queued."""
        start = stream_offset + 1  # sequence space, relative to the ISN (the SYN takes 1)
        end = self._sbuf_off + len(self._sbuf)
        if self._fin_queued or start < self._snd_max or start < self._snd_nxt or start >= end:
            return 0
        del self._sbuf[start - self._sbuf_off :]
        return end - start

    def deliver(self, data: bytes) -> None:
        """Hand bytes to the application (used by an extension that owns the stream)."""
        if data:
            self._events.append(DataReceived(data=bytes(data)))

    def close(self, *, now: float) -> None:
        """Send FIN after queued data. Raises LocalProtocolError when already closing or closed."""
        st = self._state
        if st in (S.LISTEN, S.SYN_SENT):
            self._transition(Input.APP_CLOSE, now)
            self._terminate("closed before established", now, reset=False)
            return
        if self._fin_queued or st not in (S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT):
            raise LocalProtocolError(f"cannot close in state {st.name}")
        if self._ext is not None and self._ext.owns_stream and not self._ext.app_close(now=now):
            return  # the extension sends its last bytes first, then calls close() again
        self._fin_queued = True
        self._fin_off = self._sbuf_off + len(self._sbuf)
        if st is S.SYN_RECEIVED:
            return  # RFC 9293 3.10.4: queued until ESTABLISHED; the ACK of our SYN sends it
        self._transition(Input.APP_CLOSE, now)

    def abort(self, reason: str = "aborted", *, now: float) -> None:
        """Send RST (in a synchronized state) and terminate at once."""
        if self._state is S.CLOSED:
            return
        if self._state in SYNCHRONIZED or self._state is S.SYN_RECEIVED:
            seq_off = self._snd_nxt
            if self._state in SYNCHRONIZED and seq_off > self._snd_una + self._snd_wnd:
                # a zero-window probe byte lies beyond the peer's window, where a RST would be
                # dropped (RFC 5961 3.2): use the window's right edge, as BSD and Linux do
                seq_off = self._snd_una + self._snd_wnd
            self._emit_rst(seq_off, now)
        self._transition(Input.ABORT, now)
        self._terminate(reason, now, reset=True)

    def pause_reading(self) -> None:
        """Stop delivering data; the advertised window shrinks to zero as data arrives."""
        self._reading = False

    def resume_reading(self, *, now: float) -> None:
        """Deliver buffered data and reopen the window (sending a window update)."""
        self._reading = True
        if self._rcv_buf:
            data = bytes(self._rcv_buf)
            self._rcv_buf.clear()
            self._deliver_in_order(data, now)
        if self._state in SYNCHRONIZED:
            self._ack_pending = True

    #: header prediction on the receive path; False sends every segment down the full path
    #: (tests compare both: the same segments, bytes and timing)
    header_prediction = True

    def receive_segment(self, segment: bytes, *, now: float, verified: bool = False) -> None:
        """Process one received TCP segment (header onwards, checksum verified here unless
        ``verified``: segments a receiving kernel coalesced after checking each, GRO).

        Never raises for bad input: malformed segments are recorded and dropped.

        Header prediction (Van Jacobson; RFC 9293 leaves the order of checks free)
        comes first: an in-sequence pure ACK of new data (also in FIN-WAIT-1: a
        sender that has written and closed is there for its whole transfer; the
        ACK of its FIN moves it on as on the full path), or in-sequence data that
        acks nothing new, with the timestamps option (plus, with an extension, the
        extension's own options: MPTCP's DSS), no window change and nothing unusual
        pending, is processed here without the full path's checks. The extension
        hears of the segment through the same ``options_received`` call, and the
        trace gets the same record, as on the full path. Anything else takes the
        full path, :meth:`_receive_full`.
        """
        raw = segment
        ext = self._ext
        state = self._state
        if not (
            (state is S.ESTABLISHED or state is S.FIN_WAIT_1)
            and self._ts_ok
            and len(raw) >= 32
            and (raw[12] == 0x80 or (ext is not None and raw[12] > 0x80))
            and raw[13] & _PREDICT_MASK == ACK
            and raw.startswith(_TS_PREFIX, 20)
            and self.header_prediction
        ):
            return self._receive_full(raw, now, verified)
        if (
            self._recovery is not None
            or self._sacked_bytes
            or self._ooo
            or self._peer_fin_off is not None
            or not self._reading
        ):
            return self._receive_full(raw, now, verified)
        n = len(raw)
        if verified:
            pass
        elif n & 1:
            return self._receive_full(raw, now)  # odd length: the full path pads
        else:
            total = self._address_sum + n + _from_bytes(raw, "big")
            if total.bit_length() > 3200:  # mod_ffff() inlined: fold at 16-bit multiples first
                if total.bit_length() > 8000:
                    total = mod_ffff(total) or 0xFFFF  # larger than a 1500-byte packet
                else:
                    total = (total >> 6016) + (total & _M6016)
                    total = (total >> 3008) + (total & _M3008)
                    total = (total >> 1504) + (total & _M1504)
            if not total or total % 0xFFFF:
                return self._receive_full(raw, now)  # bad checksum: the full path records the drop
        _sport, _dport, seq, ack, _off, _flags, window, _c, _u, tsval, tsecr = _TS_HEADER.unpack_from(raw)
        ts_recent = self._ts_recent
        if ts_recent and ((tsval - ts_recent) & MASK) >= HALF:
            return self._receive_full(raw, now, verified)  # PAWS on the full path
        rcv_nxt = self._rcv_nxt
        if ((seq - self._irs) & MASK) != (rcv_nxt & MASK) or window << self._snd_wscale != self._snd_wnd:
            return self._receive_full(raw, now, verified)
        head = (raw[12] >> 4) * 4
        snd_una = self._snd_una
        diff = (ack - self._iss - snd_una) & MASK
        plen = n - head
        if plen > 0 and state is not S.ESTABLISHED:
            return self._receive_full(raw, now, verified)  # data after our FIN: the full path
        if plen <= 0:
            if plen < 0 or diff == 0 or diff >= HALF or snd_una + diff > self._snd_max:
                return self._receive_full(raw, now, verified)  # not an ACK of new data
        elif diff:
            return self._receive_full(raw, now, verified)
        elif ext is None:
            # _rcv_window() inlined (no extension here, so no extension window)
            free = self._rcv_buffer_bytes - len(self._rcv_buf) if self._rcv_buf else self._rcv_buffer_bytes
            if free < 0:
                free = 0
            right = self._rcv_right_edge - rcv_nxt
            if plen > (right if free < right else free):
                return self._receive_full(raw, now, verified)
        elif plen > self._rcv_window():
            return self._receive_full(raw, now, verified)
        seg = None
        if ext is not None or self._trace_on:
            try:
                seg = decode_segment(raw)  # the checksum is verified above
            except DecodeError:
                return self._receive_full(raw, now, verified)
            if head > 32:  # past the timestamps only the extension's options (no SACK: that is the full path's)
                for opt in seg.options[3:]:
                    if type(opt) is Sack:
                        return self._receive_full(raw, now, verified)
        ack_off = snd_una + diff
        self._last_activity = now
        self._keepalive_sent = 0
        if seg is not None and self._trace_on:
            self._trace_segment("segment_received", seg, now)
        if rcv_nxt <= self._last_ack_sent:
            self._ts_recent = tsval  # RFC 7323 4.3
        if ext is not None:
            ext.options_received(
                SegmentRole.DATA if plen else SegmentRole.ACK, seg, stream_offset=max(0, rcv_nxt - 1), now=now
            )
            if (
                self._state is not state
                or self._rcv_nxt != rcv_nxt
                or self._snd_una != snd_una
                or self._recovery is not None
                or self._sacked_bytes
                or self._ooo
                or not self._reading
            ):
                # the extension changed what the prediction assumed: the full path's rest
                if self._state is S.CLOSED:
                    return
                self._after_options(seg, rcv_nxt, ack_off, Timestamps(tsval, tsecr), now)
                return
        self._snd_wl1 = rcv_nxt
        self._snd_wl2 = ack_off
        if plen == 0:
            self._on_new_ack(ack_off, tsecr, False, now)
            return
        self._rcv_nxt = rcv_nxt = rcv_nxt + plen
        self._bytes_received += plen
        if ext is None:
            self._events.append(DataReceived(data=raw[head:]))
        else:
            self._deliver_in_order(seg.payload, now)
        self._unacked_segments = unacked = self._unacked_segments + 1
        if unacked >= 2 or self._quickack or rcv_nxt - self._last_ack_sent >= 2 * self._snd_mss:
            if self._quickack:
                self._quickack -= 1
            self._ack_pending = True
            self._delack_at = None
        elif not self._ack_pending:
            self._ack_pending = True
            self._delack_at = now + self.config.delayed_ack_s

    def _receive_full(self, segment: bytes, now: float, verified: bool = False) -> None:
        """The full receive path: decode the segment into objects (checking its checksum unless
        ``verified``) and process it."""
        try:
            if verified:
                seg = decode_segment(segment)
            else:
                seg = decode_segment(segment, self._remote_packed, self._local_packed)
        except DecodeError as exc:
            if self._trace_on:
                self._tracer.record(now, "tcp", "segment_dropped", {"conn": str(self.addr), "reason": str(exc)})
            return
        self._last_activity = now
        self._keepalive_sent = 0
        if self._trace_on:
            self._trace_segment("segment_received", seg, now)
        self._handle(seg, now)

    def handle_timer(self, *, now: float) -> None:
        """Fire whatever timers are due at ``now``."""
        if self._timewait_at is not None and now >= self._timewait_at:
            self._timewait_at = None
            self._transition(Input.TIMEWAIT_EXPIRED, now)
            self._terminate("closed", now, reset=False)
            return
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._retransmit_at = None
            self._on_rto(now)
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self._on_persist(now)
        if self._tlp_at is not None and now >= self._tlp_at:
            self._tlp_at = None
            self._on_tlp(now)
        if self._rack_timer_at is not None and now >= self._rack_timer_at:
            self._rack_timer_at = None
            if self._sent and self._rack_detect(now) and self._recovery is None:
                self._enter_recovery(now)
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            if self._ack_pending:
                self._send_ack(now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            self._on_keepalive(now)
        if self._ext is not None and self._state is not S.CLOSED:
            due = self._ext.get_timer()
            if due is not None and now >= due:
                self._ext.handle_timer(now=now)

    def get_timer(self) -> float | None:
        """The earliest time handle_timer() must be called, or None."""
        best = self._retransmit_at
        t = self._tlp_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._rack_timer_at
        if t is not None and (best is None or t < best):
            best = t
        t = self._delack_at
        if t is not None and (best is None or t < best):
            best = t
        if self._ext is not None and self._state is not S.CLOSED:
            t = self._ext.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        if self._persist_at is not None or self._keepalive_at is not None or self._timewait_at is not None:
            for t in (self._persist_at, self._keepalive_at, self._timewait_at):
                if t is not None and (best is None or t < best):
                    best = t
        return best

    def segments_to_send(self, *, now: float) -> list[Outgoing]:
        """Encoded segments to transmit now (checksums filled in)."""
        st = self._state
        if st in SYNCHRONIZED or st is S.SYN_RECEIVED:
            if st is not S.SYN_RECEIVED and (
                self._recovery is not None
                or self._snd_nxt < self._sbuf_off + len(self._sbuf)
                or (self._fin_off is not None and self._snd_nxt <= self._fin_off)
            ):
                self._send_data(now)
            if self._ack_pending and self._delack_at is None:
                self._send_ack(now)
            if self._keepalive_idle is not None and self._keepalive_at is None and st is S.ESTABLISHED:
                self._keepalive_at = self._last_activity + self._keepalive_idle
        out = self._out
        if not out:
            return out  # the empty list stays ours; callers only iterate it
        self._out = []
        return out

    def next_event(self) -> TcpEvent | None:
        return self._events.popleft() if self._events else None

    def metrics(self) -> dict[str, float | int | str | None]:
        """A snapshot for the trace's metrics_updated records."""
        out: dict[str, float | int | str | None] = {
            "conn": str(self.addr),
            "state": self._state.value,
            "srtt_ms": None if self._srtt is None else round(self._srtt * 1000, 3),
            "rttvar_ms": round(self._rttvar * 1000, 3),
            "rto_ms": round(self._rto * 1000, 1),
            "cwnd": self._cc.cwnd,
            "ssthresh": min(self._cc.ssthresh, 1 << 30),
            "flight": self._snd_max - self._snd_una,
            "snd_wnd": self._snd_wnd,
            "bytes_sent": self._bytes_sent,
            "bytes_retransmitted": self._bytes_retransmitted,
            "bytes_acked": self._bytes_acked,
            "bytes_sacked": self._sacked_bytes,
            "bytes_received": self._bytes_received,
            "recovery": self._recovery,
            "cc": self._cc.name,
        }
        return out

    # ------------------------------------------------------------ internals

    def _transition(self, inp: Input, now: float) -> None:
        old = self._state
        new = TRANSITIONS.get((old, inp))
        if new is None:
            raise AssertionError(f"no transition from {old.name} on {inp.name}")
        self._set_state(new, now, inp)

    def _set_state(self, new: TcpState, now: float, inp: Input) -> None:
        old = self._state
        if new is old:
            return
        self._state = new
        if self._trace_on:
            self._tracer.record(
                now,
                "tcp",
                "state_updated",
                {"conn": str(self.addr), "from": old.value, "to": new.value, "input": inp.value},
            )
        if self._ext is not None:
            self._ext.state_changed(old, new, now=now)

    def _terminate(self, reason: str, now: float, *, reset: bool) -> None:
        self._retransmit_at = self._delack_at = self._persist_at = self._keepalive_at = self._timewait_at = None
        self._rack_timer_at = self._tlp_at = None
        self._ack_pending = False
        if self._trace_on:
            self._tracer.record(
                now, "tcp", "state_updated", {"conn": str(self.addr), "terminated": reason, "reset": reset}
            )
        self._events.append(ConnectionTerminated(reason=reason, reset=reset))

    # --- sequence helpers

    def _seq_to_off(self, wire: int) -> int:
        diff = (wire - self._irs - self._rcv_nxt) & MASK
        if diff >= HALF:
            diff -= 0x100000000
        return self._rcv_nxt + diff

    def _ack_to_off(self, wire: int) -> int:
        diff = (wire - self._iss - self._snd_una) & MASK
        if diff >= HALF:
            diff -= 0x100000000
        return self._snd_una + diff

    def _tsval(self, now: float) -> int:
        return (int(now * 1000) + self._ts_offset) & MASK

    def _send_syn(self, now: float) -> None:
        self._syn_sent_at = now
        # our options are not yet agreed: SYN carries them unconditionally
        options = self._syn_options(now, synack=False)
        ts_ok, self._ts_ok = self._ts_ok, False  # the SYN carries its own options
        self._emit(SYN, 0, b"", now, SegmentRole.SYN, options)
        self._ts_ok = ts_ok
        self._snd_nxt = self._snd_max = 1
        self._retransmit_at = now + self._rto

    def _send_synack(self, now: float) -> None:
        self._syn_sent_at = now
        options = self._syn_options(now, synack=True)
        ts_ok, self._ts_ok = self._ts_ok, False
        self._emit(SYN | ACK, 0, b"", now, SegmentRole.SYN_ACK, options)
        self._ts_ok = ts_ok
        self._snd_nxt = self._snd_max = 1
        self._retransmit_at = now + self._rto

    def _emit_rst(self, seq_off: int, now: float) -> None:
        self._emit(RST | ACK, seq_off, b"", now, SegmentRole.ACK)

    # --- data transmission

    def _payload(self, start: int, end: int) -> bytes:
        a = start - self._sbuf_off
        with memoryview(self._sbuf) as view:
            return view[a : a + (end - start)].tobytes()

    def _rescue_retransmission(self, now: float, pipe: int) -> None:
        """RFC 6675 NextSeg() rule 4, once per recovery: with nothing lost to resend
        and no new data, resend the highest unSACKed segment, so a lost tail is
        repaired without waiting for the RTO."""
        if self._snd_nxt < self._sbuf_off + len(self._sbuf) or self._cc.cwnd - pipe < self._snd_mss:
            return
        rec = self._sb_highest_unsacked
        if rec is None or rec.retransmits or rec.sacked or not self._sent or rec.end <= self._snd_una:
            return
        self._rescue_sent = True
        self._retransmit(rec, now)

    def _arm_persist(self, now: float) -> None:
        base = max(self._rto, 0.2)
        self._persist_at = now + min(base * (1 << self._persist_backoff), 60.0)

    def _on_persist(self, now: float) -> None:
        """RFC 9293 3.8.6.1: probe a zero window with one byte of new data.

        With a window too small to be worth a segment, this is the sender SWS
        override timeout (RFC 9293 3.8.6.2.1): send what the window allows.
        """
        if self._state not in SYNCHRONIZED:
            self._persist_backoff = 0
            return
        data_end = self._sbuf_off + len(self._sbuf)
        if self._snd_wnd > 0:
            self._persist_backoff = 0
            start = self._snd_nxt
            room = self._snd_una + self._snd_wnd - start
            if self._snd_una < self._snd_max or start >= data_end or room <= 0:
                return
            end = start + min(room, data_end - start, self._snd_mss - self._opt_overhead)
            if self._seg_limit is not None:
                end = min(end, start + self._seg_limit(start - 1))
            self._tx_order += 1
            self._sent.append(rec := _Sent(start, end, False, now, self._tx_order))
            self._sent_by_start[start] = rec
            self._sb_version += 1
            self._emit(ACK | PSH, start, self._payload(start, end), now, SegmentRole.DATA)
            self._snd_nxt = self._snd_max = end
            self._bytes_sent += end - start
            if self._retransmit_at is None:
                self._retransmit_at = now + self._rto
            if self._trace_on:
                data = {"conn": str(self.addr), "timeout": "sws_override", "len": end - start}
                self._tracer.record(now, "tcp", "state_updated", data)
            return
        if self._snd_una < self._snd_max and self._sent:
            rec = self._sent[0]
            rec.retransmits += 1
            self._emit(ACK, rec.start, self._payload(rec.start, min(rec.end, data_end)), now, SegmentRole.DATA)
        elif self._snd_nxt < data_end:
            start = self._snd_nxt
            self._tx_order += 1
            self._sent.append(rec := _Sent(start, start + 1, False, now, self._tx_order))
            self._sent_by_start[start] = rec
            self._sb_version += 1
            self._emit(ACK, start, self._payload(start, start + 1), now, SegmentRole.DATA)
            self._snd_nxt = self._snd_max = start + 1
        else:
            return
        if self._trace_on:
            self._tracer.record(
                now,
                "tcp",
                "state_updated",
                {"conn": str(self.addr), "timeout": "persist", "backoff": self._persist_backoff},
            )
        self._persist_backoff = min(self._persist_backoff + 1, 10)
        self._arm_persist(now)

    def _on_keepalive(self, now: float) -> None:
        cfg = self.config
        if self._state is not S.ESTABLISHED or cfg.keepalive_idle_s is None:
            return
        idle = now - self._last_activity
        if idle < cfg.keepalive_idle_s:
            self._keepalive_at = self._last_activity + cfg.keepalive_idle_s
            return
        if self._keepalive_sent >= cfg.keepalive_probes:
            self.abort("keepalive timeout", now=now)
            return
        self._keepalive_sent += 1
        # RFC 9293 3.8.4: SEG.SEQ = SND.NXT - 1, no data, elicits an ACK
        self._emit(ACK, self._snd_nxt - 1, b"", now, SegmentRole.ACK)
        self._keepalive_at = now + cfg.keepalive_interval_s

    # --- RTT (RFC 6298)

    def _rto_after_syn_timeout(self) -> None:
        """RFC 6298 (5.7): a SYN (or SYN/ACK) timed out and gave no RTT sample (Karn):
        data transmission begins with an RTO of 3 s."""
        cfg = self.config
        self._rto = min(max(3.0, cfg.min_rto_s), cfg.max_rto_s)

    def _handle(self, seg: TcpSegment, now: float) -> None:
        st = self._state
        if st is S.CLOSED:
            return
        if st is S.LISTEN:
            self._handle_listen(seg, now)
        elif st is S.SYN_SENT:
            self._handle_syn_sent(seg, now)
        else:
            self._handle_synchronized(seg, now)

    def _read_syn_options(self, seg: TcpSegment) -> None:
        cfg = self.config
        peer_mss = DEFAULT_MSS
        peer_ts = peer_sack = False
        peer_ws: int | None = None
        for opt in seg.options:
            t = type(opt)
            if t is MaxSegmentSize:
                peer_mss = opt.value
            elif t is WindowScale:
                peer_ws = min(opt.shift, 14)  # RFC 7323 2.3: treat larger as 14
            elif t is SackPermitted:
                peer_sack = True
            elif t is Timestamps:
                peer_ts = True
                self._ts_recent = opt.tsval
        self._sack_ok = cfg.sack and peer_sack
        self._ts_ok = cfg.timestamps and peer_ts
        if cfg.window_scaling and peer_ws is not None:
            self._wscale_ok = True
            self._snd_wscale = peer_ws
            self._rcv_wscale = cfg.window_shift
        our_limit = self._mss_announced
        self._opt_overhead = self._ext.data_option_bytes if self._ext is not None else 0
        self._snd_mss = max(64, min(peer_mss, our_limit)) - (12 if self._ts_ok else 0)
        self._cc.set_mss(self._snd_mss)

    def _handle_listen(self, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        if flags & RST:
            return
        if flags & ACK:
            self._emit_raw_rst(seg, now)
            return
        if not flags & SYN:
            return
        self._irs = seg.seq
        self._rcv_nxt = 1
        self._read_syn_options(seg)
        self._snd_wnd = seg.window  # never scaled in a SYN
        self._max_snd_wnd = self._snd_wnd
        if self._ext is not None:
            self._ext.options_received(SegmentRole.SYN, seg, stream_offset=0, now=now)
            if self._state is not S.LISTEN:
                return  # the extension aborted
        self._transition(Input.RECV_SYN, now)
        if self._state is S.SYN_RECEIVED:
            self._send_synack(now)
        # Data on the SYN is neither delivered nor acknowledged (RFC 9293 3.10.7.2 wants it
        # held until ESTABLISHED): the SYN/ACK acknowledges only the SYN, so the peer sends
        # it again, as Linux does without TCP Fast Open.

    def _emit_raw_rst(self, seg: TcpSegment, now: float) -> None:
        """A reset for an unacceptable segment (RFC 9293 3.10.7.2)."""
        if seg.flags & ACK:
            rst = TcpSegment(self.addr.local_port, self.addr.remote_port, seg.ack, 0, RST, 0)
        else:
            rst = TcpSegment(
                self.addr.local_port, self.addr.remote_port, 0, (seg.seq + seg.seg_len) & MASK, RST | ACK, 0
            )
        if self._trace_on:
            self._trace_segment("segment_sent", rst, now)
        self._out.append(Outgoing(self.addr, encode_segment(rst, self._local_packed, self._remote_packed)))

    def _handle_syn_sent(self, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        if flags & ACK:
            ack_off = self._ack_to_off(seg.ack)
            if ack_off <= 0 or ack_off > self._snd_max:
                if not flags & RST:
                    self._emit_raw_rst(seg, now)
                return
            if flags & RST:
                if self._ext is not None:
                    self._ext.rst_received(seg, now=now)
                self._transition(Input.RECV_RST, now)
                self._terminate("connection refused", now, reset=True)
                return
        elif flags & RST:
            return
        if not flags & SYN:
            return
        self._irs = seg.seq
        self._rcv_nxt = 1
        self._read_syn_options(seg)
        if self._ext is not None:
            role = SegmentRole.SYN_ACK if flags & ACK else SegmentRole.SYN
            self._ext.options_received(role, seg, stream_offset=0, now=now)
            if self._state is not S.SYN_SENT:
                return  # the extension aborted
        if flags & ACK:
            self._snd_una = 1
            self._snd_wnd = seg.window << self._snd_wscale if self._wscale_ok else seg.window
            self._snd_wnd = seg.window  # RFC 7323 2.2: the window in a SYN is never scaled
            self._max_snd_wnd = self._snd_wnd
            self._snd_wl1 = 0
            self._snd_wl2 = 1
            if self._syn_retries == 0:
                self._rtt_sample(now - self._syn_sent_at)
            else:
                self._rto_after_syn_timeout()
            self._retransmit_at = None
            self._transition(Input.RECV_SYNACK, now)
            self._events.append(ConnectionEstablished())
            self._send_ack(now)
            if seg.payload:
                self._accept_data(1, seg.payload, now)
        else:
            # simultaneous open (RFC 9293 3.5): answer with SYN/ACK for our ISS
            self._snd_wnd = seg.window
            self._transition(Input.RECV_SYN, now)
            self._send_synack(now)

    def _acceptable(self, seq_off: int, length: int) -> bool:
        """RFC 9293 3.10.7.4 first check."""
        rcv_nxt = self._rcv_nxt
        wnd = self._rcv_window()
        if length == 0:
            if wnd == 0:
                return seq_off == rcv_nxt
            return rcv_nxt <= seq_off < rcv_nxt + wnd
        if wnd == 0:
            return False
        return rcv_nxt <= seq_off < rcv_nxt + wnd or rcv_nxt <= seq_off + length - 1 < rcv_nxt + wnd

    def _handle_synchronized(self, seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        st = self._state
        seq_off = self._seq_to_off(seg.seq)
        plen = len(seg.payload)
        seg_len = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)

        # PAWS (RFC 7323 5.3)
        ts: Timestamps | None = None
        if self._ts_ok:
            for opt in seg.options:
                if type(opt) is Timestamps:
                    ts = opt
                    break
            if ts is not None and not flags & RST and self._ts_recent and ((ts.tsval - self._ts_recent) & MASK) >= HALF:
                if self._trace_on:
                    self._tracer.record(
                        now, "tcp", "segment_dropped", {"conn": str(self.addr), "reason": "PAWS: old timestamp"}
                    )
                self._ack_pending = True
                self._delack_at = None
                return

        if not self._acceptable(seq_off, seg_len):
            if flags & RST:
                return
            if st is S.TIME_WAIT and flags & FIN:
                self._timewait_at = now + 2 * self.config.msl_s
            if self._trace_on and seq_off > self._rcv_nxt:
                self._tracer.record(
                    now, "tcp", "segment_dropped", {"conn": str(self.addr), "reason": "outside receive window"}
                )
            self._ack_pending = True
            self._delack_at = None
            return

        if ts is not None and seq_off <= self._last_ack_sent:
            self._ts_recent = ts.tsval  # RFC 7323 4.3

        # RST (RFC 5961 3.2)
        if flags & RST:
            if seq_off == self._rcv_nxt:
                if self._ext is not None:
                    self._ext.rst_received(seg, now=now)
                self._transition(Input.RECV_RST, now)
                self._terminate("connection reset by peer", now, reset=True)
            else:
                self._ack_pending = True  # challenge ACK
                self._delack_at = None
            return

        # SYN in a synchronized state (RFC 5961 4.2): challenge ACK
        if flags & SYN:
            if st is S.SYN_RECEIVED and seq_off == 0:
                self._ack_pending = True
                return
            self._ack_pending = True
            self._delack_at = None
            return

        if not flags & ACK:
            return

        ack_off = self._ack_to_off(seg.ack)
        if st is S.SYN_RECEIVED:
            if 0 < ack_off <= self._snd_max:
                self._snd_una = 1
                self._snd_wnd = seg.window << self._snd_wscale
                self._max_snd_wnd = self._snd_wnd
                self._snd_wl1 = seq_off
                self._snd_wl2 = ack_off
                if self._syn_retries == 0:
                    self._rtt_sample(now - self._syn_sent_at)
                else:
                    self._rto_after_syn_timeout()
                self._retransmit_at = None
                self._transition(Input.RECV_ACK_OF_SYN, now)
                self._events.append(ConnectionEstablished())
                if self._fin_queued:
                    self._transition(Input.APP_CLOSE, now)  # the close() queued in SYN-RECEIVED
                st = self._state
            else:
                self._emit_raw_rst(seg, now)
                return

        if self._ext is not None:
            role = SegmentRole.DATA if (plen or flags & FIN) else SegmentRole.ACK
            self._ext.options_received(role, seg, stream_offset=max(0, seq_off - 1), now=now)
            if self._state is S.CLOSED:
                return
        self._after_options(seg, seq_off, ack_off, ts, now)

    def _after_options(self, seg: TcpSegment, seq_off: int, ack_off: int, ts: Timestamps | None, now: float) -> None:
        """The rest of the full path once an acceptable segment's options were heard: its ACK, data, FIN."""
        flags = seg.flags
        plen = len(seg.payload)
        if ack_off > self._snd_max:
            self._ack_pending = True  # acks something not yet sent: ACK and drop
            self._delack_at = None
            return
        self._process_ack(seg, seq_off, ack_off, ts, now)
        st = self._state
        if st is S.CLOSED:
            return

        if plen and st in CAN_RECEIVE_DATA:
            self._accept_data(seq_off, seg.payload, now)
        if flags & FIN:
            fin_off = seq_off + plen
            if self._peer_fin_off is None and st not in (S.CLOSED,):
                self._peer_fin_off = fin_off
            self._maybe_take_fin(now)
            self._ack_pending = True
            self._delack_at = None

    def _process_ack(self, seg: TcpSegment, seq_off: int, ack_off: int, ts: Timestamps | None, now: float) -> None:
        self._sb_version += 1
        snd_una = self._snd_una
        cc = self._cc
        # send window update (RFC 9293 3.10.7.4)
        if self._snd_wl1 < seq_off or (self._snd_wl1 == seq_off and self._snd_wl2 <= ack_off):
            if ack_off >= snd_una:
                wnd = seg.window << self._snd_wscale
                if wnd != self._snd_wnd:
                    opened = wnd > 0 and self._snd_wnd == 0
                    self._snd_wnd = wnd
                    self._max_snd_wnd = max(self._max_snd_wnd, wnd)
                    if opened:
                        self._persist_at = None
                        self._persist_backoff = 0
                        # a probe byte beyond the old window is unacknowledged data: the
                        # retransmission timer must run (RFC 6298 (5.1)), probed once or more
                        if self._sent and self._snd_una < self._snd_max and self._retransmit_at is None:
                            self._retransmit_at = now + self._rto
                self._snd_wl1 = seq_off
                self._snd_wl2 = ack_off

        sack_new = False
        if self._sack_ok:
            for opt in seg.options:
                if type(opt) is Sack:
                    sack_new = self._apply_sack(opt, now)
                    break

        if ack_off > snd_una:
            self._on_new_ack(ack_off, ts.tsecr if ts is not None else 0, sack_new, now)
        elif ack_off == snd_una and self._snd_max > snd_una:
            is_dup = sack_new if self._sack_ok else (not seg.payload and not seg.flags & FIN)
            if is_dup:
                self._dupacks += 1
                if self._recovery is None:
                    lost = self._sack_ok and self._mark_lost(now)
                    if self._dupacks >= self.config.dup_thresh or lost:
                        self._enter_recovery(now)
                elif self._sack_ok:
                    self._mark_lost(now)
                elif self._recovery == "fast":
                    cc.cwnd += self._snd_mss  # NewReno inflation (RFC 6582)
        if self._sacked_bytes and self._sent:
            if self._rack_detect(now) and self._recovery is None:
                self._enter_recovery(now)
        else:
            self._rack_timer_at = None

    def _on_new_ack(self, ack_off: int, tsecr: int, sack_new: bool, now: float) -> None:
        """An ACK that advances SND.UNA: the scoreboard, RTT, cwnd and timers."""
        self._sb_version += 1
        snd_una = self._snd_una
        cc = self._cc
        acked = ack_off - snd_una
        self._snd_una = ack_off
        if self._snd_nxt < ack_off:
            self._snd_nxt = ack_off
        rtt = None
        sent = self._sent
        by_start = self._sent_by_start
        last = None
        retransmitted = False  # Karn (RFC 6298 3): an ACK covering a retransmission times nothing
        while sent and sent[0].end <= ack_off:
            last = sent.popleft()
            del by_start[last.start]
            if last.sacked:
                self._sacked_bytes -= last.end - last.start
                if last.retransmits:
                    retransmitted = True
            elif last.retransmits:
                retransmitted = True
                if now - last.sent_at >= (self._rtt_min or 0.0):
                    self._rack_update(last, now)
            elif last.end >= self._rack_fack and last.order > self._rack_order:
                # in-order delivery of the newest segment: RACK.segment moves on (RFC 8985 6.2)
                self._rack_fack = last.end
                self._rack_xmit_ts = last.sent_at
                self._rack_order = last.order
                self._rack_rtt = now - last.sent_at
            else:
                self._rack_update(last, now)
        if sent and sent[0].start < ack_off:  # partial ack of a record
            rec = sent[0]
            if rec.sacked:
                self._sacked_bytes -= ack_off - rec.start
            del self._sent_by_start[rec.start]
            rec.start = ack_off
            self._sent_by_start[ack_off] = rec
        if last is not None and not retransmitted:
            rtt = now - last.sent_at
        elif tsecr:
            rtt = ((self._tsval(now) - tsecr) & MASK) / 1000.0  # RFC 7323 4.1
        if rtt is not None:
            self._rtt_sample(rtt)
        # trim the send buffer: acknowledged bytes stay at its front until they are at least half
        # of it (and 64 KB): deleting a bytearray's front on every ACK made its next append copy
        # all it held (with megabytes in flight, a quarter of the sender's time at 700 Mbit/s)
        data_end = self._sbuf_off + len(self._sbuf)
        data_acked = (ack_off if ack_off < data_end else data_end) - self._sbuf_off
        if data_acked > self._sbuf_head:
            self._bytes_acked += data_acked - self._sbuf_head
            if data_acked >= SBUF_TRIM_BYTES and 2 * data_acked >= len(self._sbuf):
                del self._sbuf[:data_acked]
                self._sbuf_off += data_acked
                self._sbuf_head = 0
            else:
                self._sbuf_head = data_acked
        self._dupacks = 0
        if ack_off >= self._round_end:
            self._round_end = self._snd_nxt
            cc.on_round_start()
        flight = self._snd_max - snd_una
        if self._recovery is not None:
            if ack_off >= self._recovery_point:
                if self._recovery == "fast":
                    cc.on_recovery_exit(now=now)
                self._recovery = None
                self._trace_recovery(now, "exit")
            else:
                if not self._sack_ok and sent:
                    sent[0].lost = True  # NewReno partial ACK (RFC 6582)
                    sent[0].retransmits = 0
                    self._sb_version += 1
                if self._recovery == "rto":
                    cc.on_ack(acked, flight=flight, rtt=rtt, now=now)
                if self._sack_ok:
                    self._mark_lost(now)
        else:
            cc.on_ack(acked, flight=flight, rtt=rtt, now=now)
        # RFC 6298 (5.2, 5.3)
        if self._snd_una >= self._snd_max:
            self._retransmit_at = None
            self._tlp_at = None
        else:
            self._retransmit_at = now + self._rto
        if self._tlp_end is not None and ack_off >= self._tlp_end:
            # RFC 8985 7.4: a probe retransmission that repaired a loss on its own
            # (no recovery episode) still calls for a congestion response
            if self._tlp_retransmitted and self._recovery is None and not sack_new:
                cc.on_congestion(flight=self._snd_max - self._snd_una, now=now)
                cc.on_recovery_exit(now=now)
            self._tlp_end = None
            self._tlp_retransmitted = False
        if self._snd_una < self._snd_max and self._recovery is None:
            self._arm_tlp(now)
        # our FIN acknowledged?
        if self._fin_off is not None and ack_off > self._fin_off:
            st = self._state
            if st in (S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK):
                self._transition(Input.RECV_ACK_OF_FIN, now)
                if self._state is S.CLOSED:
                    self._terminate("closed", now, reset=False)
                elif self._state is S.TIME_WAIT:
                    self._enter_time_wait(now)

    def _rack_update(self, rec: _Sent, now: float) -> None:
        """RFC 8985 6.2 steps 1-2: RACK.segment is the most recently sent delivered
        segment. A retransmission counts only when its RTT is at least min_RTT
        (otherwise the ACK was for the original); callers check that."""
        if not rec.retransmits and rec.end < self._rack_fack:
            self._rack_reordering_seen = True  # delivered below what was already delivered
        if rec.end > self._rack_fack:
            self._rack_fack = rec.end
        if rec.order > self._rack_order:
            self._rack_xmit_ts = rec.sent_at
            self._rack_order = rec.order
            self._rack_rtt = now - rec.sent_at

    def _rack_reo_wnd(self) -> float:
        """RFC 8985 6.2 step 4: no reordering seen and in recovery (or DupThresh
        segments SACKed) -> 0; otherwise min_RTT / 4, at most SRTT."""
        if not self._rack_reordering_seen and (
            self._recovery is not None or self._sacked_bytes >= self.config.dup_thresh * self._snd_mss
        ):
            return 0.0
        return min((self._rtt_min or 0.0) / 4, self._srtt or 0.0)

    def _rack_detect(self, now: float) -> bool:
        """RFC 8985 loss detection (see _scoreboard_pass); True when it marked a loss."""
        if not self._rack_xmit_ts or not self._sent:
            return False
        self._scoreboard_pass(now)
        return self._sb_rack_found

    def _mark_lost(self, now: float) -> bool:
        """RFC 6675 IsLost() marking (see _scoreboard_pass); True when the first record is lost."""
        if self._sacked_bytes:
            self._scoreboard_pass(now)
        return bool(self._sent) and self._sent[0].lost

    def _accept_data(self, seq_off: int, payload: bytes, now: float) -> None:
        rcv_nxt = self._rcv_nxt
        if seq_off < rcv_nxt:  # trim the old front
            payload = payload[rcv_nxt - seq_off :]
            seq_off = rcv_nxt
            if not payload:
                self._ack_pending = True
                self._delack_at = None
                return
        limit = rcv_nxt + self._rcv_window()
        if seq_off + len(payload) > limit:  # trim to the window
            payload = payload[: max(0, limit - seq_off)]
            if not payload:
                self._ack_pending = True
                self._delack_at = None
                return
        if seq_off == rcv_nxt:
            self._rcv_nxt = rcv_nxt + len(payload)
            self._bytes_received += len(payload)
            if self._ooo:
                payload = self._pull_ooo(payload)
                self._ack_pending = True  # filling a hole: ACK at once (RFC 5681 4.2)
                self._delack_at = None
            self._deliver_in_order(payload, now)
            self._maybe_take_fin(now)
            self._unacked_segments += 1
            if (
                self._unacked_segments >= 2
                or self._quickack
                or self._rcv_nxt - self._last_ack_sent >= 2 * self._snd_mss
            ):
                # at least every second full segment (RFC 5681 4.2); every one in quick-ACK mode
                if self._quickack:
                    self._quickack -= 1
                self._ack_pending = True
                self._delack_at = None
            elif not self._ack_pending:
                self._ack_pending = True
                self._delack_at = now + self.config.delayed_ack_s
        else:
            self._store_ooo(seq_off, payload)
            self._quickack = self.config.quickack_segments  # a hole: ACK every segment for a while
            self._ack_pending = True  # out of order: immediate duplicate ACK (RFC 5681 4.2)
            self._delack_at = None

    def _deliver_in_order(self, data: bytes, now: float) -> None:
        ext = self._ext
        if ext is not None and ext.owns_stream:
            offset = self._rcv_nxt - 1 - len(data)
            ext.stream_received(data, stream_offset=offset, now=now)
        elif self._reading:
            self._events.append(DataReceived(data=data))
        else:
            self._rcv_buf += data

    def _store_ooo(self, start: int, data: bytes) -> None:
        end = start + len(data)
        self._ooo_stamp += 1
        ranges = self._ooo
        i = bisect_left(ranges, start, key=lambda r: r[1])
        # ranges[i:] end at or after start; merge those overlapping or adjacent
        j = i
        new_start, new_end = start, end
        while j < len(ranges) and ranges[j][0] <= end:
            new_start = min(new_start, ranges[j][0])
            new_end = max(new_end, ranges[j][1])
            j += 1
        if j == i:
            ranges.insert(i, [start, end, bytearray(data), self._ooo_stamp])
            self._bytes_received += len(data)
            return
        if j == i + 1 and ranges[i][1] == start:
            # the common case: the segment extends a range at its right edge
            r = ranges[i]
            r[2] += data
            r[1] = end
            r[3] = self._ooo_stamp
            self._bytes_received += len(data)
            return
        buf = bytearray(new_end - new_start)
        buf[start - new_start : end - new_start] = data
        added = len(data)
        for r in ranges[i:j]:
            buf[r[0] - new_start : r[1] - new_start] = r[2]
            added -= max(0, min(r[1], end) - max(r[0], start))
        self._bytes_received += max(0, added)
        ranges[i:j] = [[new_start, new_end, buf, self._ooo_stamp]]

    def _pull_ooo(self, payload: bytes) -> bytes:
        ranges = self._ooo
        out = None
        while ranges and ranges[0][0] <= self._rcv_nxt:
            start, end, buf, _ = ranges.pop(0)
            if end > self._rcv_nxt:
                extra = bytes(buf[self._rcv_nxt - start :])
                if out is None:
                    out = bytearray(payload)
                out += extra
                self._rcv_nxt = end
        return bytes(out) if out is not None else payload

    def _maybe_take_fin(self, now: float) -> None:
        fin = self._peer_fin_off
        if fin is None or self._fin_delivered or fin != self._rcv_nxt:
            return
        self._fin_delivered = True
        self._rcv_nxt = fin + 1
        self._ack_pending = True
        self._delack_at = None
        ext = self._ext
        if ext is None or not ext.owns_stream or ext.stream_ended(now=now):
            self._events.append(StreamEnded())
        st = self._state
        if st is S.FIN_WAIT_2:
            self._transition(Input.RECV_FIN, now)
            self._enter_time_wait(now)
        elif st is S.FIN_WAIT_1:
            self._transition(Input.RECV_FIN, now)  # CLOSING
        elif st in (S.ESTABLISHED, S.SYN_RECEIVED):
            self._transition(Input.RECV_FIN, now)

    def _enter_time_wait(self, now: float) -> None:
        self._retransmit_at = self._persist_at = self._keepalive_at = None
        self._timewait_at = now + 2 * self.config.msl_s
