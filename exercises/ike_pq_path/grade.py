"""Grader for ike_pq_path: ``python -m exercises.ike_pq_path.grade [DIR] [--json]``."""

from __future__ import annotations

import sys
from typing import Any

from exercises.grading import (
    Check,
    Exercise,
    Submission,
    SubmissionError,
    TraceQuery,
    main_for,
    slack_note,
    timing_slack_s,
)
from exercises.ike_pq_path import scenario
from lab.errors import LabError

RTTS_CLASS_S = 0.5  # below: "a few round trips"
RETRANSMISSIONS_CLASS_S = 10.0  # above: the retransmission schedule was waited out


def config(value: Any) -> dict[str, Any]:
    """The IkeConfig overrides ``initiator_config()`` returned. Raises SubmissionError saying what is wrong."""
    if not isinstance(value, dict):
        raise SubmissionError("bad_result", f"initiator_config() returned a {type(value).__name__}, not a dict")
    unknown = sorted(set(value) - set(scenario.ALLOWED_FIELDS))
    if unknown:
        raise SubmissionError(
            "bad_result", f"initiator_config(): unknown field(s) {unknown}; use {', '.join(scenario.ALLOWED_FIELDS)}"
        )
    out = {}
    for key, v in value.items():
        if key in ("fragmentation",):
            if not isinstance(v, bool):
                raise SubmissionError("bad_result", f"initiator_config(): {key} must be True or False")
        elif key in ("path_mtu_bytes", "retransmit_tries"):
            if not isinstance(v, int) or isinstance(v, bool):
                raise SubmissionError("bad_result", f"initiator_config(): {key} must be a whole number")
        elif key.endswith("_s"):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 60:
                raise SubmissionError("bad_result", f"initiator_config(): {key} must be a number of seconds in (0, 60]")
            v = float(v)
        elif not isinstance(v, str):
            raise SubmissionError("bad_result", f"initiator_config(): {key} must be a string")
        out[key] = v
    return out


def _run(sub: Submission, network: str, overrides: dict[str, Any]) -> TraceQuery:
    try:
        built = scenario.scenario(network, overrides)
    except (LabError, TypeError, ValueError) as exc:
        raise SubmissionError("bad_result", f"initiator_config(): {exc}") from None
    return sub.replay(built, seed=scenario.SEED).finish()


def collect(sub: Submission) -> dict[str, Any]:
    predicted = sub.call("predictions")
    if not isinstance(predicted, dict):
        raise SubmissionError("bad_result", f"predictions() returned a {type(predicted).__name__}, not a dict")
    overrides = config(sub.call("initiator_config"))
    # the defaults' runs do not depend on the submission, but run where the submission's do (same backend)
    return {
        "predicted": predicted,
        "defaults": {n: _run(sub, n, scenario.DEFAULTS) for n in scenario.NETWORKS},
        "yours": {n: _run(sub, n, overrides) for n in scenario.NETWORKS},
    }


def established(q: TraceQuery) -> dict[str, Any] | None:
    """When (seconds after h1's connect) and over which transport h1's IKE SA came up; None if never."""
    connect = q.first(layer="ike", name="state_updated", node=scenario.INITIATOR, event="connect")
    up = q.first(layer="ike", name="state_updated", node=scenario.INITIATOR, to="ESTABLISHED")
    if connect is None or up is None:
        return None
    return {"after_s": up.t - connect.t, "transport": up.data.get("transport")}


def time_class(up: dict[str, Any] | None, slack_s: float) -> str:
    if up is None:
        return "never"
    if up["after_s"] <= RTTS_CLASS_S + slack_s:
        return "rtts"
    if up["after_s"] < RETRANSMISSIONS_CLASS_S:
        return "udp-timeout"
    return "retransmissions"


def _why(q: TraceQuery) -> str:
    """What happened on the way, in a few words: the first big message and the first drop."""
    steps = []
    big = q.first(layer="ike", name="state_updated", node=scenario.INITIATOR, event="ip_fragments")
    if big is not None:
        steps.append(f"{big.data.get('exchange')} of {big.data.get('length')} bytes went as IP fragments")
    drop = q.first(layer="middlebox", name="segment_dropped")
    if drop is not None:
        steps.append(f"r1 dropped: {drop.data.get('reason')}")
    gave_up = q.first(
        layer="ike", name="state_updated", node=scenario.INITIATOR, event=lambda e: e in ("timeout", "unanswered")
    )
    if gave_up is not None:
        steps.append(f"UDP given up at {gave_up.t:.2f} s ({gave_up.data.get('event')})")
    return "; ".join(steps) or "nothing dropped"


