"""tcpcrypt_tamper: a flipped byte is never delivered (RFC 8548 §3.6, §4.2).

r1 flips one byte of one TCP segment on its way to h2 and fixes the TCP
checksum. check(records) gets the trace of such a run, as a list of records
{"t", "node", "layer", "name", "data"} (docs/trace.md), and returns what
happened. It is called on two runs that tamper with different segments, so
compute the answers from the records; do not type them in. Then run:

    tcplab exercise check tcpcrypt_tamper
"""

from __future__ import annotations


def check(records: list[dict]) -> dict:
    flipped = [r for r in records if r["layer"] == "middlebox" and r["data"].get("action") == "rewritten"]
    return {
        # which host noticed the tampering ("h1" or "h2")
        "detected_by": None,
        # the stream offset of the tcpcrypt frame that failed authentication
        # TODO: this is where r1 flipped the byte inside one TCP segment, not a frame offset
        "failed_frame_offset": flipped[0]["data"]["flipped_offset"] if flipped else None,
        # the reason tcpcrypt recorded
        "reason": None,
        # how many corrupted bytes reached h2's application
        # TODO: one byte was flipped on the wire; did it reach the application?
        "corrupted_bytes_delivered": len(flipped),
        # how the connection ended: "reset", "fin" or "timeout"
        "how_it_ended": None,
    }
