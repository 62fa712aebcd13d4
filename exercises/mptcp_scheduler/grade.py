"""Grader for mptcp_scheduler: ``python -m exercises.mptcp_scheduler.grade [DIR] [--json]``."""

from __future__ import annotations

import sys

from exercises.grading import Check, Exercise, SimReplay, Submission, SubmissionError, TraceQuery, main_for
from exercises.mptcp_scheduler import scenario as sc
from exercises.mptcp_scheduler.sandbox import REGISTERED_AS, mininet_scenario, open_remote, proxy_class

MIN_SHARE = 0.2  # each path carries at least this share of the data bytes h1 sent


def collect(sub: Submission) -> TraceQuery:
    """The grader runs the scenario in its own process; h1's connection asks the attendee's
    ``MyScheduler``, running in the sandbox, for each decision (one call per decision over a pipe:
    see ``sandbox``). Nothing the submission returns besides those decisions is read."""
    if sub.backend == "mininet":
        return collect_mininet(sub)
    from lab.mptcp.strategies import register_scheduler

    remote = open_remote(sub, time_limit_s=sub.time_limit_s)
    try:
        register_scheduler(REGISTERED_AS, proxy_class(remote))
        try:
            q = SimReplay(sc.scenario(REGISTERED_AS), seed=sub.seed(sc.SEED)).finish()
        except SubmissionError:
            raise
        except Exception:
            if remote.failure is not None:
                raise remote.failure from None
            raise
        if remote.failure is not None:  # raised inside the run and swallowed there
            raise remote.failure
        q.extra["scheduler_calls"] = remote.calls
        return q
    finally:
        sub.protections = remote.protections
        remote.close()


def collect_mininet(sub: Submission) -> TraceQuery:
    """The grader's scenario on Mininet; h1's endpoint process starts the sandbox and asks the
    attendee's ``MyScheduler`` there for each decision. Raises SubmissionError when the class is
    unusable or the run with it fails."""
    from exercises.grading import MininetReplay
    from lab.errors import LabError

    remote = open_remote(sub, time_limit_s=sub.time_limit_s)  # fails early, with the sandbox's report
    sub.protections = remote.protections
    remote.close()
    try:
        q = MininetReplay(
            mininet_scenario(sub.directory, time_limit_s=sub.time_limit_s), seed=sub.seed(sc.SEED)
        ).finish()
    except LabError as exc:
        raise SubmissionError("exception", f"the Mininet run with your scheduler failed: {exc}") from None
    failed = [r for r in q.select(layer="endpoint", name="error") if r.node == "h1"]
    if failed:  # as in the simulator: an exception inside pick() is the submission's failure
        detail = failed[0].data.get("detail") or ""
        raise SubmissionError(
            "exception",
            f"the run with your scheduler failed: {failed[0].data.get('reason')}",
            "\n".join(detail) if isinstance(detail, list) else str(detail),
        )
    q.extra["single_path_mbps"] = sc.MININET_PATH_MBPS
    return q


def path_bytes(q: TraceQuery) -> dict[str, int]:
    """Payload bytes h1 sent on each path (retransmissions included)."""
    out = {"A": 0, "B": 0}
    for r in q.select(layer="tcp", name="segment_sent", node="h1"):
        local = str(r.data.get("conn", "")).split(":")[0]
        if local == sc.PATH_A[0]:
            out["A"] += int(r.data.get("len", 0))
        elif local == sc.PATH_B[0]:
            out["B"] += int(r.data.get("len", 0))
    return out


def byte_exact(q: TraceQuery) -> tuple[bool, str]:
    res = q.extra["results"]["bulk"]
    if res.get("sha256_match") and res["bytes_received"] == res["bytes_expected"]:
        return True, f"h2 got all {res['bytes_expected']} bytes, SHA-256 matches"
    why = " (the run hit its time limit: the transfer stalled)" if q.extra.get("timed_out") else ""
    if q.extra.get("errors"):
        why += f" (the run failed: {'; '.join(q.extra['errors'])})"
    return False, f"h2 got {res['bytes_received']} of {res['bytes_expected']} bytes{why}"


def both_paths(q: TraceQuery) -> tuple[bool, str]:
    by = path_bytes(q)
    total = sum(by.values()) or 1
    shares = {k: v / total for k, v in by.items()}
    detail = f"path A carried {shares['A']:.0%} of the data, path B {shares['B']:.0%}"
    return min(shares.values()) >= MIN_SHARE, detail


def faster_than_one_path(q: TraceQuery) -> tuple[bool, str]:
    res = q.extra["results"]["bulk"]
    goodput = res.get("goodput_mbps")
    if not goodput or not res.get("sha256_match"):
        return False, "the transfer did not complete"
    single = float(q.extra.get("single_path_mbps", sc.SINGLE_PATH_MBPS))
    ok = goodput > single * 1.1
    note = ""
    if q.extra.get("backend") == "mininet":
        note = (
            f" (on Mininet each path is shaped to {single:g} Mbit/s instead of {sc.SINGLE_PATH_MBPS:g}, so that the "
            "paths, not the CPU of the Python endpoints tracing every segment, are the bottleneck)"
        )
    return ok, f"goodput {goodput:.1f} Mbit/s; one path carries at most {single:g} Mbit/s{note}"


CHECKS = (
    Check(
        "the transfer is byte-exact",
        byte_exact,
        "Every byte must arrive: pick() must return one of the candidates, and returning None for ever "
        "(waiting for a subflow that is not offered) stalls the connection.",
    ),
    Check(
        "both paths carry a fair share of the data",
        both_paths,
        f"Each path must carry at least {MIN_SHARE:.0%} of the bytes. The candidates are the subflows with room "
        "right now: if your pick() only ever returns the path-A subflow, path B stays idle.",
        points=2,
    ),
    Check(
        "goodput above the best single path",
        faster_than_one_path,
        "Both paths must be busy at the same time. Prefer the lowest sf.srtt among the candidates (a full "
        "subflow is not offered, so the other one gets the rest), rather than sending everything twice or "
        "spreading chunks blindly.",
        points=2,
    ),
)

EXERCISE = Exercise(
    name="mptcp_scheduler",
    title="Write an MPTCP scheduler that puts both paths to work",
    topic="mptcp",
    minutes=25,
    rfcs=("RFC 8684 §3.3.8", "RFC 8684 §3.3", "RFC 8041"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=60.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
