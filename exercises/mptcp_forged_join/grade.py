"""Grader for mptcp_forged_join: ``python -m exercises.mptcp_forged_join.grade [DIR] [--json]``."""

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
from exercises.mptcp_forged_join import scenario as sc
from lab.scenario.inject import packet_bytes, summary


def _packets(value: Any, count: int, function: str) -> list[bytes]:
    if not isinstance(value, list) or len(value) != count:
        got = f"a list of {len(value)}" if isinstance(value, list) else f"a {type(value).__name__}"
        raise SubmissionError("bad_result", f"{function}() must return a list of {count} packets, got {got}")
    for i, packet in enumerate(value):
        if not isinstance(packet, bytes):
            raise SubmissionError(
                "bad_result", f"{function}(): packet {i + 1} is a {type(packet).__name__}, not a packet"
            )
    return value


def _inject_all(ctx: RunContext, packets: list[bytes], start: float, function: str) -> None:
    for i, packet in enumerate(packets):
        try:
            packet_bytes(packet)
        except ValueError as exc:
            raise SubmissionError("bad_result", f"{function}(): packet {i + 1}: {exc}") from None
    spacing = sc.spacing_s(ctx.backend)
    for i, packet in enumerate(packets):
        ctx.inject(sc.ATTACKER, packet, at=start + spacing * i, interface=sc.ATTACK_INTERFACE)


def _handshake_done(packets: list[bytes]) -> bool:
    """The MP_CAPABLE third ACK (both keys: option length 20 or more) among the first
    SNIFFED_PACKETS packets: what attack() reads the keys from."""
    for packet in packets[: sc.SNIFFED_PACKETS]:
        seg = tcp_segment(packet)
        if seg is None or seg[0] & 0x12 != 0x10:  # an ACK, not a SYN
            continue
        opts = seg[1]
        i = 0
        while i + 1 < len(opts):
            kind = opts[i]
            if kind in (0, 1):
                i += 1
                if kind == 0:
                    break
                continue
            length = opts[i + 1]
            if length < 2:
                break
            if kind == 30 and length >= 20 and i + 2 < len(opts) and opts[i + 2] >> 4 == 0:
                return True
            i += length
    return False


def _syn_acks(packets: list[bytes]) -> list[bytes]:
    """The SYN/ACKs h2 sent to the spoofed address, first one per port (h2 retransmits them)."""
    out, ports = [], set()
    for packet in packets:
        s = summary(packet)
        if s.get("dst") == sc.SPOOFED and s.get("flags") == "SA" and s.get("dport") not in ports:
            ports.add(s.get("dport"))
            out.append(packet)
    return out


class _Attack:
    """The grader's two steps: attack() at SNIFF_AT, complete() once h2's SYN/ACKs are back."""

    def __init__(self, sub: Submission, replay: Any) -> None:
        self.sub = sub
        self.replay = replay
        self.sniffed: list[bytes] = []
        self.synacks: list[bytes] = []
        self.complete_at = sc.COMPLETE_AT

    def attack(self, ctx: RunContext) -> None:
        packets = captured_when(self.replay, ctx, sc.SNIFF_INTERFACE, _handshake_done, self.attack, since=sc.SNIFF_AT)
        if packets is None:  # on Mininet, a loaded machine: the handshake is not in the capture yet
            return
        self.sniffed = packets[: sc.SNIFFED_PACKETS]
        syns = _packets(self.sub.call("attack", self.sniffed), sc.SYNS, "attack")
        # the simulator stands still while attack() runs; on Mininet the SYNs follow its return
        start = max(ctx.now, sc.SNIFF_AT) + sc.spacing_s(ctx.backend)
        _inject_all(ctx, syns, start, "attack")
        if ctx.backend == "mininet":
            complete_at = start + sc.spacing_s(ctx.backend) * (sc.SYNS - 1) + sc.MININET_ANSWER_S
        else:
            complete_at = sc.COMPLETE_AT
        self.complete_at = complete_at
        self.replay.at(complete_at, self.complete)

    def complete(self, ctx: RunContext) -> None:
        packets = captured_when(  # on Mininet, wait (bounded) for h2's answers to the right-token SYNs
            self.replay,
            ctx,
            sc.SYNACK_INTERFACE,
            lambda got: len(_syn_acks(got)) >= sc.ACKS,
            self.complete,
            since=self.complete_at,
        )
        if packets is None:
            return
        self.synacks = _syn_acks(packets)
        if self.synacks:
            got = _packets(
                self.sub.call("complete", self.synacks, self.sniffed), min(sc.ACKS, len(self.synacks)), "complete"
            )
            start = max(ctx.now, sc.COMPLETE_AT) + sc.spacing_s(ctx.backend)
            _inject_all(ctx, got, start, "complete")


