"""Grader for eno_tep: ``python -m exercises.eno_tep.grade [DIR] [--json]``."""

from __future__ import annotations

import random
import secrets
import sys
from collections.abc import Callable

from exercises.eno_tep import scenario
from exercises.eno_tep.scenario import Case
from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, main_for

RANDOM_CASES = 40


def collect(sub: Submission) -> Answers:
    rng = random.Random(secrets.randbits(64))  # fresh every time: answers cannot be typed in
    groups = dict(scenario.CASES)
    groups["random offers"] = scenario.random_cases(rng, RANDOM_CASES)
    flat = [(group, case) for group, cases in groups.items() for case in cases]
    results = sub.call_many([("predict", [case.client, case.server]) for _, case in flat])
    answers: dict[str, object] = {}
    errors: dict[str, SubmissionError] = {}
    for (group, case), value in zip(flat, results):
        key = f"{group}/{case.label}"
        if isinstance(value, SubmissionError):
            errors[key] = value
        else:
            answers[key] = value
    return Answers(answers, truth={"groups": groups}, errors=errors)


def _show(tep: object) -> str:
    if isinstance(tep, int) and not isinstance(tep, bool):
        return f"0x{tep:02x}"
    return "None (fallback)" if tep is None else repr(tep)


def group_check(group: str) -> Callable[[Answers], tuple[bool, str]]:
    def passed(a: Answers) -> tuple[bool, str]:
        cases: list[Case] = a.truth["groups"][group]
        for case in cases:
            got = a.answer(f"{group}/{case.label}")
            if got != case.expected or isinstance(got, bool):
                return False, (
                    f"{case.label}: SYN option {case.client.hex()}, SYN-ACK option {case.server.hex()}; "
                    f"you predicted {_show(got)}, ENO negotiates {_show(case.expected)}"
                )
        return True, f"{len(cases)} cases"

    return passed


CHECKS = (
    Check(
        "one common TEP",
        group_check("one common TEP"),
        "Start simple: when exactly one TEP identifier is in both options, that one is negotiated (RFC 8547 §4.5).",
    ),
    Check(
        "host B's order decides",
        group_check("host B's order decides"),
        "RFC 8547 §4.5: host B lists TEPs in increasing order of preference and the negotiated TEP is the *last* "
        "valid one in B's option that A also offered. A's order plays no part.",
        points=2,
    ),
    Check(
        "roles come from the b bits",
        group_check("roles come from the b bits"),
        "Host B is whoever set the b bit in its global suboption (RFC 8547 §4.3), not necessarily the passive opener. "
        "Look at the first suboption byte of each option: 0x01 means b = 1.",
        points=2,
    ),
    Check(
        "fallback to plain TCP",
        group_check("fallback to plain TCP"),
        "RFC 8547 §4.6: ENO is disabled when both hosts sent the same b bit, when no TEP is common, "
        "or when an option has no TEP at all. Return None then.",
        points=2,
    ),
    Check(
        "suboptions with data",
        group_check("suboptions with data"),
        "A TEP with v = 1 carries data (RFC 8547 §4.4); matching uses the TEP identifier only, never the v bit or "
        "the data (RFC 8548 §3.2).",
    ),
    Check(
        "random offers",
        group_check("random offers"),
        "Forty fresh random pairs: if the fixed cases pass and these do not, compare the failing case with "
        "RFC 8547 §4.6 step by step.",
        points=2,
    ),
)

EXERCISE = Exercise(
    name="eno_tep",
    title="Predict the TEP that TCP-ENO negotiates from two SYN options",
    topic="eno",
    minutes=20,
    rfcs=("RFC 8547 §4.2-§4.6", "RFC 8548 §3.2"),
    collect=collect,
    checks=CHECKS,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
