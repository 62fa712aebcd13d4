"""MPTCP strategies picked by name: schedulers, path managers, coupled congestion control.

A scheduler decides which subflow carries the next chunk of data; a path
manager decides which subflows to open and which addresses to announce; a
coupled congestion controller links the subflows' windows (RFC 6356 LIA,
OLIA) so that MPTCP takes no more than one TCP's share of a shared
bottleneck. Exercise stubs subclass the same ABCs and register them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from lab.tcp.congestion import NewReno

if TYPE_CHECKING:
    from lab.tcp.addresses import FourTuple


class SubflowView(Protocol):
    """What a scheduler may look at."""

    addr: FourTuple
    backup: bool  # our priority for it, or the peer's MP_PRIO / MP_JOIN B flag

    @property
    def srtt(self) -> float | None: ...

    @property
    def cwnd(self) -> int: ...

    @property
    def send_room(self) -> int: ...  # bytes it could send now (cwnd - in flight - queued)


# --- schedulers ---------------------------------------------------------------------------


class Scheduler(ABC):
    """Picks the subflow for the next chunk among those with room (backups already filtered).

    The connection hands a scheduler only the subflows it may use, as Linux does: the
    non-backup subflows that are not stalled (an RTO fired and nothing was acknowledged
    since: the path may be dead); when there is none, the backups that are not stalled;
    only when every subflow is stalled, all of them. ``avoid_stalled = False`` keeps
    stalled non-backup subflows among the candidates (and backups idle while one lives).
    """

    name = "abstract"
    redundant = False  # True: every chunk goes out on every candidate
    avoid_stalled = True  # a subflow whose RTO fired is not used while another is usable

    @abstractmethod
    def pick(self, candidates: Sequence[SubflowView]) -> SubflowView | None:
        """One of ``candidates`` (never empty), or None to send nothing now."""


class MinRttScheduler(Scheduler):
    """The lowest smoothed RTT first (Linux's default); subflows without a sample count as slow."""

    name = "min_rtt"

    def pick(self, candidates: Sequence[SubflowView]) -> SubflowView | None:
        return min(candidates, key=lambda s: s.srtt if s.srtt is not None else 1e9)


class RoundRobinScheduler(Scheduler):
    """Each subflow in turn, whatever its RTT."""

    name = "round_robin"

    def __init__(self) -> None:
        self._last: FourTuple | None = None

    def pick(self, candidates: Sequence[SubflowView]) -> SubflowView | None:
        ordered = sorted(candidates, key=lambda s: s.addr)
        choice = next((s for s in ordered if self._last is None or s.addr > self._last), ordered[0])
        self._last = choice.addr
        return choice


class RedundantScheduler(Scheduler):
    """Every chunk on every subflow: the lowest latency at the price of the capacity."""

    name = "redundant"
    redundant = True

    def pick(self, candidates: Sequence[SubflowView]) -> SubflowView | None:
        return min(candidates, key=lambda s: s.srtt if s.srtt is not None else 1e9)


class BackupAwareScheduler(MinRttScheduler):
    """min-RTT that leaves backups idle while an active subflow lives and keeps off a subflow
    whose RTO has fired (it looks dead) while another is usable: what every scheduler does by
    default now (``Scheduler.avoid_stalled``); the name stays for configurations that use it."""

    name = "backup_aware"
    avoid_stalled = True


SCHEDULERS: dict[str, type[Scheduler]] = {}


def register_scheduler(name: str, cls: type[Scheduler]) -> None:
    SCHEDULERS[name] = cls


for _cls in (MinRttScheduler, RoundRobinScheduler, RedundantScheduler, BackupAwareScheduler):
    register_scheduler(_cls.name, _cls)


# --- path managers --------------------------------------------------------------------------


class PathManager:
    """Which subflows to open and which addresses to announce.

    ``subflows_to_open`` is asked whenever the set of known addresses changes
    or a subflow closes; it returns (local address, remote address, remote
    port) pairs not yet in use.
    """

    name = "none"
    announces = False

    def subflows_to_open(
        self,
        *,
        local_addresses: Sequence[str],
        remote_addresses: Sequence[tuple[str, int]],
        in_use: set[tuple[str, str, int]],
        initial: tuple[str, str, int],
    ) -> list[tuple[str, str, int]]:
        return []


class FullMeshPathManager(PathManager):
    """A subflow between every local address and every known remote address of the same family
    (Linux's "fullmesh"); the other side announces all its addresses."""

    name = "fullmesh"
    announces = True

    def subflows_to_open(self, *, local_addresses, remote_addresses, in_use, initial):
        out = []
        for local in local_addresses:
            for remote, port in remote_addresses:
                pair = (local, remote, port)
                if (":" in local) == (":" in remote) and pair not in in_use:
                    out.append(pair)
        return out


class PerAddressPathManager(PathManager):
    """One subflow per local address to the peer's first address, and one from the initial local
    address to each announced address (Linux's in-kernel ``subflow``/``signal`` endpoints)."""

    name = "per_address"
    announces = True

    def subflows_to_open(self, *, local_addresses, remote_addresses, in_use, initial):
        first_local, first_remote, first_port = initial
        out = []
        for local in local_addresses:
            pair = (local, first_remote, first_port)
            if (":" in local) == (":" in first_remote) and pair not in in_use:
                out.append(pair)
        for remote, port in remote_addresses:
            pair = (first_local, remote, port)
            if (":" in first_local) == (":" in remote) and pair not in in_use:
                out.append(pair)
        return out


class PairedPathManager(PathManager):
    """The n-th local address with the n-th address the peer announced (its initial address first):
    one subflow per disjoint path when each host has one address per path, as in ``two-paths``."""

    name = "paired"
    announces = True

    def subflows_to_open(self, *, local_addresses, remote_addresses, in_use, initial):
        first_local = initial[0]
        locals_ = [
            first_local,
            *[a for a in local_addresses if a != first_local and (":" in a) == (":" in first_local)],
        ]
        out = []
        for local, (remote, port) in zip(locals_, remote_addresses, strict=False):
            pair = (local, remote, port)
            if pair not in in_use:
                out.append(pair)
        return out


PATH_MANAGERS: dict[str, type[PathManager]] = {
    cls.name: cls for cls in (PathManager, FullMeshPathManager, PerAddressPathManager, PairedPathManager)
}


def register_path_manager(name: str, cls: type[PathManager]) -> None:
    PATH_MANAGERS[name] = cls


# --- coupled congestion control ---------------------------------------------------------------


class CoupledGroup:
    """The subflows of one connection whose windows a coupled controller links.

    The group also tells congestion events apart (the losses its subflows see within one
    round trip of the first one are one event) and, over a CUBIC host (``base="cubic"``),
    holds the aggregate's CUBIC epoch (see :class:`CoupledCongestion`).
    """

    def __init__(self) -> None:
        self.members: list[CoupledCongestion] = []
        self.w_max = 0.0  # segments: the total window when the last congestion event began
        self.cwnd_prior = 0.0  # segments
        self.epoch_start: float | None = None
        self.origin = 0.0
        self.k = 0.0
        self.event_at: float | None = None  # the first loss of the current congestion event

    def total_cwnd(self) -> int:
        return sum(m.cwnd for m in self.members if m.active)

    def share_concentration(self) -> float:
        """Sum over the active subflows of (cwnd_i / total)^2: 1 for one subflow, 1/n for n equal ones."""
        total = self.total_cwnd()
        if not total:
            return 1.0
        return sum((m.cwnd / total) ** 2 for m in self.members if m.active)

    def note_cut(self, *, now: float) -> bool:
        """A subflow cut its window for a loss at ``now``; returns whether this opened a new
        congestion event (no other subflow's cut within the last round trip)."""
        window = max((m.rtt for m in self.members if m.active), default=0.1)
        if self.event_at is not None and now - self.event_at < window:
            return False
        self.event_at = now
        return True


class CoupledCongestion(NewReno):
    """A subflow's controller whose congestion-avoidance increase is set by the group.

    Each subflow answers its own losses as RFC 6356 and OLIA say: over ``newreno``
    (``base``, the single-path controller the host's TCP runs) a loss halves its
    window; over ``cubic`` it takes it to 0.7 of itself (RFC 9438's beta). The increase
    is coupled (:meth:`increase`) so that at a shared bottleneck the connection takes
    one TCP flow's share (RFC 6356 §2 goal 2) and no less (goal 1).

    RFC 6356's alpha, and OLIA's first term, set the connection's growth per round
    trip (:meth:`growth_share`, 1/2 for two equal subflows), exactly as the formulas
    give: each subflow sees the bottleneck's loss rate and halves only its own window,
    so the connection takes one flow's share. Over NewReno the windows grow by whole
    segments, as a single NewReno flow's does (and as Linux counts them).

    Over CUBIC the same rule holds with CUBIC's growth in place of Reno's: the increase
    is the larger of the coupled increase scaled as CUBIC scales Reno's (its
    Reno-friendly region, RFC 9438 4.3) and the coupling's share of what one CUBIC flow
    with the connection's total window would grow (RFC 9438 4.2, 4.4, 4.5: the curve
    from beta times the total at the last congestion event back to it), spread over the
    subflows by their ACKs. Without coupling the same host takes about one share per
    subflow.
    """

    name = "coupled"
    CUBIC_C = 0.4
    CUBIC_BETA = 0.7
    CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)

    def __init__(
        self,
        *,
        mss: int,
        initial_window_segments: int = 10,
        group: CoupledGroup | None = None,
        base: str = "newreno",
    ) -> None:
        super().__init__(mss=mss, initial_window_segments=initial_window_segments)
        self.group = group or CoupledGroup()
        self.group.members.append(self)
        self.base = base
        self.rtt = 0.1  # smoothed RTT seen by this controller (s)
        self.active = True
        self._credit = 0.0

    def _rtt_sample(self, rtt: float | None) -> None:
        if rtt is not None and rtt > 0:
            self.rtt = rtt if self.rtt == 0.1 else 0.875 * self.rtt + 0.125 * rtt

    def on_ack(self, acked: int, *, flight: int, rtt: float | None, now: float) -> None:
        self._rtt_sample(rtt)
        if self.cwnd < self.ssthresh:
            self.slow_start(acked, rtt)
            return
        grow = self.increase(acked)
        if self.base == "cubic":
            grow = max(self._reno_friendly_scale() * grow, self._cubic_increase(acked, now=now))
        self._credit += grow
        step = self.mss if self.base == "newreno" else 1  # NewReno counts its window in segments
        if self._credit >= step:
            whole = int(self._credit // step) * step
            self.cwnd += whole
            self._credit -= whole

    def growth_share(self) -> float:
        """The connection's growth per round trip in congestion avoidance that the coupling formula
        gives, as a fraction of one TCP flow's (one MSS per RTT): LIA's alpha, OLIA's first term."""
        return self.group.share_concentration()

    def coupling(self) -> float:
        """The growth the connection takes, as a fraction of one flow's: the formula's."""
        return min(1.0, self.growth_share())

    def _reno_friendly_scale(self) -> float:
        """RFC 9438 4.3: CUBIC's Reno-friendly estimate grows by alpha_cubic per RTT (1 once
        the window is back to where it was before the last reduction)."""
        return 1.0 if self.group.total_cwnd() >= self.group.cwnd_prior * self.mss else self.CUBIC_ALPHA

    def _cubic_increase(self, acked: int, *, now: float) -> float:
        """Bytes this ACK adds to the subflow: its share of the coupling's part of what one CUBIC flow
        with the connection's total window would grow over the next round trip, on the curve that flow
        takes after the last congestion event (RFC 9438 4.2: back to the total at the event, from beta
        times it, or lower if cuts took the total lower still).

        The point on the curve is the earlier of two: where the time since the event puts it, and
        where the total window sits on it. After one subflow's cut the total is above the curve's
        start, and the time keeps the connection waiting for the curve as one CUBIC flow would. Once
        the curve has passed the total, the window sets the point: a connection growing at the
        coupling's pace stays on its share of the curve's growth. (With the time alone, the gap to
        a curve running ahead grew, and a share of a growing gap gave back the curve's whole growth:
        LIA took 1.65x a CUBIC flow at 10 Mbit/s with a 400-packet queue.)"""
        g = self.group
        total = g.total_cwnd() / self.mss
        if total <= 0:
            return 0.0
        if g.epoch_start is None:
            g.epoch_start = now
            if total < g.w_max:
                g.origin = g.w_max
                g.k = (max(g.w_max - total, g.w_max * (1 - self.CUBIC_BETA)) / self.CUBIC_C) ** (1 / 3)
            else:
                g.origin = total
                g.k = 0.0
        offset = total - g.origin  # negative below the plateau (concave), positive above (convex)
        x = math.copysign(abs(offset / self.CUBIC_C) ** (1 / 3), offset)  # t - K on the curve
        x = min(x, now - g.epoch_start - g.k)  # the earlier point
        target = g.origin + self.CUBIC_C * (x + self.rtt) ** 3
        target = min(max(target, total), 1.5 * total)
        return (target - total) / total * acked * self.coupling()

    def _cut(self, *, flight: int, now: float, timeout: bool) -> None:
        g = self.group
        total_before = g.total_cwnd()
        if self.base == "cubic":
            self.ssthresh = max(int(self.cwnd * self.CUBIC_BETA), 2 * self.mss)
            self.cwnd = self.mss if timeout else self.ssthresh
            self._bytes_acked = 0
            self._leave_slow_start()
        elif timeout:
            NewReno.on_timeout(self, flight=flight, now=now)
        else:
            NewReno.on_congestion(self, flight=flight, now=now)
        self._credit = 0.0
        new_event = g.note_cut(now=now)
        if self.base == "cubic":
            if new_event:
                g.cwnd_prior = g.w_max = total_before / self.mss  # the aggregate's curve restarts here
            # a further cut in the same event (another subflow's loss at a shared bottleneck) restarts
            # the curve from the lower total too: else it would still aim at where the first cut left
            # the total and grow the second cut back within a round trip
            g.epoch_start = None

    def on_congestion(self, *, flight: int, now: float) -> None:
        self._cut(flight=flight, now=now, timeout=False)

    def on_timeout(self, *, flight: int, now: float) -> None:
        self._cut(flight=flight, now=now, timeout=True)

    def increase(self, acked: int) -> float:  # pragma: no cover - abstract in spirit
        return acked * self.mss / self.cwnd


class LiaCongestion(CoupledCongestion):
    """RFC 6356 Linked Increases: per ACK, min(alpha*acked*MSS/cwnd_total, acked*MSS/cwnd_i)."""

    name = "lia"

    def increase(self, acked: int) -> float:
        members = [m for m in self.group.members if m.active]
        total = sum(m.cwnd for m in members) or self.cwnd
        best = max(m.cwnd / (m.rtt * m.rtt) for m in members)
        denom = sum(m.cwnd / m.rtt for m in members) ** 2
        alpha = total * best / denom if denom else 1.0
        return min(alpha * acked * self.mss / total, acked * self.mss / self.cwnd)

    def growth_share(self) -> float:
        """RFC 6356's alpha: the connection grows by alpha MSS per RTT (with equal RTTs)."""
        members = [m for m in self.group.members if m.active]
        total = sum(m.cwnd for m in members)
        denom = sum(m.cwnd / m.rtt for m in members) ** 2
        if not total or not denom:
            return 1.0
        return total * max(m.cwnd / (m.rtt * m.rtt) for m in members) / denom


class OliaCongestion(CoupledCongestion):
    """OLIA (Khalili et al., 2013): increase (w_r/rtt_r^2)/(sum w_p/rtt_p)^2 + alpha_r/w_r per ACKed packet,
    with alpha_r shifting window from the paths with the largest windows to the best paths."""

    name = "olia"

    def __init__(
        self,
        *,
        mss: int,
        initial_window_segments: int = 10,
        group: CoupledGroup | None = None,
        base: str = "newreno",
    ) -> None:
        super().__init__(mss=mss, initial_window_segments=initial_window_segments, group=group, base=base)
        self.bytes_since_loss = 0  # l_r: bytes delivered since the last loss (of the last two intervals)
        self.bytes_prev_interval = 0

    def on_congestion(self, *, flight: int, now: float) -> None:
        self.bytes_prev_interval = self.bytes_since_loss
        self.bytes_since_loss = 0
        super().on_congestion(flight=flight, now=now)

    def on_ack(self, acked: int, *, flight: int, rtt: float | None, now: float) -> None:
        self.bytes_since_loss += acked
        super().on_ack(acked, flight=flight, rtt=rtt, now=now)

    def growth_share(self) -> float:
        """Sum over r of w_r * (w_r/rtt_r^2)/(sum_p w_p/rtt_p)^2: the first term's growth per RTT."""
        members = [m for m in self.group.members if m.active]
        denom = sum(m.cwnd / m.rtt for m in members) ** 2
        if not denom:
            return 1.0
        return sum(m.cwnd * m.cwnd / (m.rtt * m.rtt) for m in members) / denom

    def increase(self, acked: int) -> float:
        members = [m for m in self.group.members if m.active]
        mss = self.mss
        w = {m: max(m.cwnd / mss, 1.0) for m in members}
        denom = sum(w[m] / m.rtt for m in members) ** 2
        first = (w[self] / (self.rtt * self.rtt)) / denom if denom else 1.0 / w[self]

        def quality(m: CoupledCongestion) -> float:
            l_r = max(getattr(m, "bytes_since_loss", 0), getattr(m, "bytes_prev_interval", 0))
            return l_r * l_r / (m.rtt * m.rtt)

        best_q = max(quality(m) for m in members)
        best = {m for m in members if quality(m) == best_q}
        max_w = max(w.values())
        largest = {m for m in members if w[m] == max_w}
        collected = best - largest
        n = len(members)
        if self in collected:
            alpha = 1.0 / (n * len(collected))
        elif collected and self in largest:
            alpha = -1.0 / (n * len(largest))
        else:
            alpha = 0.0
        per_packet = first + alpha / w[self]  # the alpha terms sum to zero over the connection
        return max(per_packet, 0.0) * acked  # in bytes: (segments of increase per segment) * acked bytes


COUPLED_CONGESTION: dict[str, type[CoupledCongestion] | None] = {
    "uncoupled": None,  # each subflow runs the TCP configuration's own controller
    "lia": LiaCongestion,
    "olia": OliaCongestion,
}
