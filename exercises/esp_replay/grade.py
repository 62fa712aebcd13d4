"""Grader for esp_replay: ``python -m exercises.esp_replay.grade [DIR] [--json]``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from exercises.esp_replay import scenario
from exercises.grading import (
    Check,
    Exercise,
    RunContext,
    Submission,
    SubmissionError,
    TraceQuery,
    captured_when,
    main_for,
)
from lab.errors import DecodeError
from lab.scenario.inject import packet_bytes
from lab.wire.ip import decode_ip, ip_protocol
from lab.wire.udp import UDP_PROTOCOL

EXPECTED_PACKETS = 3
MININET_REACTION_S = 2.0  # how late h2's endpoint may take a copy on Mininet, past the spacing
WINDOW_PACKETS = 64  # h2's replay window (lab.esp.sa default, RFC 4303 §3.4.3)


def collect(sub: Submission) -> TraceQuery:
    forged: list[bytes] = []
    scn = scenario.scenario_for(sub.backend)
    sniff_at = scenario.sniff_at(sub.backend)

    def attack(ctx: RunContext) -> None:
        # on Mininet a loaded machine may set up the tunnel late: wait (bounded) for more than a window
        sniffed = captured_when(replay, ctx, scenario.SNIFF_INTERFACE, _window_seen, attack, since=sniff_at)
        if sniffed is None:
            return
        got = sub.call("replay", sniffed)
        if not isinstance(got, list) or len(got) != EXPECTED_PACKETS:
            raise SubmissionError(
                "bad_result", f"replay() must return a list of {EXPECTED_PACKETS} packets, got {_describe(got)}"
            )
        for i, packet in enumerate(got):
            if not isinstance(packet, bytes):
                raise SubmissionError("bad_result", f"packet {i + 1} is a {type(packet).__name__}, not a packet")
            try:
                packet_bytes(packet)
            except ValueError as exc:
                raise SubmissionError("bad_result", f"packet {i + 1}: {exc}") from None
        # the simulator stands still while replay() runs; on Mininet the copies follow its return
        start = max(ctx.now, sniff_at)
        spacing = scenario.spacing_s(ctx.backend)
        for i, packet in enumerate(got):
            ctx.inject(scenario.ATTACKER, packet, at=start + spacing * (i + 1))
            forged.append(packet)

    with tempfile.TemporaryDirectory(prefix="tcplab-esp-replay-") as tmp:
        replay = sub.replay(scn, seed=scenario.SEED, pcap_dir=Path(tmp))
        replay.at(sniff_at, attack)
        q = replay.finish()
    sent = [i["at"] for i in q.extra["injected"] if i["node"] == scenario.ATTACKER]
    q.extra["injected"] = [{"at": at, **esp_fields(packet)} for at, packet in zip(sent, forged, strict=False)]
    return q


def _window_seen(packets: list[bytes]) -> bool:
    """More than h2's replay window of ESP packets of one SA captured (h1's, which sends first:
    what replay() needs)."""
    per_spi: dict[int, int] = {}
    for packet in packets:
        if "spi" in (fields := esp_fields(packet)):
            per_spi[fields["spi"]] = per_spi.get(fields["spi"], 0) + 1
    return max(per_spi.values(), default=0) > WINDOW_PACKETS + EXPECTED_PACKETS


def _describe(value: object) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return f"a {type(value).__name__}"


def esp_fields(packet: bytes) -> dict[str, Any]:
    """Addresses, and SPI and sequence number when ``packet`` is ESP in UDP 4500 (else ``why`` it is not)."""
    try:
        ip = decode_ip(packet)
    except DecodeError as exc:
        return {"src": None, "dst": None, "why": f"not an IP packet ({exc})"}
    out: dict[str, Any] = {"src": ip.src, "dst": ip.dst}
    payload = ip.payload
    if ip_protocol(ip) != UDP_PROTOCOL or len(payload) < 16:
        return out | {"why": "not UDP"}
    if int.from_bytes(payload[2:4], "big") != scenario.NAT_T_PORT:
        return out | {"why": f"UDP to port {int.from_bytes(payload[2:4], 'big')}, not {scenario.NAT_T_PORT}"}
    spi, seq = int.from_bytes(payload[8:12], "big"), int.from_bytes(payload[12:16], "big")
    if spi == 0:
        return out | {"why": "an IKE message (the non-ESP marker), not ESP"}
    return out | {"spi": spi, "seq": seq}


def _receiver_ip(q: TraceQuery) -> str | None:
    rec = q.first(layer="esp", name="key_updated", node=scenario.RECEIVER)
    return rec.data.get("local") if rec else None


def reaction(q: TraceQuery, index: int) -> tuple[str, str]:
    """How h2 took injected packet ``index``: (kind, what to say). Kinds: not_esp, elsewhere, not_seen,
    accepted, and the drop reasons of the esp layer (duplicate, too_old, integrity, wrong_spi, ...)."""
    if index >= len(q.extra["injected"]):
        return "not_seen", f"packet {index + 1} was never sent: the run had ended before its time"
    sent = q.extra["injected"][index]
    if "spi" not in sent:
        return "not_esp", f"packet {index + 1} is {sent['why']}"
    receiver = _receiver_ip(q)
    if sent["dst"] != receiver:
        return "elsewhere", f"packet {index + 1} went to {sent['dst']}, not to h2 ({receiver})"
    at, seq = sent["at"], sent["seq"]
    spacing = scenario.spacing_s(q.extra["backend"])
    if q.extra["backend"] == "mininet":  # a loaded machine: h2's endpoint may take it after the next one left
        spacing += MININET_REACTION_S  # (matched by sequence number: each copy has its own)
    window = {"after": at - 1e-9, "before": at + spacing - 1e-9}
    dropped = q.first(layer="esp", name="segment_dropped", node=scenario.RECEIVER, seq=seq, **window)
    taken = q.select(layer="esp", name="segment_received", node=scenario.RECEIVER, seq=seq)
    if dropped is not None:
        edge = f" ({dropped.data['detail']})" if dropped.data.get("detail") else ""
        return dropped.data[
            "reason"
        ], f"packet {index + 1} (sequence number {seq}) was dropped: {dropped.data['reason']}{edge}"
    if len(taken) > 1 or any(at <= r.t < at + spacing for r in taken):
        return "accepted", f"packet {index + 1} (sequence number {seq}) was accepted by h2's SA"
    return "not_seen", f"packet {index + 1} never reached h2's ESP SA"


def packet_check(index: int, want: str):
    def passed(q: TraceQuery) -> tuple[bool, str]:
        got, said = reaction(q, index)
        return got == want, said

    return passed


def all_reached(q: TraceQuery) -> tuple[bool, str]:
    seen = [reaction(q, i) for i in range(EXPECTED_PACKETS)]
    bad = [said for kind, said in seen if kind in ("not_esp", "elsewhere", "not_seen", "malformed", "wrong_spi")]
    if bad:
        return False, "; ".join(bad)
    return True, "; ".join(said for _kind, said in seen)


def moved_right(q: TraceQuery) -> tuple[bool, str]:
    got, said = reaction(q, 2)
    if got != "integrity":
        return False, said
    seq = q.extra["injected"][2]["seq"]
    before = [
        r.data["seq"]
        for r in q.select(
            layer="esp", name="segment_received", node=scenario.RECEIVER, before=q.extra["injected"][2]["at"]
        )
    ]
    edge = max(before, default=0)
    if seq <= edge:
        return False, f"{said}, but its sequence number {seq} is not right of the window (right edge {edge})"
    return True, f"{said}: sequence number {seq}, right of the window's edge {edge}"


def tunnel_unharmed(q: TraceQuery) -> tuple[bool, str]:
    results = q.extra["results"]
    bad = [
        f"{n}: {r['bytes_received']} of {r['bytes_expected']} bytes"
        for n, r in results.items()
        if not r["sha256_match"]
    ]
    if bad:
        return False, "; ".join(bad)
    accepted = [said for kind, said in (reaction(q, i) for i in range(EXPECTED_PACKETS)) if kind == "accepted"]
    if accepted:
        return False, "; ".join(accepted)
    return True, ", ".join(f"{n} {r['bytes_received']} bytes intact" for n, r in results.items())


CHECKS = (
    Check(
        "the copies reach h2's ESP SA",
        all_reached,
        "Return whole IP packets (no Ether) that h1 sent to h2: UDP to port 4500 whose payload starts with a "
        "non-zero SPI. Copy them as captured (bytes(packet) or the packet itself); a changed packet needs "
        "Scapy to recompute lengths and checksums (do not set them).",
    ),
    Check(
        "a replayed packet is dropped as a duplicate",
        packet_check(0, "duplicate"),
        "RFC 4303 §3.4.3: a packet whose sequence number is inside the window and already marked received is a "
        "duplicate. Packet 1 must be an exact copy of a recent packet from h1 to h2.",
        points=2,
    ),
    Check(
        "an old packet is dropped as left of the window",
        packet_check(1, "too_old"),
        f"The window covers the last {WINDOW_PACKETS} sequence numbers up to the highest one received; anything "
        "further left is dropped before its ICV is even checked. Which captured packet's sequence number is that "
        "far behind the newest?",
        points=2,
    ),
    Check(
        "a sequence number moved right of the window fails integrity",
        moved_right,
        "A sequence number right of the window passes the window check, but it is authenticated: AES-GCM takes "
        "SPI and sequence number as additional authenticated data (RFC 4106 §5), so the ICV fails. Rewrite bytes "
        "4..8 of the UDP payload to a number above the newest one, and keep the rest.",
        points=2,
    ),
    Check(
        "the tunnel carries on unharmed",
        tunnel_unharmed,
        "Both 128 KiB streams must arrive intact (SHA-256) and no copy may be accepted: see h2's esp records.",
    ),
)

EXERCISE = Exercise(
    name="esp_replay",
    title="Replay captured ESP packets with Scapy and watch the anti-replay window drop them",
    topic="ike",
    minutes=25,
    rfcs=("RFC 4303 §3.4.3, §3.3.3", "RFC 4106 §5", "RFC 3948 §2"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=30.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
