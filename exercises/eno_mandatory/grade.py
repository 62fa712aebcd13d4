"""Grader for eno_mandatory: ``python -m exercises.eno_mandatory.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from exercises.eno_mandatory import scenario
from exercises.grading import (
    Answers,
    Check,
    Exercise,
    SimReplay,
    Submission,
    SubmissionError,
    TraceQuery,
    ip_packets,
    main_for,
)
from lab.eno.extension import EnoConfig
from lab.errors import LabError
from lab.stack.apps import bulk_payload
from lab.wire.ip import decode_ip, ip_protocol
from lab.wire.tcp import TCP_PROTOCOL, decode_segment


def client_config(value: Any) -> EnoConfig:
    """The EnoConfig ``client_config()`` describes. Raises SubmissionError saying what is wrong with it."""
    if not isinstance(value, dict):
        raise SubmissionError("bad_result", f"client_config() returned a {type(value).__name__}, not a dict")
    unknown = sorted(set(value) - set(scenario.ALLOWED_FIELDS))
    if unknown:
        raise SubmissionError(
            "bad_result", f"client_config(): unknown field(s) {unknown}; use {', '.join(scenario.ALLOWED_FIELDS)}"
        )
    kwargs = dict(value)
    if "teps" in kwargs:
        teps = kwargs["teps"]
        if not isinstance(teps, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in teps):
            raise SubmissionError(
                "bad_result", f"client_config(): teps must be a list of TEP identifiers, not {teps!r}"
            )
        kwargs["teps"] = tuple(teps)
    for flag in ("application_aware", "require_application_aware", "experimental_encoding"):
        if flag in kwargs and not isinstance(kwargs[flag], bool):
            raise SubmissionError("bad_result", f"client_config(): {flag} must be True or False")
    try:
        return EnoConfig(**kwargs)
    except (LabError, TypeError, ValueError) as exc:
        raise SubmissionError("bad_result", f"client_config(): {exc}") from None


def plaintext_crossing(pcaps: list[Path], secret: bytes) -> tuple[int, int]:
    """(segments, bytes) of TCP payload that are a piece of ``secret`` as sent, on the interface of r1 that saw most."""
    most = (0, 0)
    for path in pcaps:
        segments = total = 0
        for raw in ip_packets(path):
            ip = decode_ip(raw)
            if ip_protocol(ip) != TCP_PROTOCOL:
                continue
            payload = decode_segment(ip.payload).payload
            if payload and payload in secret:
                segments += 1
                total += len(payload)
        most = max(most, (segments, total), key=lambda st: st[1])
    return most


@functools.cache
def _reference_run() -> TraceQuery:
    """The refusal with the reference setting: it does not depend on the submission, so once per process."""
    return SimReplay(scenario.stripped(EnoConfig(policy="mandatory")), seed=scenario.SEED).finish()


def collect(sub: Submission) -> Answers:
    calls = sub.call_many([("client_config", []), ("answers", [])])
    errors: dict[str, SubmissionError] = {}
    answers: dict[str, Any] = {}
    if isinstance(calls[1], SubmissionError):
        errors["refusal_reason"] = calls[1]
    elif isinstance(calls[1], dict):
        answers["refusal_reason"] = calls[1].get("refusal_reason")
    else:
        errors["refusal_reason"] = SubmissionError("bad_result", "answers() must return a dict")
    if isinstance(calls[0], SubmissionError):
        raise calls[0]
    config = client_config(calls[0])
    secret = bulk_payload(scenario.SECRET_BYTES, sub.seed(scenario.SEED) * 1000003)  # the first result's bytes
    with tempfile.TemporaryDirectory(prefix="tcplab-eno-mandatory-") as tmp:
        replay = sub.replay(scenario.stripped(config), seed=scenario.SEED, pcap_dir=Path(tmp))
        stripped = replay.finish()
        crossed = plaintext_crossing([Path(tmp) / f"{name}.pcap" for name in scenario.ROUTER_INTERFACES], secret)
    clean = sub.replay(scenario.clean(config), seed=scenario.SEED).finish()
    if clean.extra["results"][scenario.TRANSFER]["sha256_expected"] != hashlib.sha256(secret).hexdigest():
        raise RuntimeError("the secret the grader looks for is not the one the run sends")
    # the reason a refusal records is a fact of the protocol, not of the network: the simulator tells it
    reference = _reference_run()
    refused = reference.first(layer="eno", name="state_updated", node=scenario.CLIENT, to="refused")
    truth = {
        "stripped": stripped,
        "clean": clean,
        "crossed": crossed,
        "refusal_reason": refused.data["reason"] if refused else None,
    }
    return Answers(answers, truth=truth, errors=errors)


def _client_conn(q: TraceQuery) -> str | None:
    syn = q.first(layer="tcp", name="segment_sent", node=scenario.CLIENT, flags="S")
    return syn.data["conn"] if syn else None


def no_plaintext(a: Answers) -> tuple[bool, str]:
    segments, total = a.truth["crossed"]
    q: TraceQuery = a.truth["stripped"]
    if total:
        fell = q.first(layer="eno", name="state_updated", node=scenario.CLIENT, to="fallback")
        why = f" (h1 fell back to plain TCP: {fell.data.get('detail')})" if fell else ""
        return False, f"{total} bytes of the secret crossed r1 in the clear, in {segments} segments{why}"
    return True, "no byte of the secret in r1's captures"


def refused(a: Answers) -> tuple[bool, str]:
    q: TraceQuery = a.truth["stripped"]
    conn = _client_conn(q)
    if conn is None:
        return False, "h1 never sent a SYN"
    states = q.select(layer="eno", name="state_updated", node=scenario.CLIENT, conn=conn, to=lambda s: s != "syn-sent")
    final = states[-1].data if states else {}
    if final.get("to") != "refused":
        outcome = final.get("to", "no ENO decision")
        reason = f", reason {final['reason']}" if final.get("reason") else ""
        return False, f"h1's ENO state ended as {outcome}{reason} (policy {final.get('policy', '?')})"
    reset = q.first(layer="tcp", name="segment_sent", node=scenario.CLIENT, conn=conn, flags=lambda f: "R" in f)
    error = q.first(layer="eno", name="error", node=scenario.CLIENT, conn=conn)
    if reset is None or error is None:
        return False, "h1's ENO state says refused, but h1 sent no RST"
    return True, f"h1 refused at {states[-1].t:.3f} s: {final['reason']} ({error.data.get('action')})"


def reason(a: Answers) -> tuple[bool, str]:
    got, want = a.answer("refusal_reason"), a.truth["refusal_reason"]
    if got is None:
        return False, "refusal_reason: no answer yet"
    if isinstance(got, str) and got.strip().lower() == want:
        return True, f"refusal_reason = {want}"
    if got == "fallback":
        return False, "refusal_reason: 'fallback' is what an opportunistic end does; the reason says what was missing"
    return False, f"refusal_reason: you answered {got!r}, which is not what h1 recorded"


def clean_encrypts(a: Answers) -> tuple[bool, str]:
    result = a.truth["clean"].extra["results"][scenario.TRANSFER]
    outcome = result.get("client_outcome")
    if outcome == "encrypted" and result["sha256_match"]:
        return True, f"encrypted with TEP {result.get('tep')}, {result['bytes_received']} bytes intact"
    detail = result.get("error") or f"h1's outcome: {outcome}"
    return False, f"without the middlebox: {detail}"


CHECKS = (
    Check(
        "no byte of the secret crosses r1 in the clear",
        no_plaintext,
        "With an opportunistic policy a missing ENO option means plain TCP (RFC 8547 §4.6), and a middlebox that "
        "strips options decides for you. Which EnoConfig policy makes h1 refuse instead?",
        points=2,
    ),
    Check(
        "h1 refuses the connection",
        refused,
        "A mandatory end that cannot agree on a TEP must not carry on as plain TCP: it resets the connection. "
        "Look at h1's eno state_updated and error records after the SYN-ACK.",
        points=2,
    ),
    Check(
        "the recorded refusal reason",
        reason,
        "h1's eno state_updated record that goes to 'refused' (and its error record) carries a 'reason' field: "
        "docs/trace.md lists the values.",
    ),
    Check(
        "the same settings still encrypt on a clean path",
        clean_encrypts,
        "Refusing everything is not the goal: with nothing in the way, h1 and h2 must still agree on a TEP and "
        "deliver the secret encrypted. Keep at least one TEP h2 runs (0x23 or 0x21) and do not require what h2 "
        "does not send.",
    ),
)

EXERCISE = Exercise(
    name="eno_mandatory",
    title="Make a mandatory-encryption endpoint refuse a middlebox that strips TCP-ENO",
    topic="eno",
    minutes=15,
    rfcs=("RFC 8547 §4.6, Security Considerations", "RFC 8548 §3.2"),
    collect=collect,
    checks=CHECKS,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
