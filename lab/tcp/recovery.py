"""Loss recovery for TCP: the scoreboard of sent segments, SACK processing and
RFC 6675 recovery, RACK-TLP (RFC 8985), the retransmission timer (RFC 6298)
and RTT sampling.

:class:`LossRecovery` is a part of :class:`~lab.tcp.connection.TcpConnection`
(a mixin over the connection's state).
"""

from __future__ import annotations

from lab.tcp.extension import SegmentRole
from lab.tcp.segments import (
    S,
    _Sent,
)
from lab.tcp.state import SYNCHRONIZED, Input
from lab.wire.tcp import (
    ACK,
    FIN,
    PSH,
    Sack,
)


class LossRecovery:
    """The recovery half of a TcpConnection: what was lost, when to resend, how long a round trip takes."""

    def _scoreboard_pass(self, now: float) -> None:
        """One pass over the scoreboard, highest sequence first, doing what RFC 6675
        and RFC 8985 each describe as a scan of their own:

        - IsLost(): an unSACKed segment with DupThresh SACKed segments, or more than
          (DupThresh - 1) * SMSS SACKed bytes, above it is lost (RFC 6675 4);
        - RACK: an unSACKed segment sent before the most recently sent delivered one
          is lost once RACK.rtt + reo_wnd has passed since it was sent; this catches
          lost retransmissions too (RFC 8985 6.2); the reordering timer is armed for
          the rest;
        - SetPipe(): the bytes believed in flight (RFC 6675 4);
        - NextSeg() rule 1 candidates: lost, unSACKed, not yet retransmitted.

        Results are kept until the scoreboard changes or time moves on.
        """
        if self._sb_cache == (self._sb_version, now):
            return
        sent = self._sent
        islost = self._sacked_bytes > 0
        rack = islost and bool(self._rack_xmit_ts)
        dup_thresh = self.config.dup_thresh
        thresh_bytes = (dup_thresh - 1) * self._snd_mss
        wait = self._rack_rtt + self._rack_reo_wnd() if rack else 0.0
        rack_order = self._rack_order
        count = above = pipe = 0
        found = False
        deadline = None
        candidates: list[_Sent] = []
        highest_unsacked = None
        for rec in reversed(sent):
            size = rec.end - rec.start
            if rec.sacked:
                count += 1
                above += size
                continue
            if highest_unsacked is None:
                highest_unsacked = rec
            if islost and not rec.lost and (count >= dup_thresh or above > thresh_bytes):
                rec.lost = True
            if rack and rec.order < rack_order and not (rec.lost and not rec.retransmits):
                due = rec.sent_at + wait
                if due <= now:
                    rec.lost = True
                    rec.retransmits = 0  # a lost retransmission may be sent again
                    found = True
                elif deadline is None or due < deadline:
                    deadline = due
            if rec.lost:
                if rec.retransmits:
                    pipe += size
                else:
                    candidates.append(rec)
            else:
                pipe += size
                if rec.retransmits:
                    pipe += size
        if islost:
            self._rack_timer_at = deadline
        candidates.reverse()
        self._sb_pipe = pipe
        self._sb_candidates = candidates
        self._sb_highest_unsacked = highest_unsacked
        self._sb_rack_found = found
        self._sb_cache = (self._sb_version, now)

    def _retransmit(self, rec: _Sent, now: float) -> None:
        end = rec.end - (1 if rec.fin else 0)
        payload = self._payload(rec.start, end) if end > rec.start else b""
        flags = ACK | (FIN if rec.fin else 0) | (PSH if payload else 0)
        rec.retransmits += 1
        self._sb_version += 1
        rec.sent_at = now
        self._tx_order += 1
        rec.order = self._tx_order
        self._bytes_retransmitted += len(payload)
        self._emit(flags, rec.start, payload, now, SegmentRole.DATA)
        if self._retransmit_at is None:
            self._retransmit_at = now + self._rto

    # --- timers

    def _on_rto(self, now: float) -> None:
        st = self._state
        cfg = self.config
        if st in (S.SYN_SENT, S.SYN_RECEIVED):
            self._syn_retries += 1
            if self._syn_retries > cfg.syn_retries:
                self._transition(Input.ABORT, now)
                self._terminate(
                    "connection timed out (no SYN/ACK)" if st is S.SYN_SENT else "handshake timed out", now, reset=False
                )
                return
            self._rto = min(self._rto * 2, cfg.max_rto_s)
            if st is S.SYN_SENT:
                self._send_syn(now)
            else:
                self._send_synack(now)
            self._trace_timeout(now, "syn")
            return
        if not self._sent:
            return
        self._backoff += 1
        if self._backoff > cfg.max_retransmits:
            self.abort("retransmission limit reached", now=now)
            return
        flight = self._snd_max - self._snd_una
        self._cc.on_timeout(flight=flight, now=now)
        self._rto = min(self._rto * 2, cfg.max_rto_s)  # RFC 6298 (5.5)
        # RFC 6675 5.1: everything not SACKed is presumed lost; resend in order
        for rec in self._sent:
            rec.retransmits = 0
            rec.lost = not rec.sacked
        self._sb_version += 1
        self._recovery = "rto"
        self._recovery_point = self._snd_max
        self._tlp_at = None
        self._tlp_end = None
        self._dupacks = 0
        first = self._sent[0]
        self._retransmit(first, now)
        self._retransmit_at = now + self._rto
        self._trace_timeout(now, "rto")

    def _trace_timeout(self, now: float, kind: str) -> None:
        if self._trace_on:
            self._tracer.record(
                now,
                "tcp",
                "state_updated",
                {
                    "conn": str(self.addr),
                    "timeout": kind,
                    "rto_ms": round(self._rto * 1000, 1),
                    # a SYN's timeouts back off the handshake's RTO, counted apart from the data's
                    "backoff": self._syn_retries if kind == "syn" else self._backoff,
                },
            )

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 7.2: schedule a tail loss probe at PTO = 2 * SRTT."""
        if not self._sack_ok or self._srtt is None or self._tlp_end is not None or self._recovery is not None:
            return
        pto = 2 * self._srtt
        if self._snd_max - self._snd_una <= self._snd_mss:
            pto += 0.2  # WCDelAckT: a lone segment may wait for a delayed ACK
        if pto < 0.01:
            pto = 0.01
        deadline = now + pto
        if self._retransmit_at is not None and deadline >= self._retransmit_at:
            self._tlp_at = None
            return
        self._tlp_at = deadline

    def _on_tlp(self, now: float) -> None:
        """RFC 8985 7.3: send one new segment if possible, else resend the last one."""
        if self._recovery is not None or not self._sent or self._tlp_end is not None or self._state not in SYNCHRONIZED:
            return
        data_end = self._sbuf_off + len(self._sbuf)
        before = len(self._out)
        if self._snd_nxt < data_end and self._snd_una + self._snd_wnd > self._snd_nxt:
            self._send_data(now, probe=True)
        if len(self._out) == before:
            self._retransmit(self._sent[-1], now)
            self._tlp_retransmitted = True
        self._tlp_end = self._snd_max
        self._retransmit_at = now + self._rto
        if self._trace_on:
            self._tracer.record(
                now,
                "tcp",
                "state_updated",
                {
                    "conn": str(self.addr),
                    "timeout": "tlp",
                    "rto_ms": round(self._rto * 1000, 1),
                    "backoff": self._backoff,
                },
            )

    def _rtt_sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        self._rtt_last = rtt
        if self._rtt_min is None or rtt < self._rtt_min:
            self._rtt_min = rtt
        if self._srtt is None:
            self._srtt = rtt
            self._rttvar = rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        var = 4 * self._rttvar
        rto = self._srtt + (var if var > 0.001 else 0.001)  # G: 1 ms clock granularity
        cfg = self.config
        if rto < cfg.min_rto_s:
            rto = cfg.min_rto_s
        self._rto = rto if rto < cfg.max_rto_s else cfg.max_rto_s
        self._backoff = 0

    # --- receiving

    def _trace_recovery(self, now: float, what: str) -> None:
        if self._trace_on:
            self._tracer.record(
                now,
                "tcp",
                "state_updated",
                {
                    "conn": str(self.addr),
                    "recovery": what,
                    "cwnd": self._cc.cwnd,
                    "ssthresh": min(self._cc.ssthresh, 1 << 30),
                },
            )

    def _enter_recovery(self, now: float) -> None:
        flight = self._snd_max - self._snd_una
        self._cc.on_congestion(flight=flight, now=now)
        self._recovery = "fast"
        self._recovery_point = self._snd_max
        self._retransmit_first = True
        self._rescue_sent = False
        self._tlp_at = None
        first = self._sent[0]
        first.lost = True
        self._sb_version += 1
        if not self._sack_ok:
            self._cc.cwnd += 3 * self._snd_mss
        self._mark_lost(now)
        self._trace_recovery(now, "enter")

    def _apply_sack(self, opt: Sack, now: float) -> bool:
        """Mark scoreboard records covered by SACK blocks; True when something new was SACKed.

        Blocks seen before are only walked from where they ended last time.
        """
        new = False
        if not self._sent:
            return False
        by_start = self._sent_by_start
        memo = self._sack_memo
        for left, right in opt.blocks:
            lo = self._ack_to_off(left)
            hi = self._ack_to_off(right)
            if hi <= lo or hi <= self._snd_una or hi > self._snd_max:
                continue  # invalid or D-SACK-like block
            done = memo.get(lo)
            if done is not None and done >= hi:
                continue  # nothing new in this block
            pos = lo if done is None or done < lo else done
            rec = by_start.get(pos)
            if rec is None:  # an edge inside a record: find the first record starting at or after it
                rec = next((r for r in self._sent if r.start >= pos), None)
            while rec is not None and rec.end <= hi:
                if not rec.sacked:
                    rec.sacked = True
                    self._sacked_bytes += rec.end - rec.start
                    new = True
                    self._sb_version += 1
                    if not rec.retransmits or now - rec.sent_at >= (self._rtt_min or 0.0):
                        self._rack_update(rec, now)
                    if rec.end > self._highest_sacked:
                        self._highest_sacked = rec.end
                rec = by_start.get(rec.end)
            memo[lo] = hi
        if len(memo) > 64:
            memo.clear()
        return new
