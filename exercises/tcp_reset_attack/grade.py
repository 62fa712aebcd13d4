"""Grader for tcp_reset_attack: ``python -m exercises.tcp_reset_attack.grade [DIR] [--json]``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from exercises.grading import (
    Check,
    Exercise,
    RunContext,
    Submission,
    SubmissionError,
    TraceQuery,
    captured_when,
    main_for,
    tcp_segment,
)
from exercises.tcp_reset_attack import scenario
from lab.scenario.inject import packet_bytes

EXPECTED_PACKETS = 3
MININET_REACTION_S = 2.0  # how late h1's endpoint may take a forged packet on Mininet (a loaded machine)
MIN_DATA_SEGMENTS = 10  # seen on h2's link before attack() is called (on Mininet, see _attack)


def collect(sub: Submission) -> TraceQuery:
    with tempfile.TemporaryDirectory(prefix="tcplab-reset-") as tmp:
        replay = sub.replay(scenario.scenario_for(sub.backend), seed=scenario.SEED, pcap_dir=Path(tmp))
        replay.at(scenario.SNIFF_AT, lambda ctx: _attack(sub, ctx, replay))
        q = replay.finish()
    sent = q.select(layer="inject", name="segment_sent", node=scenario.ATTACKER)
    q.extra["injected_at"] = [r.t for r in sent]
    return q


def _transfer_flowing(packets: list[bytes]) -> bool:
    """Data segments and their ACKs in the capture: what attack() needs to forge from."""
    segments = [seg for p in packets if (seg := tcp_segment(p)) is not None]
    data = sum(1 for _flags, _opts, length in segments if length > 0)
    acks = sum(1 for flags, _opts, length in segments if length == 0 and flags & 0x10)
    return data >= MIN_DATA_SEGMENTS and acks >= MIN_DATA_SEGMENTS


def _attack(sub: Submission, ctx: RunContext, replay: Any) -> None:
    """At SNIFF_AT: hand attack() the last packets seen on h2's link, inject what it returns.
    On Mininet, once the transfer is seen flowing there (a loaded machine starts it late)."""
    packets = captured_when(
        replay,
        ctx,
        scenario.SNIFF_INTERFACE,
        _transfer_flowing,
        lambda again: _attack(sub, again, replay),
        since=scenario.SNIFF_AT,
    )
    if packets is None:
        return
    sniffed = packets[-scenario.SNIFFED_PACKETS :]
    forged = sub.call("attack", sniffed)
    if not isinstance(forged, list) or len(forged) != EXPECTED_PACKETS:
        raise SubmissionError(
            "bad_result", f"attack() must return a list of {EXPECTED_PACKETS} packets, got {_describe(forged)}"
        )
    for i, packet in enumerate(forged):
        if not isinstance(packet, bytes):
            raise SubmissionError("bad_result", f"packet {i + 1} is a {type(packet).__name__}, not a packet")
        try:
            packet_bytes(packet)
        except ValueError as exc:
            raise SubmissionError("bad_result", f"packet {i + 1}: {exc}") from None
    # the simulator stands still while attack() runs; on Mininet the packets follow its return
    start = max(ctx.now, scenario.SNIFF_AT)
    spacing = scenario.spacing_s(ctx.backend)
    for i, packet in enumerate(forged):
        ctx.inject(scenario.ATTACKER, packet, at=start + spacing * (i + 1))


def _describe(value: object) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"a {type(value).__name__}"


def victim_conn(q: TraceQuery) -> str:
    syn = q.first(layer="tcp", name="segment_sent", node=scenario.VICTIM, flags="S")
    return syn.data["conn"]


def reaction(q: TraceQuery, index: int) -> str:
    """How h1 took forged packet ``index``: not_rst, not_seen, dropped, ignored, challenge_ack, reset."""
    injected = q.extra["injected_at"]
    if index >= len(injected):
        return "not_sent"
    sent = q.select(layer="inject", name="segment_sent", node=scenario.ATTACKER)[index]
    if "R" not in sent.data.get("flags", ""):
        return "not_rst"
    at = sent.t
    until = injected[index + 1] if index + 1 < len(injected) else at + scenario.spacing_s(q.extra["backend"])
    conn = victim_conn(q)
    window = {"after": at, "before": until - 1e-9}
    if q.extra["backend"] == "mininet":
        # real processes: on a loaded machine a packet may reach h1's endpoint after the next one
        # was sent, so it is found by its sequence number (each forged RST has its own), with a margin
        window = {"after": at, "before": at + scenario.spacing_s("mininet") + MININET_REACTION_S}
        got = q.first(
            layer="tcp",
            name="segment_received",
            node=scenario.VICTIM,
            conn=conn,
            flags=lambda f: "R" in f,
            seq=sent.data.get("seq"),
            **window,
        )
        if got is None and q.first(layer="tcp", name="segment_dropped", node=scenario.VICTIM, conn=conn, **window):
            return "dropped"
    else:
        if q.first(layer="tcp", name="segment_dropped", node=scenario.VICTIM, conn=conn, **window):
            return "dropped"
        got = q.first(
            layer="tcp", name="segment_received", node=scenario.VICTIM, conn=conn, flags=lambda f: "R" in f, **window
        )
    if got is None:
        return "not_seen"
    same_time = {"after": got.t - 1e-9, "before": got.t + 1e-9}
    if q.first(layer="tcp", name="state_updated", node=scenario.VICTIM, conn=conn, reset=True, **same_time):
        return "reset"
    if q.first(layer="tcp", name="segment_sent", node=scenario.VICTIM, conn=conn, flags="A", len=0, **same_time):
        return "challenge_ack"
    return "ignored"


WHAT = {
    "not_sent": "was never sent: the run had ended before its time",
    "not_rst": "was not a TCP segment with the RST flag",
    "not_seen": "never reached h1's connection (addresses, ports or direction wrong?)",
    "dropped": "was dropped by h1 as malformed (see its segment_dropped reason)",
    "ignored": "was received and silently ignored",
    "challenge_ack": "made h1 send a challenge ACK",
    "reset": "reset h1's connection",
}


def packet_check(index: int, want: str):
    def passed(q: TraceQuery) -> tuple[bool, str]:
        got = reaction(q, index)
        if index > 0 and got == "not_seen" and reaction(q, index - 1) == "reset":
            return False, f"packet {index + 1} came after an earlier packet had already reset the connection"
        return got == want, f"packet {index + 1} {WHAT[got]}"

    return passed


def all_reached(q: TraceQuery) -> tuple[bool, str]:
    seen = [reaction(q, i) for i in range(EXPECTED_PACKETS)]
    bad = []
    for i, r in enumerate(seen):
        if r == "not_seen" and "reset" in seen[:i]:
            continue  # the connection was already gone
        if r in ("not_sent", "not_rst", "not_seen", "dropped"):
            bad.append(f"packet {i + 1} {WHAT[r]}")
    if bad:
        return False, "; ".join(bad)
    return True, ", ".join(WHAT[r] for r in seen)


def transfer_cut(q: TraceQuery) -> tuple[bool, str]:
    result = q.extra["results"]["bulk"]
    if result["error"] and result["bytes_received"] < result["bytes_expected"]:
        return True, f"h2 got {result['bytes_received']} of {result['bytes_expected']} bytes: {result['error']}"
    return False, f"the transfer finished: h2 got all {result['bytes_received']} bytes"


CHECKS = (
    Check(
        "the forged RSTs reach h1's connection",
        all_reached,
        "Build IP(src=h2, dst=h1)/TCP(sport=5001, dport=h1's port, flags='R', seq=...) from what you sniffed; let "
        "Scapy fill in lengths and checksums (do not set them), and return the IP layer (no Ether).",
    ),
    Check(
        "an out-of-window RST is ignored",
        packet_check(0, "ignored"),
        "RFC 5961 §3.2 rule 1: a RST outside the receive window is dropped silently. Packet 1 must lie outside h1's "
        "window: which sequence space is that, h1's or h2's?",
    ),
    Check(
        "an in-window RST draws a challenge ACK",
        packet_check(1, "challenge_ack"),
        "RFC 5961 §3.2 rule 3: a RST inside the window but not at RCV.NXT gets a challenge ACK and nothing else. "
        "h1's RCV.NXT is the next sequence number h2 will use: see h2's ACKs to h1 in what you sniffed.",
        points=2,
    ),
    Check(
        "a RST at exactly RCV.NXT resets the connection",
        packet_check(2, "reset"),
        "RFC 5961 §3.2 rule 2: only a RST whose sequence number is exactly RCV.NXT resets. h2 sends no data, so "
        "its ACKs carry that number in their seq field.",
        points=2,
    ),
    Check(
        "the transfer is cut short",
        transfer_cut,
        "When the reset works, h1's application sees 'connection reset by peer' and h2 never gets the whole 2 MiB.",
    ),
)

EXERCISE = Exercise(
    name="tcp_reset_attack",
    title="Forge TCP resets with Scapy and watch RFC 5961 defend a running transfer",
    topic="tcp",
    minutes=30,
    rfcs=("RFC 5961 §3", "RFC 9293 §3.10.7.4"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=30.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
