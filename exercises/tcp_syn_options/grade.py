"""Grader for tcp_syn_options: ``python -m exercises.tcp_syn_options.grade [DIR] [--json]``."""

from __future__ import annotations

import sys

from exercises.grading import Check, Exercise, RunContext, Submission, SubmissionError, TraceQuery, main_for
from exercises.tcp_syn_options import scenario
from lab.errors import DecodeError
from lab.scenario import build_scenario_topology
from lab.trace import TraceRecord
from lab.wire.eno import ENO_KIND, decode_syn_eno_option


def collect(sub: Submission) -> TraceQuery:
    scn = scenario.scenario_for(sub.backend)
    spec = build_scenario_topology(scn)
    h1 = spec.interfaces_of(scenario.ATTACKER)[0].ipv4
    h2 = spec.interfaces_of(scenario.SERVER)[0].ipv4

    def probe(ctx: RunContext) -> None:
        packet = sub.call("craft_syn", h1, h2)
        if not isinstance(packet, bytes):
            raise SubmissionError("bad_result", f"craft_syn() returned a {type(packet).__name__}, not a packet")
        try:
            ctx.inject(scenario.ATTACKER, packet)
        except ValueError as exc:
            raise SubmissionError("bad_result", f"craft_syn(): {exc}") from None

    replay = sub.replay(scn, seed=scenario.SEED)
    replay.at(scenario.INJECT_AT, probe)
    return replay.finish()


def _injected(q: TraceQuery) -> TraceRecord:
    rec = q.first(layer="inject", name="segment_sent", node=scenario.ATTACKER)
    if rec is None:
        raise SubmissionError("bad_result", "nothing was injected")
    return rec


def _server_conn(q: TraceQuery) -> str | None:
    inj = _injected(q).data
    if inj.get("protocol") != 6 or "sport" not in inj:
        return None
    return f"{inj['dst']}:{inj['dport']}->{inj['src']}:{inj['sport']}"


def _syn_seen(q: TraceQuery) -> TraceRecord | None:
    conn = _server_conn(q)
    if conn is None:
        return None
    return q.first(layer="tcp", name="segment_received", node=scenario.SERVER, conn=conn, flags="S")


def _synack(q: TraceQuery) -> TraceRecord | None:
    conn = _server_conn(q)
    return (
        None if conn is None else q.first(layer="tcp", name="segment_sent", node=scenario.SERVER, conn=conn, flags="SA")
    )


def answered(q: TraceQuery) -> tuple[bool, str]:
    inj = _injected(q).data
    if inj.get("protocol") != 6:
        return False, f"the packet is IP protocol {inj.get('protocol')}, not TCP (6)"
    if inj.get("flags") != "S":
        return False, f"the packet's TCP flags are {inj.get('flags')!r}: a connection starts with SYN alone"
    if inj.get("dport") != scenario.SERVER_PORT:
        return False, f"the SYN goes to port {inj.get('dport')}; h2 listens on {scenario.SERVER_PORT}"
    after = {"after": scenario.INJECT_AT}
    if _syn_seen(q) is None:
        drops = [
            d
            for d in q.select(name="segment_dropped", **after)
            if d.node in (scenario.SERVER, "r1") or d.data.get("len") == _injected(q).data.get("len")
        ]
        why = "; ".join(str(d.data.get("reason")) for d in drops[:3]) or "no trace of it at h2"
        return False, f"h2 did not take the SYN: {why}"
    if _synack(q) is None:
        return False, "h2 received the SYN but sent no SYN-ACK"
    return True, f"h2 answered on {_server_conn(q)}"


def _kinds(rec: TraceRecord) -> dict[object, dict]:
    return {o["kind"]: o for o in rec.data.get("options", [])}


def options_as_asked(q: TraceQuery) -> tuple[bool, str]:
    syn = _syn_seen(q)
    if syn is None:
        return False, "h2 never received the SYN, so there is nothing to compare"
    opts = _kinds(syn)
    wrong = []
    mss = opts.get("MSS", {}).get("value")
    if mss != scenario.WANT_MSS:
        wrong.append(f"MSS is {mss}, want {scenario.WANT_MSS}")
    if "SACK_PERM" not in opts:
        wrong.append("no SACK-permitted option")
    if "WS" in opts:
        wrong.append(f"it offers window scaling (shift {opts['WS']['shift']})")
    if "TS" in opts:
        wrong.append("it offers timestamps")
    eno = opts.get(ENO_KIND)
    if eno is None:
        wrong.append("no ENO option (kind 69)")
    else:
        data = bytes.fromhex(eno["data"])
        try:
            option = decode_syn_eno_option(bytes((ENO_KIND, 2 + len(data))) + data)
        except DecodeError as exc:
            wrong.append(f"the ENO option does not parse: {exc}")
        else:
            teps = [t.tep_id for t in option.teps]
            if teps != scenario.WANT_TEPS:
                wrong.append(f"ENO offers TEPs {[hex(t) for t in teps]}, want {[hex(t) for t in scenario.WANT_TEPS]}")
            if option.global_suboption.passive_role:
                wrong.append("ENO's b bit is 1 (host B); an active opener plays A")
    return (not wrong), "; ".join(wrong) or "MSS 536, SACK-permitted, ENO 0x22 0x21, no WS, no TS"


