"""RFC 7383 §2.5.2: a fragmented (or fragmentable) request unanswered through retransmissions goes again in
smaller fragments, with a larger Total Fragments so the receiver starts its reassembly over (§2.6)."""

from __future__ import annotations

import pytest

from lab.errors import ConfigError
from lab.ike.config import IkeConfig
from lab.scenario import Scenario, run_scenario
from lab.scenario.ike import RESPONDER_ID, IkeSession
from lab.scenario.ike_pq import PQ_PROPOSALS, VALIDATED_AT, scenario_pki
from lab.scenario.middlebox import DropLargeUdp
from lab.trace import MemoryTracer, TraceRecord


def _run(proposal: str, **initiator: object) -> tuple[object, list[TraceRecord]]:
    pki = scenario_pki()
    common = {"auth": "signature", "trust_anchors": pki.trust_anchors, "validation_time": VALIDATED_AT}
    session = IkeSession(
        name=proposal,
        initiator_config={
            **common,
            **PQ_PROPOSALS[proposal],
            "transport": "udp",
            "fragmentation": True,
            "credential": pki.end_entities[f"{proposal}.initiator.lab"],
            **initiator,
        },
        responder_config={
            **common,
            "fragmentation": True,
            "path_mtu_bytes": 1280,
            "dh_groups": (19, 31),
            "credential": pki.end_entities[RESPONDER_ID.decode()],
        },
        data_bytes=8 * 1024,
    )
    scenario = Scenario(
        name="pmtud",
        description="UDP over 1280 bytes dropped",
        topology="single-path",
        middleboxes=(("r1", lambda: DropLargeUdp(1280)),),
        transfers=(session,),
        time_limit_s=40.0,
    )
    result = run_scenario(scenario, seed=5, pcaps=False)
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    return result, tracer.records


def _smaller(records: list[TraceRecord]) -> list[dict]:
    return [r.data for r in records if r.layer == "ike" and r.data.get("event") == "smaller_fragments"]


def test_an_unanswered_fragmented_request_goes_again_in_more_smaller_fragments() -> None:
    result, records = _run("classic")  # IKE_AUTH of ~1,980 bytes: 2 fragments for 1500, both resent twice
    assert result.ok, [(t.name, t.error) for t in result.transfers]  # tunnelled bytes SHA-256 exact
    assert {t.extra["transport"] for t in result.transfers} == {"udp"}
    (step,) = _smaller(records)
    assert (step["exchange"], step["path_mtu"], step["was"], step["after_tries"]) == ("IKE_AUTH", 1280, 2, 2)
    assert step["fragments"] == 3  # 2 would fit 1280 too, but then the responder could not tell the sets apart
    reassembled = [
        r.data for r in records if r.node == "h2" and r.layer == "ike" and r.data.get("event") == "reassembled"
    ]
    assert [(d["exchange"], d["fragments"]) for d in reassembled] == [("IKE_AUTH", 3)]


def test_a_request_sent_whole_is_fragmented_and_later_requests_use_the_smaller_size() -> None:
    result, records = _run("hybrid")  # IKE_INTERMEDIATE: 1,281 bytes on the wire, whole for 1500
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    (step,) = _smaller(records)
    assert (step["exchange"], step["was"], step["fragments"]) == ("IKE_INTERMEDIATE", 1, 2)
    auth = [
        r.data
        for r in records
        if r.node == "h1" and r.layer == "ike" and r.name == "segment_sent" and r.data.get("exchange") == "IKE_AUTH"
    ]
    assert auth and not any(d.get("retransmission") for d in auth)  # sized for 1280 from the start
    established = next(t.extra["ike_established_s"] for t in result.transfers)
    assert established < 4.0  # two unanswered retransmissions (0.5 s, 1 s), then 2 s to the third


def test_without_pmtu_discovery_the_request_dies_with_its_retransmissions() -> None:
    result, records = _run("hybrid", fragment_pmtud_tries=0)
    assert not _smaller(records)
    assert not any(t.extra.get("ike_established_s") for t in result.transfers)
    assert any(r.layer == "middlebox" and r.data.get("size", 0) > 1280 for r in records)


def test_bad_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fragment_pmtud_tries"):
        IkeConfig(fragment_pmtud_tries=-1)
