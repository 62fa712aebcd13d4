"""Key moments: each scenario's declared moments are found in its trace, in order, the same
live and replayed; a run that pauses at moments stops right after each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.runs import ReplayRun
from lab.scenario import get_scenario
from lab.scenario.moments import MomentDetector, MomentSpec, detect_moments, link_down, session_ids_equal
from lab.sim.liverun import MOMENT_STEP_S, SimRun
from lab.trace import TraceRecord

# scenario -> the moments its lesson hinges on, in the order they happen (seed 1)
EXPECTED = {
    "hotspot": ["udp-timeout", "iketcp-prefix", "ike-sa-won"],
    "iketcp-race": ["iketcp-prefix", "ike-sa-won", "udp-timeout", "iketcp-prefix", "ike-sa-won"],
    "path-failure": ["link-down", "rto-reinjection", "link-up", "delivered"],
    "two-paths": ["subflow-joined", "delivered"],  # no copy of the tail on paths that deliver it as soon
    "eno-basic": ["tep-agreed", "session-ids-equal", "delivered"],
    "eno-stripped": ["eno-stripped", "eno-fallback", "eno-refused", "eno-refused"],
    "tcpcrypt-tamper": ["tep-agreed", "aead-failure", "reset"],
    "mptcp-mpfail-fallback": ["mp-fail", "fallback", "delivered"],
    # the slow path's data holds the window: the fast subflow sends it again (it never did with ECF on)
    "hetero-paths": ["subflow-joined", "reinjection", "delivered"],
    "ike-pq-ip-fragments": [  # classic's and hybrid's steps interleave from the UDP give-up on
        "ip-fragments",
        "ike-intermediate",
        "fragment-dropped",
        "udp-unanswered",
        "iketcp-prefix",
        "udp-unanswered",
        "tcp-won",
        "iketcp-prefix",
        "tcp-won",
    ],
}


def _run(name: str, out_dir: Path | None = None) -> list[TraceRecord]:
    run = SimRun(get_scenario(name), seed=1, speed=None, out_dir=out_dir)
    try:
        return run.run_to_end()
    finally:
        run.close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_key_scenario_shows_its_moments_in_order_live_and_replayed(name: str, tmp_path: Path) -> None:
    scenario = get_scenario(name)
    records = _run(name, tmp_path / "bundle")
    live = detect_moments(scenario.moments, records)
    assert [m.key for m in live] == EXPECTED[name]
    assert [m.t for m in live] == sorted(m.t for m in live)
    for m in live:
        assert m.caption and "{" not in m.caption and " ? " not in m.caption
        assert m.rfc.startswith("RFC ") and "§" in m.rfc
        assert m.view in ("topology", "subflows", "eno", "iketcp", "packets", "events")
    replay = ReplayRun(tmp_path / "bundle")
    assert replay.moment_specs() == scenario.moments  # looked up by the bundle's scenario name
    assert [m.to_dict() for m in replay.known_moments()] == [m.to_dict() for m in live]


def test_captions_say_what_happened_in_plain_words() -> None:
    moments = {m.key: m for m in detect_moments(get_scenario("hotspot").moments, _run("hotspot"))}
    assert moments["udp-timeout"].caption == (
        "ike: no answer over UDP 500 for 2.00 s, so IKE gives UDP up and tries TCP 4500"
    )
    assert moments["udp-timeout"].t == pytest.approx(2.0)
    assert moments["ike-sa-won"].caption.startswith("ike: IKE_SA_INIT answered over tcp 4500, 2.08 s")
    path = {m.key: m for m in detect_moments(get_scenario("path-failure").moments, _run("path-failure"))}
    # the join from h1's path-B address to h2's path-A address crosses path A too: its RTO fires first
    assert "retransmission timeout on 10.0.3.1:43354->10.0.2.2:5001" in path["rto-reinjection"].caption
    assert "1.25 s after the link went down" in path["rto-reinjection"].caption


def test_detector_reports_each_moment_once_and_survives_odd_records() -> None:
    spec = MomentSpec(key="down", caption="link {link} down", rfc="RFC 8684 §3.3.6", view="topology", match=link_down())
    detector = MomentDetector((spec,))
    odd = [
        TraceRecord(0.1, "net", "link", "state_updated", {"up": False, "link": None}),
        TraceRecord(0.2, "net", "link", "state_updated", {"up": False, "link": "a-b"}),
    ]
    first = detector.feed([TraceRecord(0.0, "net", "link", "state_updated", {"link": 3})])  # no "up": no moment
    assert first == []
    found = detector.feed(odd)
    assert [m.caption for m in found] == ["link None down"]
    assert detector.feed(odd) == []  # only the first link down counts
    detector.reset()
    assert [m.t for m in detector.feed(odd)] == [0.1]


def test_session_ids_equal_needs_both_ends() -> None:
    spec = MomentSpec(key="sid", caption="{nodes}", rfc="RFC 8548 §3.4", view="eno", match=session_ids_equal())
    one = TraceRecord(0.1, "h1", "tcpcrypt", "key_updated", {"session_id": "ab" * 33})
    other = TraceRecord(0.2, "h2", "tcpcrypt", "key_updated", {"session_id": "cd" * 33})
    same = TraceRecord(0.3, "h2", "tcpcrypt", "key_updated", {"session_id": "ab" * 33})
    assert detect_moments((spec,), [one, other]) == []
    assert [m.caption for m in detect_moments((spec,), [one, other, same])] == ["h1 and h2"]


@pytest.mark.parametrize("name", ["hotspot", "path-failure"])
def test_a_run_that_pauses_at_moments_stops_right_after_each(name: str) -> None:
    run = SimRun(get_scenario(name), seed=1, speed=None, pause_at_moments=True)
    stops: list[tuple[float, float]] = []

    async def follow() -> None:
        async for _ in run.trace_batches(interval=0.001):
            status = run.status()
            if status.paused:
                stops.append((run.moments[-1].t, status.now))
                run.pause(False)

    try:
        asyncio.run(asyncio.wait_for(follow(), timeout=120))
    finally:
        run.close()
    # every moment but one that ends the run (nothing is left to pause for then)
    assert [m.key for m in run.moments] == EXPECTED[name]
    ending = [m for m in run.moments if m.key == "delivered"]
    assert [round(t, 4) for t, _ in stops] == [round(m.t, 4) for m in run.moments if m not in ending]
    for moment_t, paused_at in stops:
        assert moment_t <= paused_at <= moment_t + 2 * MOMENT_STEP_S + 1e-9


def test_a_headless_bundle_replays_with_link_rates_and_its_moments(tmp_path: Path) -> None:
    from lab.scenario import run_scenario

    result = run_scenario(get_scenario("two-paths"), seed=1, out_dir=tmp_path / "b", pcaps=False)
    assert result.ok
    replay = ReplayRun(tmp_path / "b")
    links = [r for r in replay.records if r.layer == "link" and r.name == "metrics_updated"]
    assert links and all("bytes_departed" in r.data for r in links)
    assert {r.data["link"] for r in links} >= {"h1-r1", "r1-h2", "h1-r2", "r2-h2"}
    assert [m.key for m in replay.known_moments()] == EXPECTED["two-paths"]
    assert replay.incomplete is None
