"""mptcp_scheduler: decide which subflow carries the next chunk of data.

h1 has two subflows to h2, one per path. Whenever there is data to send,
h1's MPTCP connection calls ``MyScheduler.pick(candidates)`` with the
subflows that have room for it right now (never an empty list). Return one
of them, or None to send nothing now (you are asked again when an ACK
opens room). Each candidate shows:

    sf.addr        its FourTuple (sf.addr.local_addr is 10.0.1.1 on path A, 10.0.3.1 on path B)
    sf.srtt        its smoothed RTT in seconds (None before the first sample)
    sf.cwnd        its congestion window in bytes
    sf.send_room   bytes it could take now
    sf.backup      whether it is a backup subflow

Then run:

    tcplab exercise check mptcp_scheduler
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.mptcp.strategies import Scheduler, SubflowView


class MyScheduler(Scheduler):
    name = "mine"

    def __init__(self) -> None:
        self.favourite = None

    def pick(self, candidates: Sequence[SubflowView]) -> SubflowView | None:
        # TODO: this sticks to the first subflow it ever saw (path A) and, when that one is
        # full, waits for it: path B never carries a byte.
        if self.favourite is None:
            self.favourite = candidates[0].addr
        for sf in candidates:
            if sf.addr == self.favourite:
                return sf
        return None
