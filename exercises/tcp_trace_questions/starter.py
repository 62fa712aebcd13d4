"""tcp_trace_questions: find the hidden fields of a lossy TCP run.

trace.jsonl is the trace of the lossy-path scenario (h1 sends 1 MiB to h2
over a 20 ms, 20 Mbit/s path with 1 % loss each way) with some fields shown
as "?" and the link-level drop records left out. Each of them can still be
worked out from what is visible. Fill in ANSWERS (by hand, or by computing
them in answers()), then run:

    tcplab exercise check tcp_trace_questions
"""

from __future__ import annotations

from pathlib import Path

from lab.trace import read_jsonl

TRACE = Path(__file__).with_name("trace.jsonl")

ANSWERS = {
    # the MSS h2 announced in its SYN-ACK (bytes)
    "mss_h2": None,
    # the window scale shift h2 announced in its SYN-ACK
    "wscale_h2": None,
    # the acknowledgment number of h2's SYN-ACK
    "synack_ack": None,
    # the RTT h1 measures from its SYN to the SYN-ACK, in milliseconds (three decimals)
    "handshake_rtt_ms": None,
    # how many data segments h1 sent again (retransmissions: a start below the highest byte sent so far)
    "retransmitted_segments": None,
    # how many of h1's data segments the network lost (sent by h1, never received by h2)
    "lost_data_packets": None,
}


def answers() -> dict:
    records = list(read_jsonl(TRACE))  # noqa: F841 - a start: TraceRecord(t, node, layer, name, data)
    return ANSWERS
