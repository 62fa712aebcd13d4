"""Graders on Mininet (``--backend mininet``): our endpoints on real packets in Mininet hosts.

For exercises spanning MPTCP (the attendee's scheduler asked from h1's endpoint
process across the sandbox, a firewall realised with iptables), ENO/tcpcrypt (plaintext looked
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
        "goodput above the best single path": "one path carries at most 4 Mbit/s (on Mininet",
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
    # the packet-crafting exercises: the attendee's code runs while the network keeps going
    # (replay.at), its packets leave the chosen host through lab.mininet.inject's sender
    "tcp_reset_attack": {
        "an in-window RST draws a challenge ACK": "packet 2 was received and silently ignored",
        "a RST at exactly RCV.NXT resets the connection": "packet 3 was received and silently ignored",
        "the transfer is cut short": "the transfer finished",
    },
    "mptcp_forged_join": {
        "the right token draws an MP_JOIN SYN/ACK": "h2 refused it (MP_JOIN for unknown token",
        "a forged HMAC is refused": "SYN 2 got no SYN/ACK, so there was no join to complete",
    },
    "tcp_syn_options": {"the SYN carries the options asked for": "MSS is 1460, want 536"},
    "esp_replay": {
        "an old packet is dropped as left of the window": "was dropped: duplicate (window right edge",
        "a sequence number moved right of the window fails integrity": "was dropped: duplicate",
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


def test_only_the_question_exercises_are_refused_on_mininet() -> None:
    from exercises.grading import exercise_names, load_exercise

    refused = {n for n in exercise_names() if mininet_refusal(load_exercise(n))}
    # mptcp_fairness too: it compares two flows' rates over 60 s of a simulated bottleneck
    # ike_pq_path: its default settings wait out IKE's retransmissions (over 30 s) twice, in real time there
    assert refused == {
        "tcp_trace_questions",
        "eno_session_id",
        "ike_race",
        "tcpcrypt_tamper",
        "mptcp_fairness",
        "ike_pq_path",
    }


def test_mid_run_pause_is_still_refused_on_mininet() -> None:
    from exercises.tcp_reset_attack import scenario
    from lab.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot pause"):
        MininetReplay(scenario.SCENARIO, seed=scenario.SEED, pcap_dir=Path("/nonexistent")).run_until(1.0)


def test_a_bad_packet_list_stops_the_mininet_run_and_fails_cleanly(make_workdir) -> None:
    ex, directory = make_workdir("tcp_reset_attack", reference=True)
    path = directory / "solution.py"
    path.write_text(path.read_text().replace("        rst(rcv_nxt),  # exact", "        b'not a packet',  # exact"))
    report = grade(ex, directory, backend="mininet")
    runs = report.checks[0]
    assert not runs.passed and report.points == 0, _graded(report)
    assert "packet 3: not an IPv4 or IPv6 packet" in runs.detail, _graded(report)
    assert report.wall_time_s < 20, _graded(report)  # stopped at once, not at the end of the 7 s transfer


def test_injected_packets_leave_the_chosen_interface_to_its_neighbour(tmp_path: Path) -> None:
    """replay.at on Mininet: live capture, then a packet injected on a named interface reaches the
    link's other end (the sim's semantics), recorded in the trace at its wall time."""
    from exercises.grading import RunContext
    from lab.scenario import Scenario, Transfer
    from lab.scenario.inject import summary

    scenario = Scenario(
        name="inject-at",
        description="a transfer over two paths; a UDP packet injected on h1's path-B link",
        topology="two-paths",
        # ~1.7 s at 10 Mbit/s: still under way at 0.3 s however fast the endpoints start
        topology_params={"bw_mbps": (10.0, 10.0)},
        transfers=(Transfer(size_bytes=2 * 1024 * 1024),),
    )
    seen: dict[str, object] = {}

    def act(ctx: RunContext) -> None:
        seen["captured"] = len(ctx.captured("h1-eth0"))
        seen["at"] = ctx.inject("h1", udp_packet("10.0.3.99", "10.0.4.2"), interface="h1-eth1")

    replay = MininetReplay(scenario, seed=1, pcap_dir=tmp_path)
    replay.at(0.3, act)
    q = replay.finish()
    assert q.extra["results"]["bulk"]["sha256_match"]
    assert seen["captured"] and seen["at"] >= 0.3
    [sent] = q.select(layer="inject", name="segment_sent", node="h1")
    assert sent.data["iface"] == "h1-eth1" and sent.t >= 0.3
    from exercises.grading import ip_packets

    arrived = [summary(p) for p in ip_packets(tmp_path / "r2-eth0.pcap")]
    assert any(s["src"] == "10.0.3.99" and s.get("dport") == 9999 for s in arrived)


def udp_packet(src: str, dst: str) -> bytes:
    from scapy.layers.inet import IP, UDP

    return bytes(IP(src=src, dst=dst) / UDP(sport=9999, dport=9999) / b"injected")


@pytest.fixture
def two_busy_loops():
    """Two CPU-bound processes beside the grader (an attendee's loaded laptop); killed by PID after."""
    import subprocess
    import sys

    loops = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2)]
    yield
    for proc in loops:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "name", ["tcp_reset_attack", "mptcp_forged_join", "esp_replay", "tcp_syn_options", "mptcp_scheduler"]
)
def test_references_get_full_marks_under_load(name: str, tmp_path: Path, two_busy_loops) -> None:
    """With two busy loops on the machine: the injections wait for what the attendee's code needs in the
    capture (bounded), go to the link peer's MAC without asking, and the checks' windows hold; the
    scheduler exercise's paths are slow enough that the endpoints' CPU is not what limits the goodput."""
    ex, reference = workdir(name, tmp_path / "reference", reference=True)
    report = grade(ex, reference, backend="mininet")
    assert report.passed and report.points == report.max_points, _graded(report)
