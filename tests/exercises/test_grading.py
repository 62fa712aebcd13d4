"""The grading machinery: broken submissions, the time limit, checks that raise, JSON and JUnit, trace queries."""

from __future__ import annotations

import json
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from exercises.grading import (
    Answers,
    Check,
    Exercise,
    Submission,
    SubmissionError,
    TraceQuery,
    compare_field,
    decode_value,
    encode_value,
    grade,
    load_exercise,
)
from lab.trace import TraceRecord


def _ok(a: Answers) -> bool:
    return a.answer("double") == 42


def _collect(sub: Submission) -> Answers:
    value = sub.call("double", 21)
    return Answers({"double": value})


TOY = Exercise(
    name="toy",
    title="toy",
    topic="test",
    minutes=1,
    collect=_collect,
    checks=(Check("doubles 21", _ok, "Multiply by two.", points=3),),
    time_limit_s=5.0,
)


def write(tmp_path: Path, source: str) -> Path:
    (tmp_path / "solution.py").write_text(source)
    return tmp_path


def test_a_correct_toy_passes(tmp_path: Path) -> None:
    report = grade(TOY, write(tmp_path, "def double(x):\n    return 2 * x\n"))
    assert report.passed and report.points == 3


@pytest.mark.parametrize(
    ("source", "kind_text", "shown"),
    [
        ("def double(x)\n    return 2 * x\n", "syntax error in solution.py line 1", "SyntaxError"),
        (
            "import no_such_module_here\n",
            "needs the Python package 'no_such_module_here', which is not installed",
            "no_such_module_here",
        ),
        ("def double(x):\n    return {}[x]\n", "double() raised KeyError: 21", "return {}[x]"),
        ("def double(x):\n    raise SystemExit(0)\n", "double() raised SystemExit", ""),
        ("import os\ndef double(x):\n    os._exit(3)\n", "ended without a result (exit status 3)", ""),
        ("def double(x):\n    return object()\n", "returned a object cannot be returned", ""),
        ("x = 1\n", "solution.py has no function double()", ""),
    ],
)
def test_broken_submissions_fail_clearly_and_never_crash_the_grader(
    tmp_path: Path, source: str, kind_text: str, shown: str
) -> None:
    report = grade(TOY, write(tmp_path, source))
    assert not report.passed
    failed = [c for c in report.checks if not c.passed]
    text = "\n".join(c.detail for c in failed)
    assert kind_text in text, text
    assert shown in text
    assert report.to_text()  # printable
    json.loads(report.to_json())


def test_an_endless_loop_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    start = time.monotonic()
    report = grade(TOY, write(tmp_path, "print('working')\nwhile True:\n    pass\n"), time_limit_s=1.5)
    elapsed = time.monotonic() - start
    assert elapsed < 10
    runs = report.checks[0]
    assert runs.name == "solution.py runs" and not runs.passed
    assert "did not finish within 1.5 s" in runs.detail
    assert "working" in runs.detail  # its output is shown
    assert report.checks[1].feedback == "not evaluated: solution.py did not run to the end"


def test_an_endless_loop_in_a_child_process_is_killed_too(tmp_path: Path) -> None:
    source = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)'])\n"
        "while True:\n    pass\n"
    )
    report = grade(TOY, write(tmp_path, source), time_limit_s=1.5)
    assert not report.passed and "did not finish" in report.checks[0].detail


def test_endless_output_is_capped(tmp_path: Path) -> None:
    report = grade(TOY, write(tmp_path, "while True:\n    print('x' * 4096)\n"), time_limit_s=20)
    runs = report.checks[0]
    assert not runs.passed
    assert "File too large" in runs.detail  # the output file hit its size limit
    assert len(runs.detail) < 3000  # only the tail is shown


def test_missing_solution(tmp_path: Path) -> None:
    report = grade(TOY, tmp_path / "nowhere")
    assert not report.passed
    assert "no solution.py" in report.checks[0].detail
    assert "tcplab exercise start" in report.checks[0].feedback


def test_a_check_that_raises_fails_with_the_error(tmp_path: Path) -> None:
    def boom(a: Answers) -> bool:
        return a.answer("double") + "x"

    ex = Exercise(name="toy", title="t", topic="t", minutes=1, collect=_collect, checks=(Check("adds", boom, "f"),))
    report = grade(ex, write(tmp_path, "def double(x):\n    return 2 * x\n"))
    assert not report.passed and "TypeError" in report.checks[1].detail


def test_a_grader_bug_becomes_a_failed_check(tmp_path: Path) -> None:
    def broken(sub: Submission) -> None:
        raise RuntimeError("grader bug")

    ex = Exercise(name="toy", title="t", topic="t", minutes=1, collect=broken, checks=TOY.checks)
    report = grade(ex, write(tmp_path, "x = 1\n"))
    assert not report.passed and "grader bug" in report.checks[0].detail


def test_stdout_is_not_the_channel(tmp_path: Path) -> None:
    """A submission that prints a fake result document still has to return the value."""
    source = 'import json\nprint(json.dumps({"results": [{"value": 42}]}))\ndef double(x):\n    return 0\n'
    report = grade(TOY, write(tmp_path, source))
    assert not report.passed