def collect(sub: Submission) -> TraceQuery:
    with tempfile.TemporaryDirectory(prefix="tcplab-join-") as tmp:
        replay = sub.replay(sc.scenario_for(sub.backend), seed=sc.SEED, pcap_dir=Path(tmp))
        steps = _Attack(sub, replay)
        replay.at(sc.SNIFF_AT, steps.attack)
        q = replay.finish()
    injected = [{k: v for k, v in i.items() if k not in ("node", "iface")} for i in q.extra["injected"]]
    q.extra["syns"] = injected[: sc.SYNS]
    q.extra["acks"] = injected[sc.SYNS :]
    q.extra["synacks"] = len(steps.synacks)
    return q


MININET_REACTION_S = 2.0  # how late h2's endpoint may take a forged packet on Mininet (a loaded machine)


def _window(q: TraceQuery, at: float) -> dict[str, float]:
    """From ``at`` to the time the next forged packet was due (on Mininet, where a loaded machine
    delivers late, ``MININET_REACTION_S`` more: reactions are matched by the packet's own port)."""
    late = MININET_REACTION_S if q.extra["backend"] == "mininet" else 0.0
    return {"after": at, "before": at + sc.spacing_s(q.extra["backend"]) + late - 1e-9}


def _subflow(port: int):
    return lambda s: str(s).endswith(f":{port}")


def syn_reaction(q: TraceQuery, index: int) -> tuple[str, str]:
    """How h2 took forged SYN ``index``: (kind, what the trace shows)."""
    n = index + 1
    if index >= len(q.extra["syns"]):
        return "not_seen", f"SYN {n} was never sent: the run had ended before its time"
    sent = q.extra["syns"][index]
    if sent.get("flags") != "S" or sent.get("dst") != sc.SERVER_B or sent.get("dport") != sc.PORT:
        return "not_syn", f"SYN {n} is not a SYN to {sc.SERVER_B} port {sc.PORT}"
    at, mine = sent["at"], _subflow(sent.get("sport"))
    window = _window(q, at)
    dropped = q.first(layer="mptcp", name="segment_dropped", node=sc.SERVER, subflow=mine, **window)
    if dropped is not None:
        return "refused", f"SYN {n}: h2 refused it ({dropped.data.get('reason')})"
    synack = q.first(
        layer="mptcp",
        name="segment_sent",
        node=sc.SERVER,
        subflow=mine,
        mptcp=lambda opts: any(o.get("subtype") == "MP_JOIN" for o in opts),
        **window,
    )
    if synack is not None:
        return "synack", f"SYN {n}: h2 answered with an MP_JOIN SYN/ACK (its HMAC and nonce)"
    return "not_seen", f"SYN {n} drew no MPTCP reaction from h2"


def ack_reaction(q: TraceQuery, index: int) -> tuple[str, str]:
    """How h2 took the third ACK for SYN ``index + 2`` (the two joins with the right token)."""
    n = index + 2
    if syn_reaction(q, index + 1)[0] != "synack":
        return "no_join", f"SYN {n} got no SYN/ACK, so there was no join to complete"
    port = q.extra["syns"][index + 1].get("sport")
    mine = _subflow(port)
    acks = [a for a in q.extra["acks"] if a.get("sport") == port]
    if not acks:
        return "no_ack", f"complete() returned no ACK from port {port} (SYN {n})"
    ack = acks[0]
    if ack.get("flags") != "A" or ack.get("dst") != sc.SERVER_B:
        return "no_ack", f"the packet for SYN {n} is not an ACK to {sc.SERVER_B}"
    if q.first(layer="mptcp", name="state_updated", node=sc.SERVER, subflow=mine, to="ESTABLISHED"):
        return "joined", f"SYN {n}'s subflow is ESTABLISHED at h2: the join succeeded"
    err = q.first(layer="mptcp", name="error", node=sc.SERVER, subflow=mine, after=ack["at"])
    if err is not None:
        return "refused", f"the ACK for SYN {n}: h2 reset the subflow ({err.data.get('reason')})"
    return "ignored", f"the ACK for SYN {n} drew no MPTCP reaction (TCP numbers wrong? see h2's tcp records)"


