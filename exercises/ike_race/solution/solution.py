"""ike_race, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

from pathlib import Path

from lab.trace import read_jsonl

TRACE = Path(__file__).with_name("trace.jsonl")


def answers() -> dict:
    records = [r for r in read_jsonl(TRACE) if r.node == "h1" and r.name == "state_updated"]
    ike = [r for r in records if r.layer == "ike"]
    # one RTT: the racing session's TCP three-way handshake (SYN out, SYN-ACK back)
    rtt = next(r.data["after_s"] for r in records if r.layer == "iketcp" and r.data.get("event") == "connected")

    def timeline(session: str) -> dict:
        connect = next(r for r in ike if r.data.get("session") == session and r.data.get("event") == "connect")
        won = next(r for r in ike if r.data.get("session") == session and r.data.get("event") == "won")
        # the winning SA got its IKE_SA_INIT response at the 'won' instant; IKE_AUTH follows, one more RTT
        sa = next(r.data["sa"] for r in ike if r.data.get("to") == "AUTH_SENT" and abs(r.t - won.t) < 1e-9)
        up = next(r for r in ike if r.data.get("sa") == sa and r.data.get("to") == "ESTABLISHED")
        udp_timeout = [r for r in ike if r.data.get("session") == session and r.data.get("event") == "timeout"]
        return {
            "established": up.t - connect.t,
            "winner": won.data["transport"],
            "udp_wait": udp_timeout[0].t - connect.t if udp_timeout else None,
        }

    seq, race = timeline("sequential"), timeline("racing")
    return {
        "rtt_ms": round(rtt * 1000, 3),
        "sequential_rtts": round(seq["established"] / rtt, 2),
        "racing_rtts": round(race["established"] / rtt, 2),
        "racing_winner": race["winner"],  # UDP is dropped: TCP, started 20 ms after UDP, completes first
        "sequential_udp_wait_s": round(seq["udp_wait"], 3),
    }
