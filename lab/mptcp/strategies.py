"""MPTCP strategies picked by name: schedulers, path managers, coupled congestion control.

A scheduler decides which subflow carries the next chunk of data; a path
manager decides which subflows to open and which addresses to announce; a
coupled congestion controller links the subflows' windows (RFC 6356 LIA,
OLIA) so that MPTCP takes no more than one TCP's share of a shared
bottleneck. Exercise stubs subclass the same ABCs and register them.
"""

from __future__ import annotations

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
    """The subflows of one connection whose windows a coupled controller links."""

    def __init__(self) -> None:
        self.members: list[CoupledCongestion] = []

    def total_cwnd(self) -> int:
        return sum(m.cwnd for m in self.members if m.active)


class CoupledCongestion(NewReno):
    """NewReno per subflow whose congestion-avoidance increase is set by the group."""

    name = "coupled"

    def __init__(self, *, mss: int, initial_window_segments: int = 10, group: CoupledGroup | None = None) -> None:
        super().__init__(mss=mss, initial_window_segments=initial_window_segments)
        self.group = group or CoupledGroup()
        self.group.members.append(self)
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
        self._credit += self.increase(acked)
        if self._credit >= 1.0:
            whole = int(self._credit)
            self.cwnd += whole
            self._credit -= whole

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


class OliaCongestion(CoupledCongestion):
    """OLIA (Khalili et al., 2013): increase (w_r/rtt_r^2)/(sum w_p/rtt_p)^2 + alpha_r/w_r per ACKed packet,
    with alpha_r shifting window from the paths with the largest windows to the best paths."""

    name = "olia"

    def __init__(self, *, mss: int, initial_window_segments: int = 10, group: CoupledGroup | None = None) -> None:
        super().__init__(mss=mss, initial_window_segments=initial_window_segments, group=group)
        self.bytes_since_loss = 0  # l_r: bytes delivered since the last loss (of the last two intervals)
        self.bytes_prev_interval = 0

    def on_congestion(self, *, flight: int, now: float) -> None:
        self.bytes_prev_interval = self.bytes_since_loss
        self.bytes_since_loss = 0
        super().on_congestion(flight=flight, now=now)

    def on_ack(self, acked: int, *, flight: int, rtt: float | None, now: float) -> None:
        self.bytes_since_loss += acked
        super().on_ack(acked, flight=flight, rtt=rtt, now=now)

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
        per_packet = first + alpha / w[self]
        return max(per_packet, 0.0) * acked  # in bytes: (segments of increase per segment) * acked bytes


COUPLED_CONGESTION: dict[str, type[CoupledCongestion] | None] = {
    "uncoupled": None,  # each subflow runs the TCP configuration's own controller
    "lia": LiaCongestion,
    "olia": OliaCongestion,
}
