"""Grader for mptcp_fallback_fix: ``python -m exercises.mptcp_fallback_fix.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import sys
from typing import Any

from exercises.grading import (
    Answers,
    Check,
    Exercise,
    SimReplay,
    Submission,
    SubmissionError,
    TraceQuery,
    compare_field,
    main_for,
)
from exercises.mptcp_fallback_fix import scenario as sc
from lab.errors import ConfigError

MPTCP_KIND = 30
FIELDS = ("middlebox", "stripped_segment", "reason_h2", "reason_h1")


def segment_kind(data: dict[str, Any]) -> str:
    flags = str(data.get("flags", ""))
    if "S" in flags:
        return "SYN/ACK" if "A" in flags else "SYN"
    return "data" if data.get("len") else "ACK"


def _has_kind(data: dict[str, Any], kind: int) -> bool:
    return any(o.get("kind") == kind for o in data.get("options", []))


def truth_from(q: TraceQuery) -> dict[str, Any]:
    """The answers, read from the broken run's trace."""
    rewritten = q.first(layer="middlebox", name="segment_sent", stripped_kinds=lambda k: MPTCP_KIND in k)
    stripped = None
    for got in q.select(layer="tcp", name="segment_received"):
        if _has_kind(got.data, MPTCP_KIND):
            continue
        sender = "h1" if got.node == "h2" else "h2"
        sent = q.first(
            layer="tcp",
            name="segment_sent",
            node=sender,
            before=got.t,
            seq=got.data.get("seq"),
            flags=got.data.get("flags"),
            options=lambda o: any(x.get("kind") == MPTCP_KIND for x in o),
        )
        if sent is not None:
            stripped = segment_kind(got.data)
            break
    reasons = {}
    for node in ("h1", "h2"):
        rec = q.first(layer="mptcp", name="state_updated", node=node, fallback=lambda x: bool(x))
        reasons[node] = rec.data["fallback"] if rec else None
    return {
        "middlebox": rewritten.node if rewritten else None,
        "stripped_segment": stripped,
        "reason_h2": reasons["h2"],
        "reason_h1": reasons["h1"],
    }


def firewall_settings(value: Any) -> dict[str, Any]:
    """``firewall()``'s result as StripTcpOptions settings. Raises SubmissionError."""
    if not isinstance(value, dict) or "kinds" not in value:
        raise SubmissionError("bad_result", 'firewall() must return a dict like {"kinds": [253, 254], "when": "all"}')
    settings = {"kinds": value["kinds"], "when": value.get("when", "all")}
    try:
        if not isinstance(settings["kinds"], list) or not all(isinstance(k, int) for k in settings["kinds"]):
            raise TypeError("kinds must be a list of option kinds (integers)")
        sc.firewall(settings)
    except (ConfigError, TypeError, ValueError) as exc:
        raise SubmissionError("bad_result", f"firewall() is not a valid StripTcpOptions setting: {exc}") from None
    return settings


@functools.cache
def _broken_run() -> TraceQuery:
    """The run with the site's firewall: it does not depend on the submission, so once per process."""
    return SimReplay(sc.scenario(sc.FIREWALL), seed=sc.SEED).finish()


def collect(sub: Submission) -> dict[str, Any]:
    got_answers, got_firewall = sub.call_many([("answers", []), ("firewall", [])])
    # the questions are about the simulator's trace (its middlebox records which segment it rewrote)
    broken = _broken_run()
    errors = {}
    values: dict[str, Any] = {}
    if isinstance(got_answers, SubmissionError):
        errors = {k: got_answers for k in FIELDS}
    elif not isinstance(got_answers, dict):
        bad = SubmissionError("bad_result", f"answers() must return a dict, got a {type(got_answers).__name__}")
        errors = {k: bad for k in FIELDS}
    else:
        values = got_answers
    answers = Answers(values, truth_from(broken), errors)
    fixed: TraceQuery | SubmissionError
    try:
        if isinstance(got_firewall, SubmissionError):
            raise got_firewall
        settings = firewall_settings(got_firewall)
        fixed = sub.replay(sc.scenario(settings), seed=sc.SEED).finish()
        fixed.extra["firewall"] = settings
    except SubmissionError as exc:
        fixed = exc
    return {"answers": answers, "fixed": fixed}


