"""Grader for tcp_trace_questions: ``python -m exercises.tcp_trace_questions.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, compare_field, main_for
from exercises.tcp_trace_questions import scenario
from lab.trace import write_records

# the run does not depend on the submission: once per grading process (a grade of many attendees)
_replay = functools.cache(scenario.replay)


def collect(sub: Submission) -> Answers:
    q = _replay()  # the grader's seed and topology, never the working copy's
    got = sub.call("answers")
    if not isinstance(got, dict):
        raise SubmissionError("bad_result", f"answers() returned a {type(got).__name__}, not a dict")
    return Answers(got, truth=scenario.truth(q))


def field(key: str, *, tolerance: float = 0.0, hints: dict[Any, str] | None = None):
    def passed(a: Answers) -> tuple[bool, str]:
        return compare_field(a, key, tolerance=tolerance, hints=hints)

    return passed


CHECKS = (
    Check(
        "h2's MSS",
        field(
            "mss_h2",
            hints={
                1448: "1448 is the payload of a full-sized segment; MSS also counts the options "
                "every segment carries (RFC 9293 §3.7.1, RFC 7323 appendix A)."
            },
        ),
        "The MSS is hidden, but h1's full-sized data segments are visible: what fills the rest of the MSS? "
        "RFC 9293 §3.7.1 says what the MSS counts.",
    ),
    Check(
        "h2's window scale shift",
        field("wscale_h2"),
        "h1's metrics_updated shows snd_wnd, the window after scaling; h2's segments show the raw 16-bit win. "
        "RFC 7323 §2.3: the window is shifted left by the announced count.",
    ),
    Check(
        "the SYN-ACK's acknowledgment number",
        field("synack_ack"),
        "The SYN-ACK acknowledges h1's SYN: find h1's SYN and remember that a SYN occupies one sequence number "
        "(RFC 9293 §3.4).",
    ),
    Check(
        "the handshake RTT",
        field(
            "handshake_rtt_ms",
            tolerance=0.01,
            hints={
                40.0: "40 ms is the propagation delay alone: each packet also takes time to be serialized on "
                "each of the two links, both ways."
            },
        ),
        "h1 sends the SYN and later receives the SYN-ACK: subtract the two t values (seconds) and give milliseconds.",
    ),
    Check(
        "retransmitted data segments",
        field("retransmitted_segments"),
        "Follow h1's segment_sent records with data: a segment whose start lies below the highest byte already "
        "sent is a retransmission. Work in relative sequence numbers (seq minus h1's ISN, modulo 2**32).",
        points=2,
    ),
    Check(
        "data segments lost on the path",
        field("lost_data_packets"),
        "The drop records are hidden, but both ends' records are there: compare the data segments h1 sent with "
        "the data segments h2 received.",
        points=2,
    ),
)


def prepare(directory: Path) -> None:
    with open(directory / "trace.jsonl", "w", encoding="utf-8") as fh:
        write_records(fh, scenario.masked(scenario.replay()))


EXERCISE = Exercise(
    name="tcp_trace_questions",
    title="Trace questions: hidden MSS, window scale, RTT and losses of a lossy TCP run",
    topic="tcp",
    minutes=25,
    rfcs=("RFC 9293 §3.4, §3.7.1", "RFC 7323 §2, appendix A", "RFC 2018", "RFC 6675"),
    collect=collect,
    checks=CHECKS,
    prepare=prepare,
    needs_scenario=True,
    no_mininet=(
        "its questions are about the simulator trace handed out in your working directory, "
        "and a Mininet run is another run with other timings"
    ),
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
