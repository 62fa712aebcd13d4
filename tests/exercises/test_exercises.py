"""Every exercise: full marks for the reference solution, the intended feedback for the untouched starter,
and no way around the grader by printing, by editing the working copy's scenario, or by hard-coding."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from exercises.grading import exercise_names, grade, load_exercise

NAMES = exercise_names()

# what the untouched starter must fail, and a piece of the detail it must show
STARTER_FAILS = {
    "mptcp_token": {
        "token() is the top 32 bits of SHA-256(key)": "expected 0x",
        "the keys read from the capture": "client key: you wrote None",
    },
    "eno_tep": {
        "host B's order decides": "you predicted 0x21, ENO negotiates 0x22",
        "roles come from the b bits": "ENO negotiates 0x22",
        "fallback to plain TCP": "ENO negotiates None (fallback)",
    },
    "iketcp_decode": {"the first frame's Length": "first_length: no answer yet"},
    "ike_fallback_timeline": {"the retransmission gaps": "udp_gaps_s: no answer yet"},
    "tcp_trace_questions": {"h2's MSS": "mss_h2: no answer yet"},
    "tcp_reset_attack": {
        "an in-window RST draws a challenge ACK": "packet 2 was received and silently ignored",
        "a RST at exactly RCV.NXT resets the connection": "packet 3 was received and silently ignored",
        "the transfer is cut short": "the transfer finished",
    },
    "tcp_syn_options": {"the SYN carries the options asked for": "MSS is 1460, want 536"},
    "mptcp_scheduler": {
        "both paths carry a fair share of the data": "of the data, path B",
        "goodput above the best single path": "one path carries at most 20 Mbit/s",
    },
    "mptcp_path_failure": {
        "path B stays a backup while path A works": "before the failure path B carried",
    },
    "mptcp_fallback_fix": {
        "the segment that lost option 30": "stripped_segment: no answer yet",
        "MPTCP survives the firewall": "h2 fell back to TCP at 0.010 s: no MP_CAPABLE in the SYN",
    },
    "mptcp_hetero": {"goodput above the best single path": "vs plain TCP on path A alone"},
    "mptcp_fairness": {"no more than one TCP flow's share": "(congestion: uncoupled)"},
    "mptcp_forged_join": {
        "the right token draws an MP_JOIN SYN/ACK": "h2 refused it (MP_JOIN for unknown token",
        "a forged HMAC is refused": "SYN 2 got no SYN/ACK, so there was no join to complete",
    },
    "eno_session_id": {"h1's session ID": "session_id_h1: no answer yet"},
    "eno_mandatory": {
        "no byte of the secret crosses r1 in the clear": "65536 bytes of the secret crossed r1 in the clear",
        "h1 refuses the connection": "h1's ENO state ended as fallback, reason no_eno_option",
    },
    "tcpcrypt_tamper": {
        "the frame that failed authentication": "not where the frame starts",
        "corrupted bytes delivered": "you answered 1. One byte was flipped",
    },
    "ike_fallback_config": {
        "hotspot: over TCP 4500 within 1.0 s": "established 2.121 s after the connect",
        "port-443: IKE SA established over TCP": "the IKE SA never came up",
    },
    "ike_race": {"sequential: time to the established SA, in RTTs": "which is a time in seconds"},
    "ike_pq_path": {
        "prediction: small-udp": "small-udp: no answer yet",
        "your settings: no-fragments within 6 RTTs": "IKE_AUTH of 1973 bytes went as IP fragments",
        "your settings: small-udp within 6 RTTs": "r1 dropped: UDP datagram larger than 1280 bytes",
        "your settings: udp-blocked within 6 RTTs": "after 2.165 s = 54.1 RTT",
    },
    "esp_replay": {
        "an old packet is dropped as left of the window": "was dropped: duplicate (window right edge",
        "a sequence number moved right of the window fails integrity": "was dropped: duplicate",
    },
}


def test_the_exercises_that_are_real_today_are_all_there() -> None:
    assert set(NAMES) == set(STARTER_FAILS)
    topics = {load_exercise(n).topic for n in NAMES}
    assert {"mptcp", "eno", "ike", "tcp"} <= topics


@pytest.mark.parametrize("name", NAMES)
def test_package_layout(name: str) -> None:
    ex = load_exercise(name)
    for f in ("README.md", "scenario.py", "starter.py", "grade.py", "solution/solution.py", *ex.files):
        assert (ex.package_dir / f).is_file(), f
    readme = (ex.package_dir / "README.md").read_text()
    assert "RFC" in readme and "## Your task" in readme and "## What to read" in readme
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)  # runnable with python -m, never numbered
    assert ex.checks and all(c.feedback for c in ex.checks)


@pytest.mark.parametrize("name", NAMES)
def test_reference_solution_gets_full_marks(name: str, make_workdir) -> None:
    ex, directory = make_workdir(name, reference=True)
    report = grade(ex, directory)
    assert report.passed, report.to_text()
    assert report.points == report.max_points > 0


@pytest.mark.parametrize("name", NAMES)
def test_untouched_starter_fails_with_the_intended_feedback(name: str, make_workdir) -> None:
    ex, directory = make_workdir(name)
    report = grade(ex, directory)
    assert not report.passed
    assert report.checks[0].name == "solution.py runs" and report.checks[0].passed  # it runs, it is just wrong
    by_name = {c.name: c for c in report.checks}
    for check, detail in STARTER_FAILS[name].items():
        result = by_name[check]
        assert not result.passed, check
        assert result.feedback == next(c.feedback for c in ex.checks if c.name == check)
        assert detail in result.detail, (check, result.detail)


def test_start_never_hands_out_the_reference_solution(make_workdir) -> None:
    for name in NAMES:
        ex, directory = make_workdir(name)
        reference = (ex.package_dir / "solution" / "solution.py").read_text()
        for path in directory.rglob("*"):
            if path.is_file():
                assert path.read_bytes() != reference.encode(), path
        assert not (directory / "solution").exists()
        assert (directory / "solution.py").read_text() == (ex.package_dir / "starter.py").read_text()


FAKE_OUTPUT = """
import json, sys
print("all checks passed")
print(json.dumps({"passed": True, "points": 99, "checks": []}))
sys.stderr.write("[PASS] everything\\n")
"""


@pytest.mark.parametrize("name", NAMES)
def test_printing_the_expected_output_does_not_pass(name: str, make_workdir) -> None:
    ex, directory = make_workdir(name)
    path = directory / "solution.py"
    path.write_text(path.read_text() + FAKE_OUTPUT)
    report = grade(ex, directory)
    assert not report.passed
    assert report.points < report.max_points


SCENARIO_EDITS = {
    "tcp_trace_questions": [("SEED = 5", "SEED = 6"), ('"loss_pct": 1.0', '"loss_pct": 0.0')],
    "tcp_reset_attack": [("SEED = 3", "SEED = 9"), ('"bw_mbps": 5.0', '"bw_mbps": 50.0')],
    "tcp_syn_options": [("SEED = 2", "SEED = 4"), ("WANT_MSS = 536", "WANT_MSS = 1460")],
    "iketcp_decode": [("SEED = 8229", "SEED = 1")],
    "mptcp_scheduler": [("SEED = 7", "SEED = 1"), ("SINGLE_PATH_MBPS = 20.0", "SINGLE_PATH_MBPS = 40.0")],
    "mptcp_path_failure": [("SEED = 11", "SEED = 1"), ("REPAIR_AT_S = 10.0", "REPAIR_AT_S = 1.5")],
    "mptcp_fallback_fix": [("SEED = 5", "SEED = 1"), ('"when": "all"}  # what', '"when": "syn"}  # what')],
    "mptcp_forged_join": [("SEED = 4", "SEED = 1"), ("SNIFF_AT = 0.3", "SNIFF_AT = 0.2")],
    "mptcp_hetero": [("SEED = 3", "SEED = 1"), ('"delay_ms": (10.0, 200.0)', '"delay_ms": (10.0, 10.0)')],
    "mptcp_fairness": [("SEED = 6356", "SEED = 1"), ("BW_MBPS = 5.0", "BW_MBPS = 20.0")],
    "eno_session_id": [("SEED = 8547", "SEED = 1"), ('SCENARIOS["eno-basic"]', 'SCENARIOS["eno-mismatch"]')],
    "eno_mandatory": [("SEED = 8547", "SEED = 1"), ('when="syn"', 'when="after_handshake"')],
    "tcpcrypt_tamper": [("SEED = 8548", "SEED = 1"), ("nth=45, offset=100", "nth=3, offset=1")],
    "ike_fallback_config": [("SEED = 9329", "SEED = 1"), ("HOTSPOT_BOUND_S = 1.0", "HOTSPOT_BOUND_S = 5.0")],
    "ike_race": [("SEED = 9329", "SEED = 1"), ('SCENARIOS["iketcp-race"]', 'SCENARIOS["hotspot"]')],
    "ike_pq_path": [("SEED = 9370", "SEED = 1"), ("SMALL_UDP_BYTES = 1280", "SMALL_UDP_BYTES = 9000")],
    "esp_replay": [("SEED = 4303", "SEED = 1"), ("SNIFF_AT = 0.5", "SNIFF_AT = 0.3")],
}


@pytest.mark.parametrize("name", sorted(SCENARIO_EDITS))
def test_editing_the_working_copy_of_the_scenario_changes_nothing(name: str, make_workdir) -> None:
    ex, directory = make_workdir(name, reference=True)
    before = grade(ex, directory)
    scenario = directory / "scenario.py"
    text = scenario.read_text()
    for old, new in SCENARIO_EDITS[name]:
        assert old in text, old
        text = text.replace(old, new)
    scenario.write_text(text)
    after = grade(ex, directory)
    assert before.passed and after.passed
    assert [(c.name, c.passed, c.detail) for c in before.checks] == [(c.name, c.passed, c.detail) for c in after.checks]


def test_trace_answers_from_another_seed_fail(make_workdir) -> None:
    """Regenerating the trace with an edited seed gives answers the grader does not accept."""
    from exercises.tcp_trace_questions import scenario

    ex, directory = make_workdir("tcp_trace_questions")
    other = scenario.truth(scenario.replay(seed=6))
    (directory / "solution.py").write_text(f"def answers():\n    return {other!r}\n")
    report = grade(ex, directory)
    failed = {c.name for c in report.checks if not c.passed}
    assert {"the SYN-ACK's acknowledgment number", "retransmitted data segments"} <= failed


def test_iketcp_answers_from_another_seed_fail(make_workdir) -> None:
    from exercises.iketcp_decode import scenario

    ex, directory = make_workdir("iketcp_decode")
    other = scenario.truth(scenario.build_stream(seed=1))
    (directory / "solution.py").write_text(f"def answers():\n    return {other!r}\n")
    report = grade(ex, directory)
    assert [c.name for c in report.checks if not c.passed] == ["the ESP packet's SPI"]


def test_hard_coded_token_table_fails(make_workdir) -> None:
    """mptcp_token draws fresh keys at every check: a table of the capture's tokens is not enough."""
    ex, directory = make_workdir("mptcp_token")
    (directory / "solution.py").write_text(
        "TABLE = {0xC8D9A211A0CE4F1B: (0x26B52C2C, 0x673028E4D9813309), 0x2601956E3097781E: (0xFE500976, 0)}\n"
        "def token(k): return TABLE.get(k, (0, 0))[0]\n"
        "def idsn(k): return TABLE.get(k, (0, 0))[1]\n"
        "def keys(): return 0xC8D9A211A0CE4F1B, 0x2601956E3097781E\n"
    )
    report = grade(ex, directory)
    by_name = {c.name: c.passed for c in report.checks}
    assert by_name["the server key's token is what the MP_JOIN SYNs quote"]
    assert not by_name["token() is the top 32 bits of SHA-256(key)"]
    assert not report.passed