def synack_mirrors(q: TraceQuery) -> tuple[bool, str]:
    syn, synack = _syn_seen(q), _synack(q)
    if syn is None or synack is None:
        return False, "no SYN-ACK to look at"
    offered, answered_ = _kinds(syn), _kinds(synack)
    seen = ", ".join(str(k) for k in answered_)
    problems = []
    for kind, rfc in (("WS", "RFC 7323 §2.2"), ("TS", "RFC 7323 §3.2")):
        if kind in answered_:
            problems.append(f"h2 answered {kind} because your SYN offered it ({rfc})")
    if ENO_KIND in answered_:
        problems.append("h2 answered with ENO")
    if "SACK_PERM" in offered and "SACK_PERM" not in answered_:
        problems.append("h2 did not answer SACK-permitted")
    if "SACK_PERM" not in offered:
        problems.append("your SYN did not offer SACK, so h2 could not agree to it")
    return (not problems), "; ".join(problems) or f"h2's SYN-ACK carries {seen}: no WS, no TS, no ENO"


def h1_resets(q: TraceQuery) -> tuple[bool, str]:
    inj = _injected(q).data
    if "sport" not in inj:
        return False, "the packet had no TCP ports"
    conn = f"{inj['src']}:{inj['sport']}->{inj['dst']}:{inj['dport']}"
    rst = q.first(layer="tcp", name="segment_sent", node=scenario.ATTACKER, conn=conn, reason="no connection")
    if rst is None:
        return False, "h1 sent no RST for that connection" + _kernel_note(q, inj["sport"])
    return True, f"h1 sent [{rst.data['flags']}] at t={rst.t:.6f}"


def _kernel_note(q: TraceQuery, port: int) -> str:
    """On Mininet, h1's user-space stack sees only the ports fenced off its kernel: say so when
    the SYN's source port is not one of them (the kernel answered, untraced)."""
    fence = q.first(layer="endpoint", name="state_updated", node=scenario.ATTACKER, fence=lambda f: True)
    if fence is None:
        return ""
    ranges = fence.data["fence"].get("tcp", [])
    if any(lo <= port <= hi for lo, hi in ranges):
        return ""
    owned = ", ".join(f"{lo}-{hi}" for lo, hi in ranges)
    return f" (on Mininet h1's stack owns TCP ports {owned}; its kernel answered port {port}: pick one of those)"


def transfer_intact(q: TraceQuery) -> tuple[bool, str]:
    result = q.extra["results"]["bulk"]
    return (
        bool(result["sha256_match"]),
        f"{result['bytes_received']} of {result['bytes_expected']} bytes, SHA-256 {'match' if result['sha256_match'] else 'MISMATCH'}",
    )


CHECKS = (
    Check(
        "h2 answers the hand-made SYN",
        answered,
        "Build IP(src=h1, dst=h2)/TCP(dport=7, flags='S', ...), pick a source port no one uses (not the "
        "transfer's), and leave lengths and checksums to Scapy.",
    ),
    Check(
        "the SYN carries the options asked for",
        options_as_asked,
        "TCP(options=[...]) takes ('MSS', n), ('SAckOK', b''), and exercises.scapy_layers.eno_option(0x22, 0x21) "
        "for kind 69; leave out ('WScale', ...) and ('Timestamp', ...). RFC 8547 §4.1-§4.2 for the ENO layout.",
        points=2,
    ),
    Check(
        "h2's SYN-ACK answers only what was offered",
        synack_mirrors,
        "A SYN-ACK may carry window scaling and timestamps only if the SYN offered them (RFC 7323 §2.2, §3.2), "
        "SACK-permitted only if the SYN did (RFC 2018 §2). h2 has no ENO, so it ignores kind 69 and the "
        "connection would be plain TCP (RFC 8547 §4.6).",
    ),
    Check(
        "h1's stack resets the SYN-ACK it never asked for",
        h1_resets,
        "h1's TCP has no connection for that port: RFC 9293 §3.10.7.1 says it answers the SYN-ACK with a RST. "
        "Find it in the trace (reason 'no connection').",
    ),
    Check(
        "the running transfer is unharmed",
        transfer_intact,
        "The transfer h1 starts at 0.5 s must still arrive byte for byte: your SYN went to the echo service, not to it.",
    ),
)

EXERCISE = Exercise(
    name="tcp_syn_options",
    title="Craft a SYN with chosen options (MSS, SACK, ENO) in Scapy and read the SYN-ACK",
    topic="tcp",
    minutes=25,
    rfcs=("RFC 9293 §3.7.1, §3.10.7.1", "RFC 7323 §2.2, §3.2", "RFC 2018 §2", "RFC 8547 §4.1-§4.6"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=30.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
