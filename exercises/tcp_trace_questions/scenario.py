"""The run for tcp_trace_questions: the ``lossy-path`` scenario with 1 MiB, replayed with seed 5.

One routed path, 20 Mbit/s, 20 ms one-way, 1 % random loss each way; h1 sends
1 MiB to h2 over plain TCP (SACK, timestamps, window scaling, CUBIC). The
attendee gets the trace with some fields hidden (``masked``); the grader
replays the same run and reads the true values from the full trace (``truth``).
"""

from __future__ import annotations

import copy
from typing import Any

from exercises.grading import SimReplay, TraceQuery
from lab.scenario import Scenario, Transfer
from lab.trace import TraceRecord

SEED = 5
HIDDEN = "?"

SCENARIO = Scenario(
    name="lossy-path",
    description="The single path with 1 % random loss each way: SACK recovery at work (1 MiB).",
    topology="single-path",
    topology_params={"loss_pct": 1.0},
    transfers=(Transfer(size_bytes=1024 * 1024),),
)


def replay(seed: int = SEED, scenario: Scenario = SCENARIO) -> TraceQuery:
    return SimReplay(scenario, seed=seed).finish()


def _handshake(q: TraceQuery) -> tuple[TraceRecord, TraceRecord]:
    syn = q.first(layer="tcp", name="segment_sent", node="h1", flags="S")
    synack = q.first(layer="tcp", name="segment_received", node="h1", flags="SA")
    if syn is None or synack is None:
        raise ValueError("the run has no complete handshake")
    return syn, synack


def truth(q: TraceQuery) -> dict[str, Any]:
    """The answers, from the full trace."""
    syn, synack = _handshake(q)
    opts = {o["kind"]: o for o in synack.data.get("options", [])}
    isn = syn.data["seq"]
    highest = 0  # relative sequence space of h1's data
    retransmitted = 0
    data_sent = 0
    for r in q.segments("h1", sent=True):
        n = r.data["len"]
        if not n:
            continue
        data_sent += 1
        start = (r.data["seq"] - isn) & 0xFFFFFFFF
        if start < highest:
            retransmitted += 1
        highest = max(highest, start + n)
    data_received = sum(1 for r in q.segments("h2", sent=False) if r.data["len"])
    return {
        "mss_h2": opts["MSS"]["value"],
        "wscale_h2": opts["WS"]["shift"],
        "synack_ack": synack.data["ack"],
        "handshake_rtt_ms": round((synack.t - syn.t) * 1000, 3),
        "retransmitted_segments": retransmitted,
        "lost_data_packets": data_sent - data_received,
    }


def masked(q: TraceQuery) -> list[TraceRecord]:
    """The trace the attendee gets: MSS and window-scale values of both SYNs, the SYN-ACK's ack,
    the retransmission counters hidden; link-level drop records left out."""
    out = []
    for r in q.records:
        if r.layer == "link" and r.name == "segment_dropped":
            continue
        data = r.data
        if r.layer == "tcp" and r.name in ("segment_sent", "segment_received") and "S" in data.get("flags", ""):
            data = copy.deepcopy(data)
            for opt in data.get("options", []):
                if opt["kind"] == "MSS":
                    opt["value"] = HIDDEN
                elif opt["kind"] == "WS":
                    opt["shift"] = HIDDEN
            if data["flags"] == "SA":
                data["ack"] = HIDDEN
        elif r.layer == "tcp" and r.name == "metrics_updated":
            data = dict(data, bytes_retransmitted=HIDDEN)
        out.append(TraceRecord(r.t, r.node, r.layer, r.name, data))
    return out