def prediction(network: str):
    def passed(ev: dict[str, Any]) -> tuple[bool, str]:
        got = ev["predicted"].get(network)
        q = ev["defaults"][network]
        up = established(q)
        want_transport = up["transport"] if up else "none"
        want_time = time_class(up, timing_slack_s(q))
        if not isinstance(got, dict) or got.get("transport") is None or got.get("time") is None:
            return False, f"{network}: no answer yet"
        if got.get("time") not in scenario.TIME_CLASSES:
            return False, f"{network}: time must be one of {', '.join(scenario.TIME_CLASSES)}, not {got.get('time')!r}"
        measured = (
            f"measured: over {want_transport}"
            + (f" after {up['after_s']:.3f} s" if up else "")
            + f" ({want_time}); {_why(q)}"
        )
        if got.get("transport") == want_transport and got.get("time") == want_time:
            return True, f"{network}: you predicted {want_transport}, {want_time}; {measured}"
        return False, f"{network}: you predicted {got.get('transport')}, {got.get('time')}; {measured}"

    return passed


def within_bound(network: str):
    def passed(ev: dict[str, Any]) -> tuple[bool, str]:
        q = ev["yours"][network]
        up = established(q)
        if up is None:
            return False, f"{network}: the IKE SA never came up ({_why(q)})"
        bound_s = scenario.BOUND_RTTS * scenario.RTT_S
        rtts = up["after_s"] / scenario.RTT_S
        ok = up["after_s"] <= bound_s + timing_slack_s(q)
        return ok, (
            f"{network}: established over {up['transport']} after {up['after_s']:.3f} s = {rtts:.1f} RTT "
            f"(bound {scenario.BOUND_RTTS:g} RTT{slack_note(q)})" + ("" if ok else f"; {_why(q)}")
        )

    return passed


def udp_where_it_works(ev: dict[str, Any]) -> tuple[bool, str]:
    up = established(ev["yours"]["open"])
    if up is None:
        return False, f"open: the IKE SA never came up ({_why(ev['yours']['open'])})"
    if up["transport"] != "udp":
        return False, f"open: established over {up['transport']} although UDP works there"
    return True, f"open: established over UDP after {up['after_s']:.3f} s"


def data_exact(ev: dict[str, Any]) -> tuple[bool, str]:
    bad = []
    for network, q in ev["yours"].items():
        for name, r in q.extra["results"].items():
            if not r["sha256_match"]:
                bad.append(f"{network} {name}: {r['bytes_received']} of {r['bytes_expected']} bytes")
    if bad:
        return False, "; ".join(bad)
    return True, "every tunnelled stream arrived intact on every network"


PREDICTION_FEEDBACK = (
    "Trace the default settings message by message: which IKE messages are larger than the path (IKE_SA_INIT, "
    "IKE_INTERMEDIATE with a 1,184-byte ML-KEM-768 share, IKE_AUTH with a certificate chain), what r1 does "
    "with them, and which timer then decides: the UDP timeout applies only while IKE_SA_INIT is unanswered "
    "(RFC 9329 §5.1); once UDP has won, a lost request is retransmitted until it is given up (RFC 7296 §2.1)."
)
CHECKS = (
    *(Check(f"prediction: {network}", prediction(network), PREDICTION_FEEDBACK) for network in scenario.NETWORKS),
    Check(
        "your settings: UDP where UDP works",
        udp_where_it_works,
        "TCP is the fallback (RFC 9329 §5): on the open network the IKE SA must still come up over UDP.",
    ),
    *(
        Check(
            f"your settings: {network} within {scenario.BOUND_RTTS:g} RTTs",
            within_bound(network),
            {
                "open": "A hybrid exchange needs three round trips (IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH).",
                "no-fragments": "No IP fragment gets through: messages larger than the path must be made to fit "
                "above IP. RFC 7383 fragments encrypted IKE messages (both ends must offer it).",
                "small-udp": "Nothing larger than 1280 bytes gets through, fragments included: what path MTU "
                "do IKE fragments need to be sized for? (RFC 7383 §2.5.1)",
                "udp-blocked": "IKE_SA_INIT over UDP never gets an answer here: waiting out the UDP timeout "
                "costs 2 s. Race TCP against UDP, or shorten the wait.",
            }[network],
            points=2,
        )
        for network in scenario.NETWORKS
    ),
    Check(
        "your settings: tunnelled data byte-exact",
        data_exact,
        "Both 16 KiB streams go through the Child SA once it is up; look at the esp records for drops.",
    ),
)

EXERCISE = Exercise(
    name="ike_pq_path",
    title="Predict, then choose the transport and fragmentation that get a hybrid post-quantum IKE SA through",
    topic="ike",
    minutes=30,
    rfcs=("RFC 9370 §2", "RFC 9242 §3", "RFC 7383 §2.5", "RFC 9329 §5.1", "RFC 7296 §2.1"),
    collect=collect,
    checks=CHECKS,
    needs_scenario=True,
    no_mininet=(
        "the default settings' runs wait out IKE's whole retransmission schedule (over 30 s) on two networks, "
        "in real time on Mininet; the ike-pq-* scenarios run there"
    ),
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
