"""The ENO and IKE exercises beyond the shared checks of test_exercises.py: broken submissions, answers
from another run, hard-coded answers, and the slips each grader must tell apart."""

from __future__ import annotations

import pytest

from exercises.grading import grade

ENO_IKE = ("eno_session_id", "eno_mandatory", "tcpcrypt_tamper", "ike_fallback_config", "ike_race")


def _by_name(report):
    return {c.name: c for c in report.checks}


def _solution(directory, text: str) -> None:
    (directory / "solution.py").write_text(text)


@pytest.mark.parametrize("name", ENO_IKE)
def test_broken_submissions_fail_cleanly(name: str, make_workdir) -> None:
    ex, directory = make_workdir(name)
    cases = [
        ("def broken(:\n", "syntax error in solution.py line 1"),
        ("raise RuntimeError('boom at import')\n", "boom at import"),
        ("while True:\n    pass\n", "did not finish within 3 s"),
    ]
    for text, detail in cases:
        _solution(directory, text)
        report = grade(ex, directory, time_limit_s=3)
        runs = report.checks[0]
        assert not runs.passed and detail in runs.detail, (text, runs.detail)
        assert report.points == 0 and len(report.checks) == len(ex.checks) + 1


@pytest.mark.parametrize(
    ("name", "function"),
    [
        ("eno_session_id", "answers"),
        ("eno_mandatory", "client_config"),
        ("tcpcrypt_tamper", "check"),
        ("ike_fallback_config", "initiator_config"),
        ("ike_race", "answers"),
    ],
)
def test_a_raising_or_looping_function_fails_without_crashing_the_grader(
    name: str, function: str, make_workdir
) -> None:
    ex, directory = make_workdir(name)
    other = "" if function == "answers" else "\n\ndef answers():\n    return {}\n"
    _solution(directory, f"def {function}(*args):\n    return {{}}['missing']\n" + other)
    report = grade(ex, directory)
    assert not report.passed and "KeyError" in "".join(c.detail for c in report.checks)
    _solution(directory, f"def {function}(*args):\n    while True:\n        pass\n" + other)
    report = grade(ex, directory, time_limit_s=3)
    assert not report.passed and "did not finish within 3 s" in "".join(c.detail for c in report.checks)


def test_session_id_from_another_seed_fails(make_workdir) -> None:
    from exercises.eno_session_id import scenario

    ex, directory = make_workdir("eno_session_id")
    other = scenario.truth(scenario.replay(seed=2))
    _solution(directory, f"def answers():\n    return {other!r}\n")
    checks = _by_name(grade(ex, directory))
    for name in ("h1's session ID", "h2's session ID"):
        assert not checks[name].passed
        assert "not this run's session ID" in checks[name].detail
    # the TEP, the role and the AEAD do not depend on the seed
    assert checks["the negotiated TEP"].passed and checks["h1's ENO role"].passed


def test_session_id_hints(make_workdir) -> None:
    from exercises.eno_session_id import scenario

    ex, directory = make_workdir("eno_session_id")
    want = scenario.truth(scenario.replay())
    default = scenario.truth(scenario.replay(seed=scenario.DEFAULT_RUN_SEED))
    sid = want["session_id_h1"]
    spaced = ":".join(sid[i : i + 2] for i in range(0, len(sid), 2)).upper()
    _solution(
        directory,
        "def answers():\n"
        f"    return {{'session_id_h1': {'0x' + spaced!r}, 'session_id_h2': {default['session_id_h2']!r},"
        " 'tep': 0x21, 'role_h1': 'B', 'aead': 'AEAD_AES_128_GCM'}\n",
    )
    checks = _by_name(grade(ex, directory))
    assert checks["h1's session ID"].passed  # separators, 0x and case do not matter
    assert "seed 1" in checks["h2's session ID"].detail
    assert "h2 (host B) chose" in checks["the negotiated TEP"].detail
    assert "h2 is host B" in checks["h1's ENO role"].detail
    _solution(directory, f"def answers():\n    return {{'session_id_h1': {sid[2:]!r}, 'session_id_h2': 'zz'}}\n")
    checks = _by_name(grade(ex, directory))
    assert "without the TEP byte" in checks["h1's session ID"].detail
    assert "not a hex string" in checks["h2's session ID"].detail


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{'policy': 'paranoid'}", "ENO policy must be one of"),
        ("{'policy': 'mandatory', 'teps': [0x99]}", "has no implementation here"),
        ("{'policy': 'mandatory', 'mood': 'strict'}", "unknown field(s) ['mood']"),
        ("{'policy': 'mandatory', 'teps': '0x23'}", "teps must be a list"),
        ("['mandatory']", "not a dict"),
    ],
)
def test_mandatory_bad_configs_are_reported(config: str, message: str, make_workdir) -> None:
    ex, directory = make_workdir("eno_mandatory")
    _solution(directory, f"def client_config():\n    return {config}\n\n\ndef answers():\n    return {{}}\n")
    report = grade(ex, directory)
    assert not report.passed and report.checks[0].name == "solution.py runs" and not report.checks[0].passed
    assert message in report.checks[0].detail


