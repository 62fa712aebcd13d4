"""tcpcrypt_tamper, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

import re


def check(records: list[dict]) -> dict:
    # tcpcrypt records why it aborted; its detail names the frame that failed the AEAD check
    error = next(r for r in records if r["layer"] == "tcpcrypt" and r["name"] == "error")
    offset = int(re.search(r"frame at offset (\d+)", error["data"]["detail"]).group(1))
    conn = error["data"]["conn"]
    # after the abort the detecting end resets the connection (RFC 8548 §3.6)
    after = [
        r
        for r in records
        if r["layer"] == "tcp"
        and r["name"] == "segment_sent"
        and r["node"] == error["node"]
        and r["data"].get("conn") == conn
        and r["t"] >= error["t"]
    ]
    flags = "".join(r["data"].get("flags", "") for r in after)
    # a frame is released to the application only once its tag verified: the corrupted frame never is,
    # and the connection is gone before anything after it could be
    return {
        "detected_by": error["node"],
        "failed_frame_offset": offset,
        "reason": error["data"]["reason"],
        "corrupted_bytes_delivered": 0,
        "how_it_ended": "reset" if "R" in flags else "fin" if "F" in flags else "timeout",
    }
