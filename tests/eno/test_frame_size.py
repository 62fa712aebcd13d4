"""tcpcrypt over TCP-ENO sizes its frames so that a full frame fills whole segments."""

from __future__ import annotations

from lab.scenario import Scenario, ScenarioRun
from lab.scenario.eno import EncryptedTransfer
from lab.trace import NULL_TRACER
from lab.wire.tcpcrypt import AEAD_TAG_LEN, FRAME_HEADER_LEN


def test_a_full_frame_fills_whole_segments() -> None:
    scenario = Scenario(
        name="frame-size",
        description="test",
        topology="single-path",
        topology_params={"delay_ms": 10.0, "bw_mbps": 20.0},
        transfers=(EncryptedTransfer(size_bytes=256 * 1024),),
        time_limit_s=60.0,
    )
    run = ScenarioRun(scenario, seed=2, tracer=NULL_TRACER)
    run.net.run(until=60.0, stop=run.done)
    assert run.results[0].ok
    conns = run.net.host("h1").connections() + run.net.host("h2").connections()
    assert conns
    for conn in conns:
        ext = conn._ext
        segment = conn.mss - ext.data_option_bytes
        frame = ext._tep.config.max_frame_bytes + FRAME_HEADER_LEN + 1 + AEAD_TAG_LEN
        assert frame % segment == 0
        assert frame // segment == 11  # 16,384 bytes at most: 11 segments of 1,444 bytes, less the overhead
