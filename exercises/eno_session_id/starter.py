"""eno_session_id: the tcpcrypt session ID at both ends (RFC 8547 §5.1, RFC 8548 §3.4).

trace.jsonl is the trace of the eno-basic scenario run with seed 8547 (the
same run as ``tcplab run eno-basic --seed 8547``; the TUI's ENO view shows
it too). Fill in ANSWERS, by hand or by computing them in answers(), then run:

    tcplab exercise check eno_session_id
"""

from __future__ import annotations

from pathlib import Path

from lab.trace import read_jsonl

TRACE = Path(__file__).with_name("trace.jsonl")

ANSWERS = {
    # the session ID h1 ended up with (hex, as in the trace)
    "session_id_h1": None,
    # the session ID h2 ended up with (hex)
    "session_id_h2": None,
    # the TEP the two ends negotiated, as its identifier ("0x2?")
    "tep": None,
    # the ENO role h1 played: "A" or "B"
    "role_h1": None,
    # the AEAD algorithm the frames use (its name as in the trace)
    "aead": None,
}


def answers() -> dict:
    records = list(read_jsonl(TRACE))  # noqa: F841 - a start: TraceRecord(t, node, layer, name, data)
    return ANSWERS
