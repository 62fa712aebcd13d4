"""Graders on Mininet (``--backend mininet``): our endpoints on real packets in Mininet hosts.

For exercises spanning MPTCP (the attendee's scheduler inside h1's endpoint
process, a firewall realised with iptables), ENO/tcpcrypt (plaintext looked
for in r1's real captures) and IKE (UDP blocked with nftables, wall-clock
timing bounds): the reference solution gets full marks and the untouched
starter fails with the intended feedback. Every test builds Mininet networks:
run under ``flock /tmp/tcplab-mininet.lock``; they share one xdist group
with tests/mininet/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exercises.grading import GradeReport, MininetReplay, grade, mininet_refusal
from tests.exercises.conftest import workdir
from tests.mininet.conftest import mininet_skip_reason

_SKIP = mininet_skip_reason()

pytestmark = [
    pytest.mark.mininet,
    pytest.mark.xdist_group("mininet"),
    pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
]

# exercise -> {check that the untouched starter fails: what its detail says}
STARTER_FAILS: dict[str, dict[str, str]] = {
    "mptcp_scheduler": {
        "both paths carry a fair share of the data": "of the data, path B",
        "goodput above the best single path": "one path carries at most 8 Mbit/s (on Mininet",
    },
    "mptcp_fallback_fix": {
        "the middlebox": "middlebox: no answer yet",
        "MPTCP survives the firewall": "no MP_CAPABLE in the SYN",
    },
    "eno_mandatory": {
        "no byte of the secret crosses r1 in the clear": "65536 bytes of the secret crossed r1 in the clear",
        "h1 refuses the connection": "h1's ENO state ended as fallback, reason no_eno_option",
    },
    "ike_fallback_config": {
        "hotspot: over TCP 4500 within 1.0 s": "+0.25 s slack for real processes on Mininet",
        "port-443: IKE SA established over TCP": "port-443: the IKE SA never came up",
    },
}


def _graded(report: GradeReport) -> str:
    return f"{report.to_text()}\n({report.wall_time_s:.1f} s)"


@pytest.mark.parametrize("name", sorted(STARTER_FAILS))
def test_reference_full_marks_and_starter_fails_on_mininet(name: str, tmp_path: Path) -> None:
    ex, reference = workdir(name, tmp_path / "reference", reference=True)
    assert mininet_refusal(ex) is None
    report = grade(ex, reference, backend="mininet")
    assert report.backend == "mininet"
    assert report.passed and report.points == report.max_points, _graded(report)

    _, starter = workdir(name, tmp_path / "starter")
    report = grade(ex, starter, backend="mininet")
    assert not report.passed, _graded(report)
    assert report.checks[0].passed, _graded(report)  # the starter runs; its checks fail
    by = {c.name: c for c in report.checks}
    for check, detail in STARTER_FAILS[name].items():
        got = by[check]
        want = next(c.feedback for c in ex.checks if c.name == check)
        assert not got.passed and got.feedback == want, _graded(report)
        assert detail in got.detail, _graded(report)


def test_attendee_scheduler_raising_inside_the_endpoint_fails_cleanly(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_scheduler")
    (directory / "solution.py").write_text(
        "from lab.mptcp.strategies import Scheduler\n\n\nclass MyScheduler(Scheduler):\n"
        "    def pick(self, candidates):\n        raise RuntimeError('boom in pick')\n"
    )
    report = grade(ex, directory, backend="mininet")
    runs = report.checks[0]
    assert not runs.passed and report.points == 0, _graded(report)
    assert "RuntimeError: boom in pick" in runs.detail and "solution.py" in runs.detail, _graded(report)


def test_mid_run_pause_is_refused_on_mininet(make_workdir) -> None:
    from exercises.tcp_reset_attack import scenario
    from lab.errors import ConfigError

    ex, _ = make_workdir("tcp_reset_attack")
    assert "cannot be graded on Mininet" in (mininet_refusal(ex) or "")
    with pytest.raises(ConfigError, match="cannot pause"):
        MininetReplay(scenario.SCENARIO, seed=scenario.SEED, pcap_dir=Path("/nonexistent")).run_until(1.0)
