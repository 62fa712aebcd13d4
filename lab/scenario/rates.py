"""Rates that hold: bits per second over a window of virtual time, from a growing byte counter.

A per-sample rate (bytes since the previous 0.1 s sample) swings far above what a
link can carry: a cumulative ACK after loss recovery or a queue draining lands in
one sample. :class:`WindowRate` divides the bytes counted since a sample at least
``window_s`` old by the time since that sample, so what a link delivers in any
window can never exceed its rate, plus one packet over the window (the stated
error, :func:`rate_error_bps`) for counters taken where packets arrive, plus
what was in flight at the window's start for counters of acknowledged bytes.
The rate decays to zero once the counter stops growing, as the clock (the time
of the latest record seen) moves on.
"""

from __future__ import annotations

from collections import deque

RATE_WINDOW_S = 1.0
MAX_PACKET_BYTES = 1500


def rate_error_bps(window_s: float = RATE_WINDOW_S, packet_bytes: int = MAX_PACKET_BYTES) -> float:
    """How far a windowed rate of a received-bytes counter can stand above the link's rate."""
    return packet_bytes * 8 / window_s


class WindowRate:
    """Bits per second over the last ``window_s`` of virtual time. Never raises on odd input:
    a counter that goes back (a connection restarted) starts the window afresh."""

    __slots__ = ("window_s", "_samples")

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, total_bytes: int) -> None:
        samples = self._samples
        if samples and (total_bytes < samples[-1][1] or t < samples[-1][0]):
            samples.clear()
        samples.append((t, total_bytes))
        # keep one sample at or before the window's start, drop older ones
        while len(samples) > 2 and samples[1][0] <= t - self.window_s:
            samples.popleft()

    @property
    def total(self) -> int:
        """The counter's latest value (0 before any sample)."""
        return self._samples[-1][1] if self._samples else 0

    def rate(self, now: float) -> float | None:
        """The rate as of ``now`` (at least the latest sample's time); None before two samples."""
        samples = self._samples
        if len(samples) < 2 and not (samples and now > samples[0][0]):
            return None
        last_t, last_total = samples[-1]
        now = max(now, last_t)
        start = now - self.window_s
        base_t, base_total = samples[0]
        for t, total in samples:
            if t <= start:
                base_t, base_total = t, total
            else:
                break
        span = now - base_t
        if span <= 0:
            return None
        return (last_total - base_total) * 8 / max(span, self.window_s)
