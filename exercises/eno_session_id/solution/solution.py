"""eno_session_id, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

from pathlib import Path

from lab.trace import read_jsonl

TRACE = Path(__file__).with_name("trace.jsonl")


def answers() -> dict:
    records = list(read_jsonl(TRACE))
    # both ends record their keys, session ID included, once Init1/Init2 are through
    keys = {r.node: r.data for r in records if r.layer == "tcpcrypt" and r.name == "key_updated"}
    # the ENO agreement says which TEP and which role (RFC 8547 §4.3, §4.5)
    agreed = next(
        r.data
        for r in records
        if r.layer == "eno" and r.name == "state_updated" and r.node == "h1" and r.data.get("to") == "negotiated"
    )
    return {
        "session_id_h1": keys["h1"]["session_id"],
        "session_id_h2": keys["h2"]["session_id"],
        "tep": agreed["tep"],
        "role_h1": agreed["role"],
        "aead": keys["h1"]["aead"],
    }