def test_call_many_keeps_going_after_one_call_fails(tmp_path: Path) -> None:
    sub = Submission(write(tmp_path, "def f(x):\n    return 1 // x\n"), time_limit_s=10)
    out = sub.call_many([("f", [1]), ("f", [0]), ("f", [2])])
    assert out[0] == 1 and isinstance(out[1], SubmissionError) and out[2] == 0
    assert "ZeroDivisionError" in out[1].message


def test_values_round_trip_bytes_and_big_integers() -> None:
    value = {"k": [b"\x00\xff", (1 << 64) - 1, None, "s", 1.5]}
    assert decode_value(json.loads(json.dumps(encode_value(value)))) == {
        "k": [b"\x00\xff", (1 << 64) - 1, None, "s", 1.5]
    }
    with pytest.raises(TypeError):
        encode_value(object())


def test_scapy_packets_come_back_as_bytes(tmp_path: Path) -> None:
    pytest.importorskip("scapy")
    source = "from scapy.layers.inet import IP, TCP\ndef pkt():\n    return IP(dst='10.0.2.2')/TCP(flags='R')\n"
    raw = Submission(write(tmp_path, source), time_limit_s=30).call("pkt")
    assert isinstance(raw, bytes) and raw[0] == 0x45 and len(raw) == 40


def test_compare_field_gives_per_field_hints() -> None:
    a = Answers({"mss": 1448, "rtt": 40.1, "flag": True}, truth={"mss": 1460, "rtt": 40.096, "flag": 1})
    ok, detail = compare_field(a, "mss", hints={1448: "count the options"})
    assert not ok and "count the options" in detail
    assert compare_field(a, "rtt", tolerance=0.01)[0]
    assert not compare_field(a, "flag")[0]  # True is not 1


def test_junit_has_one_testcase_per_check(tmp_path: Path) -> None:
    report = grade(TOY, write(tmp_path, "def double(x):\n    return x\n"))
    root = ET.fromstring(report.to_junit().split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='doubles 21']/failure")
    assert failure is not None and "Multiply by two." in failure.text


def test_trace_query() -> None:
    recs = [
        TraceRecord(0.0, "h1", "tcp", "segment_sent", {"conn": "a", "flags": "S", "len": 0}),
        TraceRecord(0.1, "h1", "tcp", "segment_sent", {"conn": "a", "flags": "A", "len": 100}),
        TraceRecord(0.2, "h2", "tcp", "segment_received", {"conn": "b", "flags": "A", "len": 100}),
        TraceRecord(0.3, "h1", "tcp", "metrics_updated", {"conn": "a", "cwnd": 10}),
        TraceRecord(0.4, "h1", "app", "state_updated", {"transfer": "bulk", "event": "sent"}),
        TraceRecord(0.5, "h2", "app", "state_updated", {"transfer": "bulk", "event": "received", "sha256_match": True}),
    ]
    q = TraceQuery(recs)
    assert q.count(layer="tcp", node="h1") == 3
    assert q.bytes_sent("h1") == 100
    assert q.first(flags=lambda f: "S" in f).t == 0.0
    assert q.select(after=0.15, before=0.35, layer="tcp")[0].node == "h2"
    assert q.last_metrics("h1") == {"conn": "a", "cwnd": 10}
    assert q.transfers()["bulk"]["sha256_match"] is True
    assert q.segments("h2", sent=False)[0].data["len"] == 100


def test_load_exercise_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: "):
        load_exercise("03_mptcp_scheduler")


def test_a_capture_still_being_written_is_read_up_to_its_last_whole_record(tmp_path: Path) -> None:
    from exercises.grading import ip_packets, live_ip_packets
    from lab.pcap import PcapWriter

    assert live_ip_packets(tmp_path / "absent.pcap") == []
    path = tmp_path / "raw.pcap"
    with PcapWriter(path) as w:
        for i in range(3):
            w.write(0.1 * i, bytes([0x45]) + bytes(19) + bytes([i]))
    data = path.read_bytes()
    assert live_ip_packets(path) == ip_packets(path) and len(live_ip_packets(path)) == 3
    path.write_bytes(data[:-5])  # the last record half written
    assert [p[-1] for p in live_ip_packets(path)] == [0, 1]
    path.write_bytes(data[:10])  # not even the file header yet
    assert live_ip_packets(path) == []
    path.write_bytes(b"\x00" * 40)
    from lab.errors import DecodeError

    with pytest.raises(DecodeError):
        live_ip_packets(path)


def test_a_sim_action_runs_at_its_time_and_its_error_comes_out_of_finish(tmp_path: Path) -> None:
    from exercises.grading import RunContext, SimReplay
    from exercises.tcp_reset_attack import scenario

    seen: list[float] = []

    def act(ctx: RunContext) -> None:
        seen.append(ctx.now)
        assert ctx.backend == "sim" and ctx.captured("h2-eth0")
        raise SubmissionError("bad_result", "from the action")

    replay = SimReplay(scenario.SCENARIO, seed=scenario.SEED, pcap_dir=tmp_path)
    replay.at(0.5, act)
    with pytest.raises(SubmissionError, match="from the action"):
        replay.finish()
    assert seen == [0.5]
