"""Congestion control as named strategies: NewReno (RFC 5681/6582) and CUBIC (RFC 9438).

The connection tells the strategy what happened; the strategy owns ``cwnd``
and ``ssthresh`` (bytes). Loss recovery itself (RFC 6675) lives in the
connection; MPTCP's coupled controllers subclass the same ABC.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

CONGESTION_CONTROLS: dict[str, type[CongestionControl]] = {}


def register_congestion_control(name: str, cls: type[CongestionControl]) -> None:
    CONGESTION_CONTROLS[name] = cls


def make_congestion_control(name: str, *, mss: int, initial_window_segments: int) -> CongestionControl:
    """Raises KeyError naming the known strategies when ``name`` is unknown."""
    try:
        cls = CONGESTION_CONTROLS[name]
    except KeyError:
        raise KeyError(
            f"unknown congestion control {name!r}; known: {', '.join(sorted(CONGESTION_CONTROLS))}"
        ) from None
    return cls(mss=mss, initial_window_segments=initial_window_segments)


class CongestionControl(ABC):
    name = "abstract"

    def __init__(self, *, mss: int, initial_window_segments: int = 10) -> None:
        self.mss = mss
        # RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)) for the default of 10
        iw = initial_window_segments * mss
        if initial_window_segments == 10:
            iw = min(10 * mss, max(2 * mss, 14600))
        self.cwnd = iw
        self.ssthresh = 1 << 30  # "arbitrarily high" (RFC 5681 3.1)

        # HyStart++ (RFC 9406) state
        self.hystart = True
        self._last_round_min_rtt = float("inf")
        self._round_min_rtt = float("inf")
        self._rtt_samples = 0
        self._css_baseline: float | None = None
        self._css_rounds = 0

    # RFC 9406 constants
    MIN_RTT_THRESH = 0.004
    MAX_RTT_THRESH = 0.016
    MIN_RTT_DIVISOR = 8
    N_RTT_SAMPLE = 8
    CSS_GROWTH_DIVISOR = 4
    CSS_ROUNDS = 5
    L = 8  # not paced

    def on_round_start(self) -> None:
        """A new round: the ACK covered everything sent when the last round began."""
        self._last_round_min_rtt = self._round_min_rtt
        self._round_min_rtt = float("inf")
        self._rtt_samples = 0
        if self._css_baseline is not None:
            self._css_rounds += 1
            if self._css_rounds >= self.CSS_ROUNDS:
                self.ssthresh = self.cwnd  # leave conservative slow start for avoidance
                self._css_baseline = None

    def slow_start(self, acked: int, rtt: float | None) -> None:
        """Slow start with HyStart++ delay-based exit (RFC 9406 4.2)."""
        increase = min(acked, self.L * self.mss)
        if not self.hystart:
            self.cwnd += increase
            return
        if rtt is not None:
            self._round_min_rtt = min(self._round_min_rtt, rtt)
            self._rtt_samples += 1
        if self._css_baseline is None:
            self.cwnd += increase
            if (
                self._rtt_samples >= self.N_RTT_SAMPLE
                and self._round_min_rtt != float("inf")
                and self._last_round_min_rtt != float("inf")
            ):
                thresh = max(
                    self.MIN_RTT_THRESH, min(self._last_round_min_rtt / self.MIN_RTT_DIVISOR, self.MAX_RTT_THRESH)
                )
                if self._round_min_rtt >= self._last_round_min_rtt + thresh:
                    self._css_baseline = self._round_min_rtt
                    self._css_rounds = 0
        else:
            self.cwnd += increase // self.CSS_GROWTH_DIVISOR
            if self._rtt_samples >= self.N_RTT_SAMPLE and self._round_min_rtt < self._css_baseline:
                self._css_baseline = None  # the delay increase was spurious: back to slow start

    def _leave_slow_start(self) -> None:
        self._css_baseline = None

    def set_mss(self, mss: int) -> None:
        """The MSS became known after the handshake; rescale the initial window."""
        segments = max(1, self.cwnd // self.mss)
        self.mss = mss
        self.cwnd = segments * mss

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    @abstractmethod
    def on_ack(self, acked: int, *, flight: int, rtt: float | None, now: float) -> None:
        """``acked`` bytes of new data were acknowledged outside loss recovery."""

    @abstractmethod
    def on_congestion(self, *, flight: int, now: float) -> None:
        """Loss detected (fast retransmit): set ssthresh and cwnd for recovery."""

    def on_recovery_exit(self, *, now: float) -> None:
        """Recovery ended (RFC 6675 / RFC 6582: deflate to ssthresh)."""
        self.cwnd = max(self.ssthresh, self.mss)

    @abstractmethod
    def on_timeout(self, *, flight: int, now: float) -> None:
        """The retransmission timer expired."""

    def state(self) -> dict[str, float]:
        return {"cwnd": self.cwnd, "ssthresh": min(self.ssthresh, 1 << 30)}


class NewReno(CongestionControl):
    """RFC 5681 with appropriate byte counting (RFC 3465, L = 2)."""

    name = "newreno"

    def __init__(self, *, mss: int, initial_window_segments: int = 10) -> None:
        super().__init__(mss=mss, initial_window_segments=initial_window_segments)
        self._bytes_acked = 0

    def on_ack(self, acked: int, *, flight: int, rtt: float | None, now: float) -> None:
        if self.cwnd < self.ssthresh:
            self.slow_start(acked, rtt)
            return
        self._bytes_acked += acked
        if self._bytes_acked >= self.cwnd:
            self._bytes_acked -= self.cwnd
            self.cwnd += self.mss

    def _half(self, flight: int) -> int:
        """RFC 5681 (4): ssthresh = max(FlightSize / 2, 2 * SMSS), with FlightSize never taken above
        cwnd. FlightSize is SND.MAX - SND.UNA, and after a long SACK recovery that still counts the
        SACKed data beyond holes that were lost again: half of it can be several times the window
        that was sending. Taken as it was, each recovery began at a higher window than the last
        (52, 97, 188, 384 segments on a 62-packet path), the sender kept the drop-tail queue full,
        and a TCP flow beside it sat at one percent of the link. Halving the smaller of the two
        keeps what FlightSize is there for (an application-limited sender does not keep an unused
        window) and never lets a loss raise the window, as Linux and FreeBSD halve cwnd."""
        return max((flight if flight < self.cwnd else self.cwnd) // 2, 2 * self.mss)

    def on_congestion(self, *, flight: int, now: float) -> None:
        self.ssthresh = self._half(flight)
        self.cwnd = self.ssthresh
        self._bytes_acked = 0
        self._leave_slow_start()

    def on_timeout(self, *, flight: int, now: float) -> None:
        self.ssthresh = self._half(flight)
        self.cwnd = self.mss  # loss window
        self._bytes_acked = 0
        self._leave_slow_start()


class Cubic(CongestionControl):
    """RFC 9438 CUBIC with fast convergence and the Reno-friendly region."""

    name = "cubic"
    C = 0.4
    BETA = 0.7
    ALPHA = 3 * (1 - BETA) / (1 + BETA)

    def __init__(self, *, mss: int, initial_window_segments: int = 10) -> None:
        super().__init__(mss=mss, initial_window_segments=initial_window_segments)
        self._w_max = 0.0  # segments
        self._k = 0.0
        self._epoch_start: float | None = None
        self._w_est = 0.0  # segments
        self._cwnd_origin = 0.0
        self._srtt = 0.1
        self._acc = 0.0
        self._cwnd_prior = 0.0  # segments, the window before the last reduction

    def on_ack(self, acked: int, *, flight: int, rtt: float | None, now: float) -> None:
        mss = self.mss
        if rtt is not None:
            self._srtt = rtt if self._srtt == 0.1 else 0.875 * self._srtt + 0.125 * rtt
        if self.cwnd < self.ssthresh:
            self.slow_start(acked, rtt)
            return
        cwnd_seg = self.cwnd / mss
        if self._epoch_start is None:  # RFC 9438 4.2: a new congestion avoidance epoch
            self._epoch_start = now
            if cwnd_seg < self._w_max:
                self._k = ((self._w_max - cwnd_seg) / self.C) ** (1 / 3)
                self._cwnd_origin = self._w_max
            else:
                self._k = 0.0
                self._cwnd_origin = cwnd_seg
            self._w_est = cwnd_seg
        t = now - self._epoch_start
        segments_acked = acked / mss
        # Reno-friendly estimate (RFC 9438 4.3); alpha becomes 1 once W_est reaches
        # the window before the last reduction
        alpha = 1.0 if self._w_est >= self._cwnd_prior else self.ALPHA
        self._w_est += alpha * segments_acked / cwnd_seg
        w_cubic = self._cwnd_origin + self.C * (t - self._k) ** 3
        if w_cubic < self._w_est:  # Reno-friendly region: cwnd = W_est
            if self._w_est * mss > self.cwnd:
                self.cwnd = int(self._w_est * mss)
            return
        # concave and convex regions (RFC 9438 4.4, 4.5)
        target = self._cwnd_origin + self.C * (t + self._srtt - self._k) ** 3
        if target < cwnd_seg:
            target = cwnd_seg
        elif target > 1.5 * cwnd_seg:
            target = 1.5 * cwnd_seg
        self._acc += (target - cwnd_seg) / cwnd_seg * segments_acked * mss
        if self._acc >= 1:
            grow = int(self._acc)
            self.cwnd += grow
            self._acc -= grow

    def _reduce(self) -> None:
        cwnd_seg = self.cwnd / self.mss
        self._cwnd_prior = cwnd_seg
        if cwnd_seg < self._w_max:  # fast convergence (RFC 9438 4.7)
            self._w_max = cwnd_seg * (1 + self.BETA) / 2
        else:
            self._w_max = cwnd_seg
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)
        self._epoch_start = None
        self._acc = 0.0
        self._leave_slow_start()

    def on_congestion(self, *, flight: int, now: float) -> None:
        self._reduce()
        self.cwnd = self.ssthresh

    def on_timeout(self, *, flight: int, now: float) -> None:
        self._reduce()
        self.cwnd = self.mss

    def state(self) -> dict[str, float]:
        out = super().state()
        out["w_max_segments"] = round(self._w_max, 2)
        return out


register_congestion_control("newreno", NewReno)
register_congestion_control("cubic", Cubic)
