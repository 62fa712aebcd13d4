"""Grader for ike_fallback_config: ``python -m exercises.ike_fallback_config.grade [DIR] [--json]``."""

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
from exercises.ike_fallback_config import scenario
from lab.errors import LabError


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
        if key in ("udp_ports", "tcp_ports"):
            if not isinstance(v, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in v):
                raise SubmissionError("bad_result", f"initiator_config(): {key} must be a list of port numbers")
            v = tuple(v)
        elif key == "retransmit_tries":
            if not isinstance(v, int) or isinstance(v, bool):
                raise SubmissionError("bad_result", "initiator_config(): retransmit_tries must be a whole number")
        elif key.endswith("_s"):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 60:
                raise SubmissionError("bad_result", f"initiator_config(): {key} must be a number of seconds in (0, 60]")
            v = float(v)
        out[key] = v
    return out


def collect(sub: Submission) -> dict[str, TraceQuery]:
    overrides = config(sub.call("initiator_config"))
    runs = {}
    for network in scenario.NETWORKS:
        try:
            built = scenario.scenario(network, overrides)
        except (LabError, TypeError, ValueError) as exc:
            raise SubmissionError("bad_result", f"initiator_config(): {exc}") from None
        runs[network] = sub.replay(built, seed=scenario.SEED).finish()
    return runs


def established(q: TraceQuery) -> dict[str, Any] | None:
    """When (seconds after h1's connect), over which transport and port h1's IKE SA came up; None if never."""
    connect = q.first(layer="ike", name="state_updated", node=scenario.INITIATOR, event="connect")
    up = q.first(layer="ike", name="state_updated", node=scenario.INITIATOR, to="ESTABLISHED")
    if connect is None or up is None:
        return None
    won = q.first(layer="ike", name="state_updated", node=scenario.INITIATOR, event="won")
    port = won.data.get("port") if won else None
    return {"after_s": up.t - connect.t, "transport": up.data.get("transport"), "port": port}


def _timeline(q: TraceQuery) -> str:
    steps = []
    for r in q.select(layer="ike", name="state_updated", node=scenario.INITIATOR, event=lambda e: e != "connect"):
        if "attempt" in r.data:
            steps.append(f"{r.t:.3f} s {r.data['transport']}:{r.data['port']} {r.data['event']}")
        elif r.data.get("event") == "failed":
            steps.append(f"{r.t:.3f} s failed: {r.data.get('reason')}")
    return "; ".join(steps[:8]) or "no attempt recorded"


def over_tcp(network: str):
    def passed(runs: dict[str, TraceQuery]) -> tuple[bool, str]:
        q = runs[network]
        up = established(q)
        if up is None:
            return False, f"{network}: the IKE SA never came up ({_timeline(q)})"
        if up["transport"] != "tcp":
            return False, f"{network}: established over {up['transport']}"
        return True, f"{network}: established over TCP {up['port']} after {up['after_s']:.3f} s"

    return passed


def data_exact(network: str):
    def passed(runs: dict[str, TraceQuery]) -> tuple[bool, str]:
        results = runs[network].extra["results"]
        bad = [
            f"{name}: {r['bytes_received']} of {r['bytes_expected']} bytes"
            + (f" ({r['error']})" if r.get("error") else "")
            for name, r in results.items()
            if not r["sha256_match"]
        ]
        if bad:
            return False, f"{network}: " + "; ".join(bad)
        return True, f"{network}: " + ", ".join(f"{n} {r['bytes_received']} bytes intact" for n, r in results.items())

    return passed


def in_time(network: str, bound_s: float, port: int):
    def passed(runs: dict[str, TraceQuery]) -> tuple[bool, str]:
        q = runs[network]
        up = established(q)
        if up is None:
            return False, f"{network}: the IKE SA never came up ({_timeline(q)})"
        where = f"{up['transport']}:{up['port']}"
        if up["transport"] != "tcp" or up["port"] != port:
            return False, f"{network}: established over {where}, want tcp:{port}"
        ok = up["after_s"] <= bound_s + timing_slack_s(q)
        return (
            ok,
            f"{network}: established {up['after_s']:.3f} s after the connect over {where} "
            f"(bound {bound_s} s{slack_note(q)})" + ("" if ok else f"; timeline: {_timeline(q)}"),
        )

    return passed


def udp_on_open_path(runs: dict[str, TraceQuery]) -> tuple[bool, str]:
    up = established(runs["open"])
    if up is None:
        return False, f"open: the IKE SA never came up ({_timeline(runs['open'])})"
    if up["transport"] != "udp":
        return False, f"open: established over {up['transport']}:{up['port']} although UDP works there"
    return True, f"open: established over UDP after {up['after_s']:.3f} s"


CHECKS = (
    Check(
        "hotspot: IKE SA established over TCP",
        over_tcp("hotspot"),
        "With UDP dropped, only TCP can work: transport 'fallback' (or 'tcp') with at least one TCP port the "
        "responder listens on.",
    ),
    Check(
        "hotspot: tunnelled data byte-exact",
        data_exact("hotspot"),
        "Both 32 KiB streams go through the Child SA once it is up; if the SA comes up they should arrive. "
        "Look at the esp and iketcp records for drops.",
    ),
    Check(
        f"hotspot: over TCP 4500 within {scenario.HOTSPOT_BOUND_S} s",
        in_time("hotspot", scenario.HOTSPOT_BOUND_S, 4500),
        "The default waits out udp_timeout_s (2 s) before it even opens TCP. Shorten the UDP attempt, or race: "
        "'racing' starts TCP race_head_start_s after UDP and keeps whichever completes IKE_SA_INIT first. "
        "RFC 9329 §2: 4500 is the port to try first.",
        points=2,
    ),
    Check(
        "port-443: IKE SA established over TCP",
        over_tcp("port-443"),
        "TCP 4500 is blocked here: the SYNs go unanswered. Give tcp_ports a second port the network lets through "
        "(RFC 9329 §2 allows other ports by configuration; 443 is the usual one).",
    ),
    Check(
        "port-443: tunnelled data byte-exact",
        data_exact("port-443"),
        "Both 32 KiB streams must arrive intact over the TCP 443 connection.",
    ),
    Check(
        f"port-443: over TCP 443 within {scenario.PORT_443_BOUND_S} s",
        in_time("port-443", scenario.PORT_443_BOUND_S, 443),
        "Each blocked TCP port costs tcp_connect_timeout_s before the next is tried. The RTT is about 40 ms: "
        "how long does a connect that works take?",
        points=2,
    ),
    Check(
        "open path: IKE stays on UDP",
        udp_on_open_path,
        "TCP is the fallback (RFC 9329 §5): where UDP works it must still be used, so 'tcp' only is not the "
        "answer, and a UDP timeout shorter than one round trip gives UDP no chance.",
    ),
)

EXERCISE = Exercise(
    name="ike_fallback_config",
    title="Configure IKEv2's fallback to TCP to get through UDP-blocking networks within a second",
    topic="ike",
    minutes=20,
    rfcs=("RFC 9329 §2, §5, §6.1", "RFC 7296 §2.1, §2.23"),
    collect=collect,
    checks=CHECKS,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
