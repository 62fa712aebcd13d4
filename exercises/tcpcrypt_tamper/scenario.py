"""The runs for tcpcrypt_tamper: the registered ``tcpcrypt-tamper`` scenario and a variant.

h1 sends 1 MiB to h2 over tcpcrypt (single-path, 20 ms one-way). r1 XORs one
payload byte of the ``nth`` data segment towards port 5001 and fixes the TCP
checksum, so TCP cannot notice; only tcpcrypt's AEAD tag can. The attendee's
``check(records)`` is called on the trace of both runs: ``tcpcrypt-tamper``
as registered (the 20th segment, byte 700) and a variant that hits another
segment at another byte, so answers typed in from one trace do not carry over.
"""

from __future__ import annotations

import re
from typing import Any

from exercises.grading import SimReplay, TraceQuery
from lab.scenario import Scenario
from lab.scenario.eno import EncryptedTransfer
from lab.scenario.middlebox import FlipPayloadBytes
from topologies.eno_scenarios import SCENARIOS

SEED = 8548
TRANSFER = "tampered"
SIZE = 1024 * 1024
FRAME_OFFSET = re.compile(r"frame at offset (\d+)")

RUNS: dict[str, Scenario] = {
    "tcpcrypt-tamper": SCENARIOS["tcpcrypt-tamper"],
    "variant": Scenario(
        name="tcpcrypt-tamper-variant",
        description="As tcpcrypt-tamper, but r1 flips byte 100 of the 45th data segment.",
        topology="single-path",
        middleboxes=(("r1", lambda: FlipPayloadBytes(dst_port=5001, nth=45, offset=100)),),
        transfers=(EncryptedTransfer(name=TRANSFER, size_bytes=SIZE, expect="aborted"),),
    ),
}


def replay(run: str, seed: int = SEED) -> TraceQuery:
    return SimReplay(RUNS[run], seed=seed).finish()


def as_dicts(q: TraceQuery) -> list[dict[str, Any]]:
    """The records as the attendee's check() receives them."""
    return [{"t": r.t, "node": r.node, "layer": r.layer, "name": r.name, "data": r.data} for r in q.records]


def truth(q: TraceQuery) -> dict[str, Any]:
    """The answers, from the full trace and the run's own byte comparison. Raises ValueError when
    nothing failed authentication."""
    error = q.first(layer="tcpcrypt", name="error", reason="authentication_failed")
    if error is None:
        raise ValueError("no frame failed authentication in this run")
    match = FRAME_OFFSET.search(error.data.get("detail", ""))
    conn = error.data["conn"]
    reset = q.first(
        layer="tcp", name="segment_sent", node=error.node, conn=conn, after=error.t, flags=lambda f: "R" in f
    )
    fin = q.first(layer="tcp", name="segment_sent", node=error.node, conn=conn, after=error.t, flags=lambda f: "F" in f)
    flipped = q.first(layer="middlebox", name="segment_sent", action="rewritten")
    return {
        "detected_by": error.node,
        "failed_frame_offset": int(match.group(1)) if match else None,
        "reason": error.data["reason"],
        "corrupted_bytes_delivered": q.extra["results"][TRANSFER]["corrupted_bytes_delivered"],
        "how_it_ended": "reset" if reset is not None else "fin" if fin is not None else "timeout",
        "flipped_offset": flipped.data.get("flipped_offset") if flipped else None,
    }
