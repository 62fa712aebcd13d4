"""The MPTCP exercises beyond the shared checks of test_exercises.py: broken submissions, the sandboxed
scheduler run, and the slips each grader must tell apart."""

from __future__ import annotations

import pytest

from exercises.grading import grade

MPTCP = (
    "mptcp_scheduler",
    "mptcp_path_failure",
    "mptcp_fallback_fix",
    "mptcp_hetero",
    "mptcp_forged_join",
    "mptcp_fairness",
)


def _by_name(report):
    return {c.name: c for c in report.checks}


@pytest.mark.parametrize("name", MPTCP)
def test_a_syntax_error_fails_cleanly(name: str, make_workdir) -> None:
    ex, directory = make_workdir(name)
    (directory / "solution.py").write_text("def broken(:\n")
    report = grade(ex, directory)
    runs = report.checks[0]
    assert not runs.passed and "syntax error in solution.py line 1" in runs.detail
    assert report.points == 0 and len(report.checks) == len(ex.checks) + 1


SCHEDULER_HEAD = "from lab.mptcp.strategies import Scheduler\n\n\nclass MyScheduler(Scheduler):\n"


@pytest.mark.parametrize(
    ("body", "kind", "detail"),
    [
        (
            "    def pick(self, candidates):\n        raise RuntimeError('boom')\n",
            "solution.py runs",
            "RuntimeError: boom",
        ),
        ("    def pick(self, candidates):\n        return 'path B'\n", "solution.py runs", "not one of the candidates"),
        ("    pass\n", "solution.py runs", "abstract"),
    ],
)
def test_scheduler_that_raises_or_misbehaves(body: str, kind: str, detail: str, make_workdir) -> None:
    ex, directory = make_workdir("mptcp_scheduler")
    (directory / "solution.py").write_text(SCHEDULER_HEAD + body)
    report = grade(ex, directory)
    assert not report.passed and report.points == 0
    assert detail in _by_name(report)[kind].detail, report.to_text()


def test_scheduler_missing_class_and_endless_loop(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_scheduler")
    (directory / "solution.py").write_text("class Other:\n    pass\n")
    report = grade(ex, directory)
    assert "defines no class MyScheduler" in report.checks[0].detail
    (directory / "solution.py").write_text(
        SCHEDULER_HEAD + "    def pick(self, candidates):\n        while True:\n            pass\n"
    )
    report = grade(ex, directory, time_limit_s=6.0)
    assert not report.checks[0].passed and "did not finish within 6 s" in report.checks[0].detail


def test_scheduler_runs_the_graders_scenario_not_the_copy(make_workdir) -> None:
    """The sandbox imports the grader's scenario module: a solution that rewrites the working copy's
    scenario.py (or registers its own scenario module) changes nothing."""
    ex, directory = make_workdir("mptcp_scheduler")
    (directory / "scenario.py").write_text("SEED = 1\nraise SystemExit('the copy must not be imported')\n")
    report = grade(ex, directory)
    assert report.checks[0].passed and not report.passed
    assert "of the data, path B" in _by_name(report)["both paths carry a fair share of the data"].detail


def test_path_failure_without_backup_loses_only_the_backup_check(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_path_failure")
    (directory / "solution.py").write_text("def client_config():\n    return {'path_manager': 'paired'}\n")
    by = _by_name(grade(ex, directory))
    assert by["no byte lost"].passed and by["the transfer completes by 5 s"].passed
    assert not by["path B stays a backup while path A works"].passed
    assert "before the failure path B carried" in by["path B stays a backup while path A works"].detail


def test_path_failure_refuses_a_bad_config(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_path_failure")
    (directory / "solution.py").write_text("def client_config():\n    return {'scheduler': 'fastest'}\n")
    report = grade(ex, directory)
    assert not report.checks[0].passed and "unknown MPTCP scheduler 'fastest'" in report.checks[0].detail


def test_fallback_fix_slips(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_fallback_fix", reference=True)
    path = directory / "solution.py"
    text = path.read_text()
    late = text.replace(
        'FIREWALL = {"kinds": [253, 254], "when": "all"}', 'FIREWALL = {"kinds": [30, 253, 254], "when": "syn"}'
    )
    late = late.replace('"reason_h1": "no MP_CAPABLE in the SYN/ACK"', '"reason_h1": "no MP_CAPABLE in the SYN"')
    path.write_text(late)
    by = _by_name(grade(ex, directory))
    assert not by["MPTCP survives the firewall"].passed and "fell back" in by["MPTCP survives the firewall"].detail
    assert "That is h2's reason." in by["h1's fallback reason"].detail
    assert by["h2's fallback reason"].passed and by["the site policy still holds"].detail.startswith("r1 now strips")
    path.write_text(text.replace('"kinds": [253, 254]', '"kinds": []'))
    by = _by_name(grade(ex, directory))
    assert by["MPTCP survives the firewall"].passed and not by["the site policy still holds"].passed


def test_forged_join_slips(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_forged_join", reference=True)
    path = directory / "solution.py"
    text = path.read_text()
    # the right token for SYN 1 too: h2 answers it instead of refusing it
    path.write_text(text.replace("token ^ 0x5A5A5A5A", "token"))
    by = _by_name(grade(ex, directory))
    assert not by["a wrong token is refused"].passed
    assert "MP_JOIN SYN/ACK" in by["a wrong token is refused"].detail
    assert by["h1's transfer is untouched"].passed
    # the real HMAC on both joins: the first one is accepted, not refused
    path.write_text(text.replace("if i == 1:", "if False:"))
    by = _by_name(grade(ex, directory))
    assert not by["a forged HMAC is refused"].passed and "join succeeded" in by["a forged HMAC is refused"].detail
    assert by["the keys seen in the clear are enough to join"].passed
    # keys swapped in the HMAC: h2 resets the second join too
    path.write_text(text.replace("mp_join_ack_hmac(key_h1, key_h2,", "mp_join_ack_hmac(key_h2, key_h1,"))
    by = _by_name(grade(ex, directory))
    real = by["the keys seen in the clear are enough to join"]
    assert not real.passed and "MP_JOIN third ACK with a wrong HMAC" in real.detail
    path.write_text(text.replace("return forged", "return [b'not a packet', *forged[1:]]"))
    report = grade(ex, directory)
    assert not report.checks[0].passed and "packet 1" in report.checks[0].detail


def test_hetero_needs_path_b_and_a_valid_config(make_workdir) -> None:
    ex, directory = make_workdir("mptcp_hetero")
    path = directory / "solution.py"
    path.write_text("def client_config():\n    return {'path_manager': 'none'}\n")
    by = _by_name(grade(ex, directory))
    assert by["the transfer is byte-exact"].passed
    assert not by["path B carries part of the data"].passed
    assert "path B carried 0.0%" in by["path B carries part of the data"].detail
    path.write_text("def client_config():\n    return {'mapping_bytes': 0}\n")
    report = grade(ex, directory)
    assert not report.checks[0].passed and "mapping_bytes must be" in report.checks[0].detail
    path.write_text("def client_config():\n    return ['min_rtt']\n")
    report = grade(ex, directory)
    assert "must return a dict" in report.checks[0].detail