def field_check(key: str, hints: dict[Any, str] | None = None):
    def passed(ev: dict[str, Any]) -> tuple[bool, str]:
        return compare_field(ev["answers"], key, hints=hints)

    return passed


def _fixed(ev: dict[str, Any]) -> TraceQuery:
    if isinstance(ev["fixed"], SubmissionError):
        raise ev["fixed"]
    return ev["fixed"]


def mptcp_survives(ev: dict[str, Any]) -> tuple[bool, str]:
    q = _fixed(ev)
    problems = []
    for node in ("h1", "h2"):
        rec = q.first(layer="mptcp", name="state_updated", node=node, fallback=lambda x: bool(x))
        if rec is not None:
            problems.append(f"{node} fell back to TCP at {rec.t:.3f} s: {rec.data['fallback']}")
    paths = set()
    for rec in q.select(layer="mptcp", name="state_updated", node="h1", to="ESTABLISHED"):
        local = str(rec.data.get("subflow", "")).split(":")[0]
        paths |= {p for p, (a, _b) in sc.PATHS.items() if a == local}
    if paths != {"A", "B"}:
        problems.append(f"h1 established subflows on path(s) {', '.join(sorted(paths)) or 'none'}, not on A and B")
    res = q.extra["results"]["bulk"]
    if not res.get("sha256_match"):
        problems.append(f"h2 got {res['bytes_received']} of {res['bytes_expected']} bytes")
    if problems:
        return False, "; ".join(problems)
    return True, "no fallback, one subflow per path, every byte delivered (SHA-256)"


def policy_kept(ev: dict[str, Any]) -> tuple[bool, str]:
    settings = _fixed(ev).extra["firewall"]
    missing = [k for k in sc.POLICY_KINDS if k not in settings["kinds"]]
    if missing or settings["when"] != "all":
        return False, f"r1 now strips {sorted(settings['kinds'])} on {settings['when']} segments"
    return True, f"r1 strips {sorted(settings['kinds'])} on all segments"


CHECKS = (
    Check(
        "the middlebox",
        field_check("middlebox", {"r2": "r2 is on path B; which router does the initial subflow cross?"}),
        "Look for the layer 'middlebox' records: which node rewrote a segment?",
    ),
    Check(
        "the segment that lost option 30",
        field_check(
            "stripped_segment",
            {
                "SYN/ACK": "h1 complains about the SYN/ACK, but h2 fell back first: what did h2 receive?",
                "ACK": "Earlier than that: compare h1's first segment as sent and as h2 received it.",
            },
        ),
        "Compare h1's tcp segment_sent records with h2's segment_received ones: which is the first segment "
        "that left with option 30 (MP_CAPABLE) and arrived without it?",
        points=2,
    ),
    Check(
        "h2's fallback reason",
        field_check("reason_h2", {"no MP_CAPABLE in the SYN/ACK": "That is h1's reason."}),
        "h2's mptcp state_updated record with a 'fallback' field, word for word.",
    ),
    Check(
        "h1's fallback reason",
        field_check("reason_h1", {"no MP_CAPABLE in the SYN": "That is h2's reason."}),
        "h1's mptcp state_updated record with a 'fallback' field, word for word.",
    ),
    Check(
        "MPTCP survives the firewall",
        mptcp_survives,
        "With your FIREWALL, neither end may fall back, h1 must have a subflow on each path and every byte must "
        "arrive. Which option kind carries every MPTCP signal (RFC 8684 §3), and on which segments must it "
        "survive (SYN only is not enough: look at §3.7)?",
        points=3,
    ),
    Check(
        "the site policy still holds",
        policy_kept,
        "Fix the firewall, do not switch it off: options 253 and 254 must still be stripped on every segment.",
    ),
)

EXERCISE = Exercise(
    name="mptcp_fallback_fix",
    title="Explain and fix an MPTCP fallback caused by a middlebox",
    topic="mptcp",
    minutes=20,
    rfcs=("RFC 8684 §3.7", "RFC 8684 §3.1", "RFC 8684 §3"),
    collect=collect,
    checks=CHECKS,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