def test_mandatory_refusing_everything_is_not_enough(make_workdir) -> None:
    """Requiring the a bit h2 never sets keeps the secret off the wire, and breaks the clean path."""
    ex, directory = make_workdir("eno_mandatory", reference=True)
    path = directory / "solution.py"
    path.write_text(
        path.read_text().replace('"policy": "mandatory",', '"policy": "mandatory", "require_application_aware": True,')
    )
    checks = _by_name(grade(ex, directory))
    assert checks["no byte of the secret crosses r1 in the clear"].passed
    assert not checks["the same settings still encrypt on a clean path"].passed
    assert "without the middlebox" in checks["the same settings still encrypt on a clean path"].detail


def test_tamper_answers_typed_in_from_one_trace_fail_on_the_other(make_workdir) -> None:
    from exercises.tcpcrypt_tamper import scenario

    ex, directory = make_workdir("tcpcrypt_tamper")
    first = scenario.truth(scenario.replay("tcpcrypt-tamper"))
    other = scenario.truth(scenario.replay("variant"))
    assert first["failed_frame_offset"] != other["failed_frame_offset"]
    typed = {k: first[k] for k in ("detected_by", "failed_frame_offset", "reason", "corrupted_bytes_delivered")}
    typed["how_it_ended"] = "fin"
    _solution(directory, f"def check(records):\n    return {typed!r}\n")
    checks = _by_name(grade(ex, directory))
    frame = checks["the frame that failed authentication"]
    assert not frame.passed and frame.detail.startswith("variant: failed_frame_offset")
    assert checks["corrupted bytes delivered"].passed and checks["who detected the tampering"].passed
    assert "its flags" in checks["how the connection ended"].detail


def _ike_config(directory, **fields) -> None:
    _solution(directory, f"def initiator_config():\n    return {fields!r}\n")


def test_fallback_sequential_with_short_timers_also_passes(make_workdir) -> None:
    ex, directory = make_workdir("ike_fallback_config")
    _ike_config(directory, udp_timeout_s=0.3, tcp_ports=[4500, 443], tcp_connect_timeout_s=0.2)
    report = grade(ex, directory)
    assert report.passed, report.to_text()


def test_fallback_slips(make_workdir) -> None:
    ex, directory = make_workdir("ike_fallback_config")
    _ike_config(directory, transport="tcp", tcp_ports=[4500, 443], tcp_connect_timeout_s=0.2)
    checks = _by_name(grade(ex, directory))
    assert checks["hotspot: over TCP 4500 within 1.0 s"].passed
    assert not checks["open path: IKE stays on UDP"].passed
    assert "although UDP works there" in checks["open path: IKE stays on UDP"].detail
    _ike_config(directory, fallback="racing", tcp_ports=[443])  # fast, but not on the standard port
    checks = _by_name(grade(ex, directory))
    assert checks["port-443: over TCP 443 within 1.5 s"].passed
    assert "want tcp:4500" in checks["hotspot: over TCP 4500 within 1.0 s"].detail
    _ike_config(directory, fallback="racing", tcp_ports=[4500, 443])  # the 3 s connect timeout is too long
    checks = _by_name(grade(ex, directory))
    assert checks["port-443: IKE SA established over TCP"].passed
    assert "bound 1.5 s" in checks["port-443: over TCP 443 within 1.5 s"].detail
    _ike_config(directory, udp_timeout_s=0.01, tcp_ports=[4500, 443], tcp_connect_timeout_s=0.2)
    checks = _by_name(grade(ex, directory))
    assert not checks["open path: IKE stays on UDP"].passed


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fallback": "eager"}, "fallback must be one of"),
        ({"udp_ports": [53]}, "udp_ports must be 500 and/or 4500"),
        ({"tcp_ports": "4500"}, "tcp_ports must be a list"),
        ({"udp_timeout_s": -1}, "udp_timeout_s must be a number of seconds"),
        ({"psk": "x"}, "unknown field(s) ['psk']"),
    ],
)
def test_fallback_bad_configs_are_reported(fields: dict, message: str, make_workdir) -> None:
    ex, directory = make_workdir("ike_fallback_config")
    _ike_config(directory, **fields)
    report = grade(ex, directory)
    assert not report.checks[0].passed and message in report.checks[0].detail


def test_race_hints(make_workdir) -> None:
    from exercises.ike_race import scenario

    ex, directory = make_workdir("ike_race")
    want = scenario.truth(scenario.replay())
    s = want["seconds"]
    _solution(
        directory,
        "def answers():\n"
        f"    return {{'rtt_ms': 20.0, 'sequential_rtts': {s['sequential']['init_s'] / s['rtt']},"
        f" 'racing_rtts': {want['racing_rtts'] + 0.3}, 'racing_winner': 'UDP', 'sequential_udp_wait_s': 1.5}}\n",
    )
    checks = _by_name(grade(ex, directory))
    assert "one-way delay" in checks["the path's RTT"].detail
    assert "one more round trip" in checks["sequential: time to the established SA, in RTTs"].detail
    assert checks["racing: time to the established SA, in RTTs"].passed  # within 0.5 RTT
    assert "drops it" in checks["the transport that won the race"].detail
    assert "last UDP retransmission" in checks["how long sequential waited for UDP"].detail
    assert want["racing_winner"] == "tcp" and want["sequential_rtts"] > 10 * want["racing_rtts"]
