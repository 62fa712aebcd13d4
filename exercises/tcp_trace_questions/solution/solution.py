"""tcp_trace_questions, reference solution (not handed out by `tcplab exercise start`).

Every hidden field is derived from what the masked trace still shows.
"""

from __future__ import annotations

import math
from pathlib import Path

from lab.trace import read_jsonl

TRACE = Path(__file__).with_name("trace.jsonl")
TS_OPTION_BYTES = 12  # NOP, NOP, Timestamps (RFC 7323 appendix A) on every data segment


def answers() -> dict:
    records = list(read_jsonl(TRACE))
    tcp = [r for r in records if r.layer == "tcp"]
    syn = next(r for r in tcp if r.node == "h1" and r.name == "segment_sent" and r.data["flags"] == "S")
    synack = next(r for r in tcp if r.node == "h1" and r.name == "segment_received" and r.data["flags"] == "SA")
    h1_sent = [r for r in tcp if r.node == "h1" and r.name == "segment_sent"]
    # MSS: h1's full-sized segments carry MSS minus the options every segment carries
    full = max(r.data["len"] for r in h1_sent)
    # window scale: h1's send window (metrics) is h2's raw window field shifted left
    shift = None
    last_win = None
    for r in records:
        if r.node == "h1" and r.name == "segment_received" and r.layer == "tcp" and "S" not in r.data["flags"]:
            last_win = r.data["win"]
        elif r.node == "h1" and r.name == "metrics_updated" and last_win:
            shift = round(math.log2(r.data["snd_wnd"] / last_win))
            break
    isn = syn.data["seq"]
    highest = retransmitted = data_sent = 0
    for r in h1_sent:
        n = r.data["len"]
        if not n:
            continue
        data_sent += 1
        start = (r.data["seq"] - isn) & 0xFFFFFFFF
        if start < highest:
            retransmitted += 1
        highest = max(highest, start + n)
    data_received = sum(1 for r in tcp if r.node == "h2" and r.name == "segment_received" and r.data["len"])
    return {
        "mss_h2": full + TS_OPTION_BYTES,
        "wscale_h2": shift,
        "synack_ack": (isn + 1) & 0xFFFFFFFF,  # the SYN takes one sequence number
        "handshake_rtt_ms": round((synack.t - syn.t) * 1000, 3),
        "retransmitted_segments": retransmitted,
        "lost_data_packets": data_sent - data_received,
    }
