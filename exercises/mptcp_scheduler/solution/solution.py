"""mptcp_scheduler reference solution: the lowest RTT among the subflows with room (Linux's default)."""

from __future__ import annotations

from collections.abc import Sequence

from lab.mptcp.strategies import Scheduler, SubflowView


class MyScheduler(Scheduler):
    name = "mine"

    def pick(self, candidates: Sequence[SubflowView]) -> SubflowView | None:
        # Every candidate has room now. Taking the fastest of them fills path A first and lets
        # path B take what A cannot: both paths stay busy. A subflow without an RTT sample yet
        # gets one by being tried.
        return min(candidates, key=lambda sf: sf.srtt if sf.srtt is not None else 0.0)
