"""The data through an IKE session's tunnel ends like a TCP transfer: an ``app`` record each way,
judged against what the scenario expects (delivered, with the SHA-256 checked)."""

from __future__ import annotations

from dataclasses import replace

from lab.scenario import get_scenario
from lab.scenario.outcomes import tracker_for
from lab.sim.liverun import SimRun


def _records(scenario):
    return SimRun(scenario, seed=1, speed=None, pause_at_moments=False).run_to_end()


def test_hotspot_lists_its_tunnelled_data_each_way_as_delivered() -> None:
    scenario = get_scenario("hotspot")
    records = _records(scenario)
    tracker = tracker_for(scenario)
    tracker.feed(records)
    streams = {name: t for name, t in tracker.transfers.items() if name.startswith("ike ")}
    assert set(streams) == {"ike i->r", "ike r->i"}
    for t in streams.values():
        assert (t.outcome, t.verdict) == ("delivered", "as expected")
        assert t.bytes == 32 * 1024
    ends = [r for r in records if r.layer == "app" and r.data.get("conn") == "ESP tunnel"]
    assert {(r.node, r.data["transfer"], r.data["sha256_match"]) for r in ends} == {
        ("h2", "ike i->r", True),
        ("h1", "ike r->i", True),
    }
    assert tracker.unexpected() == []


def test_an_ike_session_that_never_gets_through_aborts_its_streams() -> None:
    base = get_scenario("hotspot")
    # UDP blocked and the initiator told to use UDP only: it gives up; both streams end aborted
    session = replace(base.transfers[0], initiator_config={"transport": "udp"})
    scenario = replace(base, transfers=(session,))
    records = _records(scenario)
    tracker = tracker_for(scenario)
    tracker.feed(records)
    outcomes = {name: (t.outcome, t.verdict) for name, t in tracker.transfers.items()}
    assert outcomes == {"ike i->r": ("aborted", "unexpected"), "ike r->i": ("aborted", "unexpected")}
    assert all("expected delivered" in text for text in tracker.unexpected() if text.startswith("transfer"))
