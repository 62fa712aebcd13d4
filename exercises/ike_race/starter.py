"""ike_race: sequential against racing fallback to TCP, in round trips (RFC 9329 §5).

trace.jsonl is the trace of the iketcp-race scenario run with seed 9329 (the
same run as ``tcplab run iketcp-race --seed 9329``): two IKE initiators on
h1, 'sequential' and 'racing', behind a network that drops all UDP. Fill in
answers(), by hand or from the records, then run:

    tcplab exercise check ike_race
"""

from __future__ import annotations

from pathlib import Path

from lab.trace import read_jsonl

TRACE = Path(__file__).with_name("trace.jsonl")


def answers() -> dict:
    records = list(read_jsonl(TRACE))
    won = {r.data["session"]: r.t for r in records if r.layer == "ike" and r.data.get("event") == "won"}
    return {
        # the round-trip time of the path in milliseconds: how long a TCP connect takes (iketcp 'connected')
        "rtt_ms": None,
        # from the sequential session's connect until its IKE SA is established, in RTTs
        # TODO: these are seconds, and only until IKE_SA_INIT completed
        "sequential_rtts": won.get("sequential"),
        # the same for the racing session, in RTTs
        "racing_rtts": won.get("racing"),
        # which transport won the race: "udp" or "tcp"
        "racing_winner": None,
        # how long the sequential session kept trying UDP before it started TCP, in seconds
        "sequential_udp_wait_s": None,
    }
