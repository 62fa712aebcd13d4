"""Grader for mptcp_hetero: ``python -m exercises.mptcp_hetero.grade [DIR] [--json]``."""

from __future__ import annotations

import functools
import sys
from typing import Any

from exercises.grading import Check, Exercise, SimReplay, Submission, SubmissionError, TraceQuery, main_for
from exercises.mptcp_hetero import scenario as sc
from lab.errors import ConfigError

# RFC 6356 §2 goal 1: a multipath flow should perform at least as well as a single path flow on the
# best of the paths; the reference beats it (about 1.03 in the simulator), so the check asks for more
MIN_RATIO = 1.0  # goodput / best single path's, strictly above it in the simulator
MININET_MIN_RATIO = 0.95  # on Mininet: both runs' goodput also depends on the endpoints' CPU on a shared machine
MIN_PATH_B_SHARE = 0.03


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
    if sub.backend == "mininet":  # measured in the same network, right after the MPTCP run
        q.extra["baseline"] = sub.replay(sc.baseline(), seed=sc.SEED).finish().extra["results"]["bulk"]
    else:
        q.extra["baseline"] = dict(sim_baseline())
    return q


@functools.lru_cache(maxsize=1)
def sim_baseline() -> dict[str, Any]:
    """The plain-TCP run's result in the simulator: deterministic (fixed seed), so run once per process."""
    return SimReplay(sc.baseline(), seed=sc.SEED).finish().extra["results"]["bulk"]


def path_bytes(q: TraceQuery) -> dict[str, int]:
    out = {"A": 0, "B": 0}
    for r in q.select(layer="tcp", name="segment_sent", node="h1"):
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


def vs_best_path(q: TraceQuery) -> tuple[bool, str]:
    res, base = q.extra["results"]["bulk"], q.extra["baseline"]
    mine, best = res.get("goodput_mbps"), base.get("goodput_mbps")
    if not mine or not res.get("sha256_match"):
        return False, "the MPTCP transfer did not complete"
    if not best:
        return False, "the plain-TCP baseline did not complete"
    ratio = mine / best
    mininet = q.extra.get("backend") == "mininet"
    ok = ratio >= MININET_MIN_RATIO if mininet else ratio > MIN_RATIO
    note = (
        f"; on Mininet {MININET_MIN_RATIO:.0%} of it is enough, since the Python endpoints' CPU adds noise there"
        if mininet
        else ""
    )
    return ok, (
        f"MPTCP {mine:.2f} Mbit/s vs plain TCP on path A alone {best:.2f} Mbit/s ({ratio:.1%}); "
        f"done at {res['completed_at']:.2f} s vs {base['completed_at']:.2f} s{note}"
    )


def path_b_used(q: TraceQuery) -> tuple[bool, str]:
    by = path_bytes(q)
    total = sum(by.values()) or 1
    share = by["B"] / total
    return share >= MIN_PATH_B_SHARE, f"path B carried {share:.1%} of the data h1 sent"


CHECKS = (
    Check(
        "the transfer is byte-exact",
        byte_exact,
        "h2 must get every byte (SHA-256). A setting that stalls the connection shows in h1's mptcp records.",
    ),
    Check(
        "goodput above the best single path",
        vs_best_path,
        "MPTCP must beat plain TCP on path A alone, the best single path (RFC 6356 §2, goal 1). With a "
        "1 MiB receive buffer, data outstanding on the 400 ms path blocks the window while path A idles: compare "
        "the subflows' rate_bps in h1's mptcp metrics_updated records, and look at the settings made for this "
        "(RFC 8041, Raiciu et al. NSDI 2012). Change one setting at a time.",
        points=3,
    ),
    Check(
        "path B carries part of the data",
        path_b_used,
        f"Switching path B off is not the answer: it must carry at least {MIN_PATH_B_SHARE:.0%} of the data.",
    ),
)

EXERCISE = Exercise(
    name="mptcp_hetero",
    title="Beat the best single path on heterogeneous paths",
    topic="mptcp",
    minutes=25,
    rfcs=("RFC 6356 §2", "RFC 8041", "RFC 8684 §3.3.6"),
    collect=collect,
    checks=CHECKS,
    time_limit_s=20.0,
    needs_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
