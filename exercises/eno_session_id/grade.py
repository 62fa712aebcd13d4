"""Grader for eno_session_id: ``python -m exercises.eno_session_id.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exercises.eno_session_id import scenario
from exercises.grading import Answers, Check, Exercise, Submission, SubmissionError, compare_field, main_for
from lab.trace import write_records

SESSION_ID_BYTES = 33  # the TEP byte and 32 bytes of CPRF output (RFC 8548 §3.4)


# the run does not depend on the submission: once per grading process (a grade of many attendees)
_replay = functools.cache(scenario.replay)


def collect(sub: Submission) -> Answers:
    q = _replay()  # the grader's seed, never the working copy's
    truth = scenario.truth(q)
    got = sub.call("answers")
    if not isinstance(got, dict):
        raise SubmissionError("bad_result", f"answers() returned a {type(got).__name__}, not a dict")
    ids = {_hex(got.get(k)) for k in ("session_id_h1", "session_id_h2")} - {None, _hex(truth["session_id_h1"])}
    if ids:  # a wrong session ID: is it the one of a run without --seed?
        truth["default_seed_session_id"] = scenario.truth(_replay(seed=scenario.DEFAULT_RUN_SEED))["session_id_h1"]
    return Answers(got, truth=truth)


def _hex(value: Any) -> str | None:
    """Hex digits of ``value`` in lower case: '0x', spaces, colons and dashes dropped; None if not hex."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"[\s:\-]", "", value.strip().lower())
    text = text.removeprefix("0x")
    return text if text and re.fullmatch(r"[0-9a-f]+", text) and len(text) % 2 == 0 else None


def session_id(key: str) -> Callable[[Answers], tuple[bool, str]]:
    def passed(a: Answers) -> tuple[bool, str]:
        got, want = a.answer(key), a.truth[key]
        if got is None:
            return False, f"{key}: no answer yet"
        digits = _hex(got)
        if digits is None:
            return False, f"{key}: {got!r} is not a hex string"
        if digits == want:
            return True, f"{key} = {want}"
        n = len(digits) // 2
        if digits == a.truth.get("default_seed_session_id"):
            return (
                False,
                f"{key}: that is the session ID of a run with seed {scenario.DEFAULT_RUN_SEED}: use --seed 8547",
            )
        if n == SESSION_ID_BYTES - 1 and want.endswith(digits):
            return False, f"{key}: {n} bytes, the CPRF output without the TEP byte that leads a session ID"
        if n != SESSION_ID_BYTES:
            return False, f"{key}: you gave {n} bytes; a tcpcrypt session ID has {SESSION_ID_BYTES}"
        if digits[:2] != want[:2]:
            return False, f"{key}: it starts with 0x{digits[:2]}; a session ID starts with the negotiated TEP's byte"
        return False, f"{key}: {n} bytes as it should be, but not this run's session ID (another seed's?)"

    return passed


def tep(a: Answers) -> tuple[bool, str]:
    got, want = a.answer("tep"), int(a.truth["tep"], 16)
    if got is None:
        return False, "tep: no answer yet"
    value: int | None = None
    if isinstance(got, int) and not isinstance(got, bool):
        value = got
    elif isinstance(got, str):
        try:
            value = int(got.strip(), 16)
        except ValueError:
            return False, f"tep: give the identifier (such as '0x21'), not {got!r}"
    if value == want:
        return True, f"tep = 0x{want:02x}"
    if value == 0x21:
        return False, "tep: 0x21 is in h1's offer, but h2 (host B) chose from its own list"
    return False, f"tep: you answered {got!r}, which is not it"


def field(key: str, *, hints: dict[Any, str] | None = None) -> Callable[[Answers], tuple[bool, str]]:
    def passed(a: Answers) -> tuple[bool, str]:
        return compare_field(a, key, hints=hints)

    return passed


CHECKS = (
    Check(
        "h1's session ID",
        session_id("session_id_h1"),
        "h1 records its keys in a tcpcrypt key_updated record once Init2 has arrived; the ENO layer repeats the "
        "session ID when h1 goes to 'encrypted'. Take the value from the trace of the run with seed 8547.",
        points=2,
    ),
    Check(
        "h2's session ID",
        session_id("session_id_h2"),
        "Same record, node h2. RFC 8547 (Session IDs, §5.1): both ends must end up with the same value, or the TEP failed.",
    ),
    Check(
        "the negotiated TEP",
        tep,
        "The eno state_updated record where h1 agrees names the TEP; it is also the first byte of the session ID "
        "(RFC 8548 §3.4).",
    ),
    Check(
        "h1's ENO role",
        field("role_h1", hints={"B": "h2 set the b bit in its SYN-ACK, so h2 is host B (RFC 8547 §4.3)."}),
        "Roles come from the b bit of the global suboption (RFC 8547 §4.3): look at both SYN-form options, "
        "or at the 'role' of h1's agreement record.",
    ),
    Check(
        "the AEAD algorithm",
        field("aead"),
        "Init1 lists the AEAD algorithms h1 can run, Init2 names the one h2 picked (RFC 8548 §4.1); key_updated "
        "repeats it.",
    ),
)


def prepare(directory: Path) -> None:
    with open(directory / "trace.jsonl", "w", encoding="utf-8") as fh:
        write_records(fh, scenario.replay().records)


EXERCISE = Exercise(
    name="eno_session_id",
    title="Read the tcpcrypt session ID at both ends of an ENO connection",
    topic="eno",
    minutes=15,
    rfcs=("RFC 8547 §4.3, §5.1", "RFC 8548 §3.3, §3.4"),
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
