"""Grader for ike_fallback_timeline: ``python -m exercises.ike_fallback_timeline.grade [DIR] [--json]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, compare_field, main_for
from exercises.ike_fallback_timeline import scenario

TOLERANCE_S = 0.01


def collect(sub: Submission) -> Answers:
    got = sub.call("answers")
    if not isinstance(got, dict):
        raise SubmissionError("bad_result", f"answers() returned a {type(got).__name__}, not a dict")
    return Answers(got, truth=scenario.truth())


def field(key: str, *, tolerance: float = 0.0, hints: dict[Any, str] | None = None):
    def passed(a: Answers) -> tuple[bool, str]:
        return compare_field(a, key, tolerance=tolerance, hints=hints)

    return passed


def gaps(a: Answers) -> tuple[bool, str]:
    got, want = a.answer("udp_gaps_s"), a.truth["udp_gaps_s"]
    if got is None:
        return False, "udp_gaps_s: no answer yet"
    if not isinstance(got, list) or not all(isinstance(g, (int, float)) for g in got):
        return False, f"udp_gaps_s: give a list of numbers, not {got!r}"
    if len(got) != len(want):
        return False, f"udp_gaps_s: {len(got)} gaps; n attempts have n - 1 gaps between them"
    off = [f"gap {i + 1}: {g} s" for i, (g, w) in enumerate(zip(got, want)) if abs(g - w) > TOLERANCE_S]
    return (not off), "; ".join(off) or f"udp_gaps_s = {got}"


CHECKS = (
    Check(
        "UDP attempts before giving up",
        field("udp_attempts", hints={3: "Count the first transmission too, not only the retransmissions."}),
        "Count the UDP packets to port 500 that carry IKE_SA_INIT requests (the same 240 bytes each time).",
    ),
    Check(
        "the retransmission gaps",
        gaps,
        "Subtract consecutive UDP times. The gaps grow: the initiator backs off between retransmissions "
        "(RFC 7296 §2.1 leaves the exact timers to the implementation).",
    ),
    Check(
        "from the first UDP attempt to TCP",
        field(
            "tcp_after_s",
            tolerance=TOLERANCE_S,
            hints={4.005: "That is the time from the first to the last UDP attempt, not to the SYN."},
        ),
        "This is what a user behind a UDP-blocking hotspot waits before the first TCP packet: SYN time minus the "
        "first UDP time. RFC 9329 §5 (applicability) discusses falling back from UDP.",
    ),
    Check(
        "the wait after the last UDP attempt",
        field("wait_after_last_udp_s", tolerance=TOLERANCE_S),
        "After its last retransmission the initiator still waits for an answer before it gives up: SYN time "
        "minus the last UDP time. Compare it with the gaps.",
    ),
    Check(
        "the TCP port",
        field("tcp_port", hints={500: "IKE over TCP does not use 500."}),
        "RFC 9329 §2: TCP encapsulation uses the same port as UDP encapsulation does by default, 4500.",
    ),
    Check(
        "the stream prefix",
        field("first_tcp_payload"),
        "The first 6 payload bytes of the initiator's TCP connection, read as ASCII (RFC 9329 §4).",
    ),
    Check(
        "what this capture's framing is missing",
        field(
            "missing_field",
            hints={
                "marker": "The four zero bytes are there: that is the non-ESP marker.",
                "prefix": "The prefix is there: the 6-byte payload of the first data segment.",
            },
        ),
        "RFC 9329 §3: every message is Length (2 bytes) then, for IKE, the non-ESP marker (4 zero bytes). Look at "
        "the first bytes of the second data segment.",
        points=2,
    ),
)


def prepare(directory: Path) -> None:
    (directory / "capture.txt").write_text(scenario.listing())


EXERCISE = Exercise(
    name="ike_fallback_timeline",
    title="Read the UDP-to-TCP fallback timeline of a real IKE initiator",
    topic="ike",
    minutes=15,
    rfcs=("RFC 9329 §2-§5", "RFC 7296 §2.1"),
    files=("capture.pcap",),
    collect=collect,
    checks=CHECKS,
    prepare=prepare,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
