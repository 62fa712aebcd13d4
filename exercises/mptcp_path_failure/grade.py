"""Grader for mptcp_path_failure: ``python -m exercises.mptcp_path_failure.grade [DIR] [--json]``."""

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
from exercises.mptcp_path_failure import scenario as sc
from lab.errors import ConfigError

BACKUP_SHARE = 0.05  # before the failure, path B carries at most this share of the data


def client_settings(sub: Submission) -> dict[str, Any]:
    """``client_config()`` from the submission, checked as MptcpConfig settings. Raises SubmissionError."""
    from lab.mptcp.config import MptcpConfig

    got = sub.call("client_config")
    if not isinstance(got, dict):
        raise SubmissionError("bad_result", f"client_config() must return a dict, got a {type(got).__name__}")
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in got.items()}
    try:
        MptcpConfig(**settings)
    except (ConfigError, TypeError) as exc:
        raise SubmissionError("bad_result", f"client_config() is not a valid MptcpConfig: {exc}") from None
    return settings


def collect(sub: Submission) -> TraceQuery:
    settings = client_settings(sub)
    q = sub.replay(sc.scenario(settings), seed=sc.SEED).finish()
    q.extra["client"] = settings
    return q


def path_bytes(q: TraceQuery, **window: float) -> dict[str, int]:
    out = {"A": 0, "B": 0}
    for r in q.select(layer="tcp", name="segment_sent", node="h1", **window):
        local = str(r.data.get("conn", "")).split(":")[0]
        key = "A" if local == sc.PATH_A[0] else "B" if local == sc.PATH_B[0] else None
        if key:
            out[key] += int(r.data.get("len", 0))
    return out


def byte_exact(q: TraceQuery) -> tuple[bool, str]:
    res = q.extra["results"]["bulk"]
    if res.get("sha256_match") and res["bytes_received"] == res["bytes_expected"]:
        return True, f"h2 got all {res['bytes_expected']} bytes, SHA-256 matches"
    return (
        False,
        f"h2 got {res['bytes_received']} of {res['bytes_expected']} bytes ({res.get('error') or 'unfinished'})",
    )


def reinjected_on_b(q: TraceQuery) -> tuple[bool, str]:
    moved = [
        r
        for r in q.select(layer="mptcp", name="state_updated", node="h1", after=sc.FAIL_AT_S)
        if str(r.data.get("reinjected", {}).get("from_subflow", "")).startswith(sc.PATH_A[0] + ":")
    ]
    after = path_bytes(q, after=sc.FAIL_AT_S, before=sc.REPAIR_AT_S)
    if not moved:
        return False, "no reinjection of path A's data was recorded after the failure"
    if after["B"] == 0:
        return False, (
            f"{len(moved)} reinjection records for path A's data, but path B carried nothing while path A was down"
        )
    why = sorted({r.data["reinjected"].get("why", "?") for r in moved})
    return (
        True,
        f"{len(moved)} reinjections of path A's data ({', '.join(why)}); path B then carried {after['B']} bytes",
    )


def in_time(q: TraceQuery) -> tuple[bool, str]:
    res = q.extra["results"]["bulk"]
    done = res.get("completed_at")
    if done is None:
        return False, "the transfer never completed"
    return (
        done <= sc.DEADLINE_S + timing_slack_s(q),
        f"complete at {done:.2f} s, deadline {sc.DEADLINE_S:g} s{slack_note(q)} "
        f"(path A is down from {sc.FAIL_AT_S:g} s to {sc.REPAIR_AT_S:g} s)",
    )


def backup_kept(q: TraceQuery) -> tuple[bool, str]:
    before = path_bytes(q, before=sc.FAIL_AT_S)
    total = sum(before.values()) or 1
    share = before["B"] / total
    return share <= BACKUP_SHARE, f"before the failure path B carried {share:.0%} of the data"


CHECKS = (
    Check(
        "no byte lost",
        byte_exact,
        "h2 must get every byte (SHA-256). Does h1 open a subflow on path B at all (join, path_manager)?",
    ),
    Check(
        "path A's data is reinjected on path B",
        reinjected_on_b,
        "When path A's subflow stops getting ACKs, its unacknowledged data must go out again on path B. "
        "Look at h1's mptcp state_updated records after 1 s: the reinjection happens, but which subflow may the "
        "scheduler use while the path-A subflow is still ESTABLISHED? See the schedulers in lab.mptcp.strategies.",
        points=2,
    ),
    Check(
        f"the transfer completes by {sc.DEADLINE_S:g} s",
        in_time,
        "Path A stays down until 10 s: a transfer that waits for it misses the deadline. The backup must take "
        "over as soon as path A looks dead (its retransmission timer fired).",
        points=2,
    ),
    Check(
        "path B stays a backup while path A works",
        backup_kept,
        "Path B is metered: keep h1's subflow on it a backup (backup_addresses) so it carries data only when "
        "path A cannot.",
    ),
)

EXERCISE = Exercise(
    name="mptcp_path_failure",
    title="Survive a path failure without losing a byte",
    topic="mptcp",
    minutes=20,
    rfcs=("RFC 8684 §3.3.6", "RFC 8684 §3.3.8", "RFC 8684 §3.2"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=20.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
