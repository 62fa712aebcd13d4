"""Grader for ike_race: ``python -m exercises.ike_race.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, compare_field, main_for
from exercises.ike_race import scenario
from lab.trace import write_records

RTT_TOLERANCE_MS = 1.0
RTTS_TOLERANCE = 0.5
SECONDS_TOLERANCE = 0.01


# the run does not depend on the submission: once per grading process (a grade of many attendees)
_replay = functools.cache(scenario.replay)


def collect(sub: Submission) -> Answers:
    q = _replay()  # the grader's seed and scenario, never the working copy's
    got = sub.call("answers")
    if not isinstance(got, dict):
        raise SubmissionError("bad_result", f"answers() returned a {type(got).__name__}, not a dict")
    return Answers(got, truth=scenario.truth(q))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def in_rtts(session: str) -> Callable[[Answers], tuple[bool, str]]:
    key = f"{session}_rtts"

    def passed(a: Answers) -> tuple[bool, str]:
        got, want = a.answer(key), a.truth[key]
        if got is None:
            return False, f"{key}: no answer yet"
        if not _number(got):
            return False, f"{key}: give a number of RTTs, not {got!r}"
        if abs(got - want) <= RTTS_TOLERANCE:
            return True, f"{key} = {got} (the grader measured {want})"
        times, rtt = a.truth["seconds"][session], a.truth["seconds"]["rtt"]
        if any(abs(got - times[k]) <= SECONDS_TOLERANCE for k in ("init_s", "established_s")):
            return False, f"{key}: you answered {got}, which is a time in seconds: divide it by the RTT"
        if abs(got - times["init_s"] / rtt) <= RTTS_TOLERANCE:
            return False, (
                f"{key}: you answered {got}, the time until IKE_SA_INIT completed; the SA is established only "
                "after IKE_AUTH, one more round trip"
            )
        return False, f"{key}: you answered {got}, which is not within {RTTS_TOLERANCE} RTT of it"

    return passed


def rtt(a: Answers) -> tuple[bool, str]:
    got = a.answer("rtt_ms")
    if _number(got) and abs(got - a.truth["rtt_ms"] / 1000) <= RTT_TOLERANCE_MS / 1000:
        return False, f"rtt_ms: you answered {got}, which looks like seconds: give milliseconds"
    return compare_field(
        a,
        "rtt_ms",
        tolerance=RTT_TOLERANCE_MS,
        hints={20.0: "20 ms is the one-way delay; a round trip goes there and back."},
    )


def field(key: str, *, tolerance: float = 0.0, hints: dict[Any, str] | None = None):
    def passed(a: Answers) -> tuple[bool, str]:
        return compare_field(a, key, tolerance=tolerance, hints=hints)

    return passed


CHECKS = (
    Check(
        "the path's RTT",
        rtt,
        "The iketcp 'connected' record of a session says how long its TCP connect took (after_s, seconds): "
        "SYN out, SYN-ACK back, one round trip.",
    ),
    Check(
        "sequential: time to the established SA, in RTTs",
        in_rtts("sequential"),
        "From the session's 'connect' record to the ESTABLISHED transition of the SA that won, divided by the RTT. "
        "The 'won' record marks IKE_SA_INIT only; find the SA that went to AUTH_SENT at that instant.",
        points=2,
    ),
    Check(
        "racing: time to the established SA, in RTTs",
        in_rtts("racing"),
        "The same for the racing session: connect, TCP handshake after the head start, IKE_SA_INIT, IKE_AUTH.",
        points=2,
    ),
    Check(
        "the transport that won the race",
        field(
            "racing_winner",
            hints={"udp": "UDP started first, but the hotspot drops it: look at the racing session's 'won' record."},
        ),
        "The racing session's 'won' record names the transport; its 'abandoned' record names the loser.",
    ),
    Check(
        "how long sequential waited for UDP",
        field(
            "sequential_udp_wait_s",
            tolerance=SECONDS_TOLERANCE,
            hints={
                1.5: "1.5 s is the last UDP retransmission; the attempt gives up only when udp_timeout_s runs out.",
                3: "Count the time, not the IKE_SA_INIT transmissions.",
            },
        ),
        "The sequential session's UDP attempt ends with a 'timeout' record; TCP starts at the same instant "
        "(RFC 7296 §2.1 leaves the timers to the implementation).",
    ),
)


def prepare(directory: Path) -> None:
    with open(directory / "trace.jsonl", "w", encoding="utf-8") as fh:
        write_records(fh, scenario.replay().records)


EXERCISE = Exercise(
    name="ike_race",
    title="Sequential against racing fallback from UDP to TCP, in round trips",
    topic="ike",
    minutes=20,
    rfcs=("RFC 9329 §5, §6.1", "RFC 7296 §1.2, §2.1", "RFC 8305 §5"),
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
