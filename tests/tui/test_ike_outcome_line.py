"""An IKE session and the data through its tunnel read as one line of the Outcomes panel."""

from __future__ import annotations

from lab.scenario import get_scenario
from lab.scenario.outcomes import tracker_for
from lab.sim.liverun import SimRun
from tui.widgets.outcomes import outcome_lines


def test_iketcp_race_one_line_per_session_with_its_data() -> None:
    scenario = get_scenario("iketcp-race")
    tracker = tracker_for(scenario)
    assert [name for name, _, _ in outcome_lines(tracker)] == ["sequential", "racing"]
    assert all("KiB" not in words for _, words, _ in outcome_lines(tracker))  # nothing yet, nothing said
    tracker.feed(SimRun(scenario, seed=1, speed=None, pause_at_moments=False).run_to_end())
    lines = {name: (words, verdict) for name, words, verdict in outcome_lines(tracker)}
    assert set(lines) == {"sequential", "racing"}
    for words, verdict in lines.values():
        assert words.startswith("IKE SA over TCP 4500 in ")
        assert words.endswith("; 32.0 KiB each way")
        assert verdict == "as expected"