def test_fallback_timeline_hints_per_field(make_workdir) -> None:
    ex, directory = make_workdir("ike_fallback_timeline")
    (directory / "solution.py").write_text(
        "def answers():\n"
        "    return {'udp_attempts': 3, 'udp_gaps_s': [1, 1], 'tcp_after_s': 4.005, 'wait_after_last_udp_s': 4.0,"
        " 'tcp_port': 4500, 'first_tcp_payload': 'iketcp', 'missing_field': 'marker'}\n"
    )
    report = grade(ex, directory)
    detail = {c.name: (c.passed, c.detail) for c in report.checks}
    assert detail["UDP attempts before giving up"] == (
        False,
        "udp_attempts: you answered 3. Count the first transmission too, not only the retransmissions.",
    )
    assert "n attempts have n - 1 gaps" in detail["the retransmission gaps"][1]
    assert "first to the last UDP attempt" in detail["from the first UDP attempt to TCP"][1]
    assert detail["the wait after the last UDP attempt"][0]  # 4.0 is within 10 ms of 4.005
    assert detail["the stream prefix"][0]  # case does not matter
    assert "non-ESP marker" in detail["what this capture's framing is missing"][1]


def test_reset_attack_reaction_for_a_bad_checksum(make_workdir) -> None:
    ex, directory = make_workdir("tcp_reset_attack", reference=True)
    path = directory / "solution.py"
    path.write_text(
        path.read_text().replace('flags="R", seq=seq % (1 << 32))', 'flags="R", seq=seq % (1 << 32), chksum=1)')
    )
    report = grade(ex, directory)
    reached = next(c for c in report.checks if c.name == "the forged RSTs reach h1's connection")
    assert not reached.passed
    assert "dropped by h1 as malformed" in reached.detail


def test_json_report_round_trips(make_workdir) -> None:
    ex, directory = make_workdir("eno_tep", reference=True)
    report = grade(ex, directory, attendee="ada")
    data = json.loads(report.to_json())
    assert data["exercise"] == "eno_tep" and data["attendee"] == "ada" and data["passed"] is True
    assert data["points"] == data["max_points"] == sum(c["max_points"] for c in data["checks"])


def test_graders_run_as_modules(make_workdir, tmp_path: Path) -> None:
    import subprocess
    import sys

    ex, directory = make_workdir("eno_tep", reference=True)
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "exercises.eno_tep.grade", str(directory), "--json", "--junit", str(junit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["passed"] is True
    assert "<testsuite" in junit.read_text()
    shutil.copyfile(ex.package_dir / "starter.py", directory / "solution.py")
    proc = subprocess.run(
        [sys.executable, "-m", "exercises.eno_tep.grade", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 1 and "[FAIL] host B's order decides" in proc.stdout
