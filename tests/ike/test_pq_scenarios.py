"""The ike-pq-* scenarios: classic and hybrid post-quantum IKE with certificates through a router that drops
IP fragments, over UDP with IP fragments, UDP with RFC 7383 and TCP; and the sim-ike-pq benchmark."""

from __future__ import annotations

import json

import pytest

from lab.bench.ike import BENCHMARKS
from lab.scenario import get_scenario, run_scenario
from lab.scenario.ike_pq import pq_scenario
from lab.scenario.moments import detect_moments
from lab.scenario.outcomes import tracker_for
from lab.trace import MemoryTracer, TraceRecord


def _run(name: str, seed: int = 1) -> tuple[object, list[TraceRecord]]:
    result = run_scenario(get_scenario(name), seed=seed, pcaps=False)
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    return result, tracer.records


def _ike(records: list[TraceRecord], **fields: object) -> list[TraceRecord]:
    return [
        r
        for r in records
        if r.layer == "ike" and r.name == "state_updated" and all(r.data.get(k) == v for k, v in fields.items())
    ]


def test_ip_fragments_are_dropped_and_only_tcp_gets_both_proposals_through() -> None:
    result, records = _run("ike-pq-ip-fragments")
    assert result.ok, [(t.name, t.error) for t in result.transfers]  # the tunnelled bytes, both ways, by SHA-256
    assert {t.extra["transport"] for t in result.transfers} == {"tcp"}
    big = _ike(records, event="ip_fragments")
    assert {(r.data["exchange"], r.data["path_mtu"]) for r in big} == {("IKE_AUTH", 1500)}
    assert all(r.data["length"] > 1500 for r in big)  # the certificate chain makes IKE_AUTH outgrow the path
    dropped = [r for r in records if r.layer == "middlebox" and r.data.get("reason") == "IP fragment dropped"]
    assert dropped and all(r.node == "r1" and r.data["protocol"] == 17 for r in dropped)
    assert {r.data["session"] for r in _ike(records, event="unanswered", transport="udp")} == {"classic", "hybrid"}
    # the hybrid's ML-KEM-768 key share fits one datagram: IKE_INTERMEDIATE succeeded over UDP before IKE_AUTH failed
    assert [r.data["ke_len"] for r in _ike(records, event="sent", exchange="IKE_INTERMEDIATE")][:1] == [1184]
    for t in result.transfers:
        if t.name.endswith("i->r"):
            assert t.extra["ike_established_s"] > 30.0  # every UDP retransmission waited out first
            assert t.extra["ike_established_rtts"] > 700


def test_rfc7383_fragments_each_fit_and_udp_works_in_two_or_three_round_trips() -> None:
    result, records = _run("ike-pq-rfc7383")
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {t.extra["transport"] for t in result.transfers} == {"udp"}
    assert not [r for r in records if r.layer == "middlebox" and r.name == "segment_dropped"]
    assert not [r for r in records if r.layer == "ip" and r.data.get("event") == "fragmented"]
    reassembled = _ike(records, event="reassembled", transport="udp")
    assert {(r.node, r.data["exchange"]) for r in reassembled} == {("h1", "IKE_AUTH"), ("h2", "IKE_AUTH")}
    assert all(r.data["fragments"] >= 2 for r in reassembled)
    rtts = {t.name: t.extra["ike_established_rtts"] for t in result.transfers if t.name.endswith("i->r")}
    assert 2.0 <= rtts["classic i->r"] < 3.0  # IKE_SA_INIT, IKE_AUTH
    assert 3.0 <= rtts["hybrid i->r"] < 4.5  # and one IKE_INTERMEDIATE


def test_tcp_from_the_start_costs_the_handshake_and_nothing_for_size() -> None:
    result, records = _run("ike-pq-tcp")
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {t.extra["transport"] for t in result.transfers} == {"tcp"}
    assert not _ike(records, event="ip_fragments") and not _ike(records, event="reassembled")
    rtts = {t.name: t.extra["ike_established_rtts"] for t in result.transfers if t.name.endswith("i->r")}
    assert 3.0 <= rtts["classic i->r"] < 4.0  # TCP handshake, IKE_SA_INIT, IKE_AUTH: no Nagle wait on the tail
    assert 4.0 <= rtts["hybrid i->r"] < 5.5


