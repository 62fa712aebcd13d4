"""The run for ike_race: the registered ``iketcp-race`` scenario, replayed with seed 9329.

Single path (20 ms one-way), r1 drops all UDP. Two initiators on h1 connect
to h2 at t = 0: session ``sequential`` tries UDP 500 until its 2 s timeout,
then TCP 4500; session ``racing`` starts UDP 500 and, 20 ms later, TCP 4500,
and keeps whichever completes IKE_SA_INIT first. The attendee gets the trace
(``trace.jsonl``; ``tcplab run iketcp-race --seed 9329`` makes the same run);
the grader replays it and reads the true values from its own trace.
"""

from __future__ import annotations

from typing import Any

from exercises.grading import SimReplay, TraceQuery
from lab.scenario import Scenario
from topologies.ike_scenarios import SCENARIOS

SEED = 9329
INITIATOR = "h1"
SESSIONS = ("sequential", "racing")
SCENARIO: Scenario = SCENARIOS["iketcp-race"]


def replay(seed: int = SEED, scenario: Scenario = SCENARIO) -> TraceQuery:
    return SimReplay(scenario, seed=seed).finish()


def session_times(q: TraceQuery, session: str) -> dict[str, Any]:
    """Seconds from the session's connect to IKE_SA_INIT completing (``won``) and to its IKE SA
    being established, and the transport that won. Raises ValueError if the session never got there."""
    ike = {"layer": "ike", "name": "state_updated", "node": INITIATOR}
    connect = q.first(**ike, event="connect", session=session)
    won = q.first(**ike, event="won", session=session)
    if connect is None or won is None:
        raise ValueError(f"session {session}: no connect or no winning attempt in the trace")
    # the SA that won is the one whose IKE_SA_INIT response arrived at that instant
    sa = q.first(**ike, to="AUTH_SENT", after=won.t - 1e-9, before=won.t + 1e-9)
    up = q.first(**ike, to="ESTABLISHED", sa=sa.data["sa"]) if sa else None
    if up is None:
        raise ValueError(f"session {session}: its IKE SA was never established")
    udp_timeout = q.first(**ike, event="timeout", transport="udp", session=session)
    return {
        "init_s": won.t - connect.t,
        "established_s": up.t - connect.t,
        "winner": won.data["transport"],
        "udp_wait_s": (udp_timeout.t - connect.t) if udp_timeout else None,
    }


def rtt_s(q: TraceQuery) -> float:
    """The round-trip time: how long the racing session's TCP connect took (SYN to SYN-ACK)."""
    connected = q.first(layer="iketcp", name="state_updated", node=INITIATOR, event="connected", session="racing")
    if connected is None:
        raise ValueError("the racing session never connected over TCP")
    return float(connected.data["after_s"])


def truth(q: TraceQuery) -> dict[str, Any]:
    rtt = rtt_s(q)
    seq, race = session_times(q, "sequential"), session_times(q, "racing")
    return {
        "rtt_ms": round(rtt * 1000, 3),
        "sequential_rtts": round(seq["established_s"] / rtt, 2),
        "racing_rtts": round(race["established_s"] / rtt, 2),
        "racing_winner": race["winner"],
        "sequential_udp_wait_s": round(seq["udp_wait_s"], 3) if seq["udp_wait_s"] is not None else None,
        # for the hints
        "seconds": {"sequential": seq, "racing": race, "rtt": rtt},
    }