def all_reached(q: TraceQuery) -> tuple[bool, str]:
    seen = [syn_reaction(q, i) for i in range(sc.SYNS)]
    return all(k not in ("not_syn", "not_seen") for k, _ in seen), "; ".join(w for _, w in seen)


def wrong_token_refused(q: TraceQuery) -> tuple[bool, str]:
    kind, what = syn_reaction(q, 0)
    if kind != "refused":
        return False, what
    at = q.extra["syns"][0]["at"]
    before = at + sc.spacing_s(q.extra["backend"])
    rst = q.first(layer="tcp", name="segment_sent", node=sc.SERVER, flags=lambda f: "R" in f, after=at, before=before)
    return True, what + ("; h2 sent a RST" if rst else "")


def right_token_answered(q: TraceQuery) -> tuple[bool, str]:
    seen = [syn_reaction(q, i) for i in (1, 2)]
    return all(k == "synack" for k, _ in seen), "; ".join(w for _, w in seen)


def forged_hmac_refused(q: TraceQuery) -> tuple[bool, str]:
    kind, what = ack_reaction(q, 0)
    return kind == "refused", what


def real_hmac_joins(q: TraceQuery) -> tuple[bool, str]:
    kind, what = ack_reaction(q, 1)
    return kind == "joined", what


def transfer_intact(q: TraceQuery) -> tuple[bool, str]:
    res = q.extra["results"]["bulk"]
    if not res.get("sha256_match"):
        return False, f"h2 got {res['bytes_received']} of {res['bytes_expected']} bytes ({res.get('error')})"
    return True, "every byte arrived (SHA-256) over h1's own subflow"


CHECKS = (
    Check(
        "the forged MP_JOIN SYNs reach h2",
        all_reached,
        "Build IP(src=..., dst='10.0.4.2')/TCP(sport=..., dport=5001, flags='S', options=[mp_join_syn(token)]); "
        "let Scapy fill in lengths and checksums and return the IP layer (no Ether).",
    ),
    Check(
        "a wrong token is refused",
        wrong_token_refused,
        "RFC 8684 §3.2: a SYN with MP_JOIN and a token the receiver does not know is answered with a RST. "
        "SYN 1 must carry a token no connection at h2 has.",
    ),
    Check(
        "the right token draws an MP_JOIN SYN/ACK",
        right_token_answered,
        "SYNs 2 and 3 must name h1's connection at h2: the token is derived from the key of the *receiver* of "
        "the MP_JOIN (h2). Both keys travel in the clear on h1's MP_CAPABLE third ACK (RFC 8684 §3.1).",
    ),
    Check(
        "a forged HMAC is refused",
        forged_hmac_refused,
        "The ACK from port 50001 must complete the TCP handshake (seq = your ISN + 1, ack = h2's ISN + 1) and "
        "carry an MP_JOIN with a wrong 20-byte HMAC: h2 must reset that subflow (RFC 8684 §3.2).",
        points=2,
    ),
    Check(
        "the keys seen in the clear are enough to join",
        real_hmac_joins,
        "The ACK from port 50002 must carry HMAC-SHA256(Key-A || Key-B, R-A || R-B) truncated to 160 bits, with "
        "A = h1 (the initiator, whose role you play), R-A your SYN's nonce and R-B the nonce of h2's SYN/ACK: "
        "lab.mptcp.crypto.mp_join_ack_hmac. See RFC 8684 §3.2 and §5.",
        points=2,
    ),
    Check(
        "h1's transfer is untouched",
        transfer_intact,
        "The forged packets must not disturb the real connection: every byte must arrive.",
    ),
)

EXERCISE = Exercise(
    name="mptcp_forged_join",
    title="Forge MP_JOINs with Scapy against a running MPTCP connection",
    topic="mptcp",
    minutes=30,
    rfcs=("RFC 8684 §3.2", "RFC 8684 §3.1", "RFC 8684 §5", "RFC 7430"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=30.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