def test_separate_transports_ike_sa_init_over_udp_then_ike_over_tcp_and_esp_over_udp() -> None:
    result, records = _run("ike-pq-separate-transports")
    assert result.ok, [(t.name, t.error) for t in result.transfers]  # the tunnelled bytes, both ways, by SHA-256
    assert {(t.extra["transport"], t.extra["esp_transport"]) for t in result.transfers} == {("tcp", "udp")}
    sent = [r for r in records if r.layer == "ike" and r.name == "segment_sent"]
    for node in ("h1", "h2"):
        by_exchange = {(r.data["exchange"], r.data["transport"]) for r in sent if r.node == node}
        assert ("IKE_SA_INIT", "udp") in by_exchange and ("IKE_AUTH", "tcp") in by_exchange
        assert ("IKE_INTERMEDIATE", "tcp") in by_exchange  # the hybrid's ML-KEM share
        assert not {x for x, t in by_exchange if t == "udp"} - {"IKE_SA_INIT"}  # nothing else on UDP
    assert {r.data["port"] for r in sent if r.data["exchange"] == "IKE_SA_INIT"} == {4500}  # never port 500
    esp = [r for r in records if r.layer == "esp" and r.name in ("segment_sent", "segment_received")]
    assert esp and {r.data["transport"] for r in esp} == {"udp"}
    assert not [r for r in records if r.layer == "iketcp" and r.name == "segment_sent" and r.data.get("kind") == "esp"]
    switched = _ike(records, event="transport_switched")
    assert len(switched) == 4 and {(r.data["ike_transport"], r.data["esp_transport"]) for r in switched} == {
        ("tcp", "udp")
    }
    # the large messages never met r1's rule: no IP fragments, nothing dropped, nothing retransmitted
    assert not _ike(records, event="ip_fragments")
    assert not [r for r in records if r.layer == "middlebox" and r.name == "segment_dropped"]
    assert not [r for r in sent if r.data.get("retransmission")]
    rtts = {t.name: t.extra["ike_established_rtts"] for t in result.transfers if t.name.endswith("i->r")}
    assert 3.0 <= rtts["classic i->r"] < 4.0  # IKE_SA_INIT, TCP handshake, IKE_AUTH
    assert 4.0 <= rtts["hybrid i->r"] < 5.5  # and one IKE_INTERMEDIATE
    tracker = tracker_for(get_scenario("ike-pq-separate-transports"))
    tracker.feed(records)
    assert {n: (i.transport, i.port, i.verdict) for n, i in tracker.ike.items()} == {
        "classic": ("tcp", 4500, "as expected"),
        "hybrid": ("tcp", 4500, "as expected"),
    }
    assert tracker.unexpected() == []


@pytest.mark.parametrize("name", ["ike-pq-ip-fragments", "ike-pq-rfc7383", "ike-pq-tcp", "ike-pq-separate-transports"])
def test_every_declared_moment_happens(name: str) -> None:
    scenario = get_scenario(name)
    _result, records = _run(name)
    found = {m.key: m.caption for m in detect_moments(scenario.moments, records)}
    assert set(found) == {m.key for m in scenario.moments}
    assert not [c for c in found.values() if "{" in c]  # every caption field was filled


def test_the_same_seed_gives_the_same_trace_certificates_included() -> None:
    def trace(seed: int) -> list[str]:
        result = run_scenario(pq_scenario("rfc7383"), seed=seed, pcaps=False)
        return [
            json.dumps([r.t, r.node, r.layer, r.name, r.data], sort_keys=True) for r in result.network.tracer.records
        ]

    assert trace(4) == trace(4)


def test_benchmark_reports_each_proposal_and_mode() -> None:
    result = BENCHMARKS["sim-ike-pq"].run()
    json.dumps(result)
    assert result["passed"], result
    assert result["transport"] == {
        p: {"ip-fragments": "tcp", "rfc7383": "udp", "tcp": "tcp", "separate-transports": "tcp"}
        for p in ("classic", "hybrid")
    }
    for p in ("classic", "hybrid"):
        rtts = result["rtts"][p]
        assert rtts["rfc7383"] < rtts["tcp"] < rtts["ip-fragments"]
        # UDP for IKE_SA_INIT, then the TCP handshake: as many round trips as TCP from the start
        assert rtts["separate-transports"] == pytest.approx(rtts["tcp"], abs=0.2)
    assert result["rtts"]["hybrid"]["rfc7383"] > result["rtts"]["classic"]["rfc7383"]  # IKE_INTERMEDIATE's round trip


@pytest.mark.parametrize("mode", ["rfc7383", "tcp"])
def test_p256_with_ml_kem_1024_and_certificates_over_rfc7383_and_tcp(mode: str) -> None:
    """The second hybrid of issue 19: ECDH P-256, then ML-KEM-1024, whose 1,568-byte key share alone outgrows
    one datagram, so over UDP IKE_INTERMEDIATE itself goes as IKE fragments."""
    from dataclasses import replace

    from lab.scenario import Scenario

    base = pq_scenario(mode, proposals=("classic",))
    (session,) = base.transfers
    session = replace(  # the name stays: IDi and the certificate's dNSName are classic.initiator.lab
        session,
        initiator_config={**session.initiator_config, "dh_groups": (19,), "additional_key_exchanges": (37,)},
    )
    scenario = Scenario(
        name=f"p256-1024-{mode}",
        description="P-256 + ML-KEM-1024 with certificates",
        topology="single-path",
        middleboxes=base.middleboxes,
        transfers=(session,),
        time_limit_s=30.0,
    )
    result = run_scenario(scenario, seed=2, pcaps=False)
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {t.extra["transport"] for t in result.transfers} == {"udp" if mode == "rfc7383" else "tcp"}
    records = result.network.tracer.records
    done = _ike(records, exchange="IKE_INTERMEDIATE", result="ok")
    assert {(r.node, r.data["additional_ke"]) for r in done} == {("h1", 37), ("h2", 37)}
    auth = _ike(records, exchange="IKE_AUTH", result="ok")
    assert {r.node for r in auth} == {"h1", "h2"} and all(r.data["auth"] == "signature" for r in auth)
    reassembled = {r.data["exchange"] for r in _ike(records, event="reassembled", transport="udp")}
    assert reassembled == ({"IKE_INTERMEDIATE", "IKE_AUTH"} if mode == "rfc7383" else set())
