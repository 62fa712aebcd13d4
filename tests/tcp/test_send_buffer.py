"""A bulk sender keeps TCP's unsent data topped up, not its unacknowledged data: a window larger
than the application's buffer threshold still fills (before, about 512 KiB in flight at most)."""

from __future__ import annotations

from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.trace import NULL_TRACER


def test_a_long_fat_path_fills_beyond_the_application_buffer() -> None:
    scenario = Scenario(
        name="long-fat",
        description="50 Mbit/s, 100 ms RTT, 600-packet queue",
        topology="single-path",
        topology_params={"bw_mbps": 50.0, "delay_ms": 50.0, "queue_packets": 600},
        transfers=(Transfer(size_bytes=12 * 1024 * 1024),),
        tcp={"congestion_control": "newreno"},
        time_limit_s=60.0,
    )
    run = ScenarioRun(scenario, seed=1, tracer=NULL_TRACER)
    peak = [0]

    def sample() -> None:
        for conn in run.net.host("h1").connections():
            peak[0] = max(peak[0], conn.flight_bytes)
        if not run.done():
            run.net.call_at(run.net.now + 0.01, sample)

    run.net.call_at(0.0, sample)
    run.net.run(until=60.0, stop=run.done)
    assert run.results[0].ok
    assert peak[0] > 1024 * 1024, peak  # slow start alone takes the window past 1 MiB on this path
