"""Grader for tcpcrypt_tamper: ``python -m exercises.tcpcrypt_tamper.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, main_for
from exercises.tcpcrypt_tamper import scenario

FIELDS = ("detected_by", "failed_frame_offset", "reason", "corrupted_bytes_delivered", "how_it_ended")


# the run does not depend on the submission: once per grading process (a grade of many attendees)
_replay = functools.cache(scenario.replay)


def collect(sub: Submission) -> Answers:
    runs = {name: _replay(name) for name in scenario.RUNS}
    truth = {name: scenario.truth(q) for name, q in runs.items()}
    results = sub.call_many([("check", [scenario.as_dicts(q)]) for q in runs.values()])
    answers: dict[str, Any] = {}
    errors: dict[str, SubmissionError] = {}
    for name, value in zip(runs, results):
        if isinstance(value, SubmissionError):
            errors[name] = value
        elif not isinstance(value, dict):
            errors[name] = SubmissionError("bad_result", f"check() returned a {type(value).__name__}, not a dict")
        else:
            answers[name] = value
    return Answers(answers, truth=truth, errors=errors)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, str):
        return isinstance(got, str) and got.strip().lower() == want
    if isinstance(want, int):
        return isinstance(got, int) and not isinstance(got, bool) and got == want
    return got == want


def field(key: str, hints: Callable[[Any, dict[str, Any]], str | None] | None = None):
    def passed(a: Answers) -> tuple[bool, str]:
        seen = []
        for run in scenario.RUNS:
            got, want = a.answer(run).get(key), a.truth[run][key]
            if got is None:
                return False, f"{run}: {key}: no answer yet"
            if not _same(got, want):
                hint = hints(got, a.truth[run]) if hints else None
                return False, f"{run}: {key}: you answered {got!r}" + (f". {hint}" if hint else ", which is not it")
            seen.append(f"{run}: {want!r}")
        return True, f"{key}: " + ", ".join(seen)

    return passed


def offset_hint(got: Any, truth: dict[str, Any]) -> str | None:
    if got == truth["flipped_offset"]:
        return "That is where r1 flipped the byte inside one TCP segment's payload, not where the frame starts"
    return None


def corrupted_hint(got: Any, truth: dict[str, Any]) -> str | None:
    if got == 1:
        return "One byte was flipped on the wire, but a frame whose tag does not verify is never released"
    if isinstance(got, int) and got > 1:
        return "Those bytes may have arrived, but arrived intact: only a frame that verified is delivered"
    return None


def ended_hint(got: Any, truth: dict[str, Any]) -> str | None:
    if isinstance(got, str) and got.strip().lower() in ("fin", "timeout"):
        return "Look at the segment the detecting host sends right after tcpcrypt's error record: its flags"
    return None


CHECKS = (
    Check(
        "who detected the tampering",
        field("detected_by"),
        "Only the receiver of the tampered frame can check its tag: look for the tcpcrypt error record and its node.",
    ),
    Check(
        "the frame that failed authentication",
        field("failed_frame_offset", offset_hint),
        "The tcpcrypt error record's detail names the frame by its offset in the sender's stream. Frames are not "
        "segments: one frame spans many TCP segments (RFC 8548 §4.2).",
        points=2,
    ),
    Check(
        "the recorded reason",
        field("reason"),
        "Take the 'reason' of the tcpcrypt error record; docs/trace.md lists the values.",
    ),
    Check(
        "corrupted bytes delivered",
        field("corrupted_bytes_delivered", corrupted_hint),
        "RFC 8548 §3.6: a receiver decrypts and verifies a whole frame before it hands any of it to the "
        "application, and a frame that fails ends the connection.",
        points=2,
    ),
    Check(
        "how the connection ended",
        field("how_it_ended", ended_hint),
        "After the AEAD check fails, tcpcrypt aborts: what does the detecting host send on the connection, and "
        "what does h1's TCP record when it arrives?",
    ),
)

EXERCISE = Exercise(
    name="tcpcrypt_tamper",
    title="Show from the trace that tcpcrypt never delivers a flipped byte",
    topic="eno",
    minutes=20,
    rfcs=("RFC 8548 §3.6, §4.2", "RFC 8547 Security Considerations"),
    collect=collect,
    checks=CHECKS,
    needs_scenario=True,
    no_mininet=(
        "its answers are checked against the simulator middlebox's record of the byte it flipped, "
        "which the Mininet forwarder keeps out of the run's trace"
    ),
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
