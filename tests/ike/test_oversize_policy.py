"""Straight to TCP when a message will not fit the path and the peer did not offer RFC 7383 (lab.ike.policy)."""

from __future__ import annotations

import pytest

from lab.errors import ConfigError
from lab.ike.config import IkeConfig
from lab.ike.events import FallbackToTcp, IkeSaDeleted, IkeSaEstablished, PacketReceived
from lab.ike.policy import oversize_action
from lab.scenario import Scenario, run_scenario
from lab.scenario.ike import IkeSession
from lab.trace import MemoryTracer
from tests.ike.pair import Pair, configs

PQ = {"dh_groups": (19,), "additional_key_exchanges": (37,)}  # IKE_INTERMEDIATE of ~1630 octets


def run(**settings: object) -> Pair:
    pair = Pair(*configs(**settings))
    pair.i.connect(now=0.0)
    pair.run(10.0)
    return pair


def attempts(pair: Pair) -> list[tuple[int, str, str, int]]:
    return [
        (r.data["attempt"], r.data["event"], r.data["transport"], r.data["port"])
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if "attempt" in r.data
    ]


def established_at(pair: Pair) -> float:
    return next(
        r.t
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("to") == "ESTABLISHED"
    )


def test_the_policy_helper() -> None:
    args = {"max_message_len": 1000, "initiator": True, "before_ike_auth_done": True, "response": False}
    assert oversize_action(900, fragmentation_negotiated=False, policy="tcp", **args) == "whole"
    assert oversize_action(1600, fragmentation_negotiated=True, policy="tcp", **args) == "fragments"
    assert oversize_action(1600, fragmentation_negotiated=False, policy="tcp", **args) == "tcp"
    assert oversize_action(1600, fragmentation_negotiated=False, policy="send", **args) == "ip-fragments"
    assert oversize_action(1600, fragmentation_negotiated=False, policy="tcp", **(args | {"response": True})) == (
        "ip-fragments"  # a responder cannot move the SA
    )
    assert oversize_action(1600, fragmentation_negotiated=False, policy="tcp", **(args | {"initiator": False})) == (
        "ip-fragments"
    )
    assert oversize_action(
        1600, fragmentation_negotiated=False, policy="tcp", **(args | {"before_ike_auth_done": False})
    ) == ("ip-fragments")  # an established SA stays where it is
    with pytest.raises(ValueError, match="oversize policy"):
        oversize_action(1, fragmentation_negotiated=False, policy="drop", **args)
    with pytest.raises(ConfigError, match="oversize_udp"):
        IkeConfig(oversize_udp="drop")


def test_peer_without_rfc_7383_sends_the_initiator_straight_to_tcp() -> None:
    pair = run(**PQ, i_fragmentation=True, r_fragmentation=False, i_oversize_udp="tcp", udp_ports=(500, 4500))
    assert attempts(pair) == [
        (1, "started", "udp", 500),
        (1, "too_big_for_udp", "udp", 500),
        (2, "started", "tcp", 4500),  # UDP 4500 skipped: the message would not fit there either
        (2, "won", "tcp", 4500),
    ]
    assert pair.of("i", FallbackToTcp) == [FallbackToTcp(port=4500)]
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == ["tcp"]
    (why,) = [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("event") == "too_big_for_udp" and "exchange" in r.data
    ]
    assert why["exchange"] == "IKE_INTERMEDIATE" and why["length"] > why["max_length"] == 1500 - 32
    # one UDP round trip (IKE_SA_INIT), then TCP: handshake, IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH
    assert established_at(pair) == pytest.approx(2 * 0.01 + 4 * 2 * 0.01)
    # the oversized IKE_INTERMEDIATE never went out over UDP
    assert not [d for kind, f, d in pair.sent if kind == "udp" and f and len(d) > 1500 - 28]
    pair.i.send_packet(b"\x45over tcp", now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"\x45over tcp"]


def test_with_rfc_7383_offered_the_initiator_stays_on_udp() -> None:
    pair = run(**PQ, fragmentation=True, i_oversize_udp="tcp")
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == ["udp"]
    assert not pair.of("i", FallbackToTcp)
    assert any(r.data.get("fragments") for r in pair.tracer.select(layer="ike", name="segment_sent", node="i"))


def test_without_the_policy_the_message_goes_whole_as_ip_fragments() -> None:
    pair = run(**PQ, i_fragmentation=True, r_fragmentation=False)
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == ["udp"]  # this path carries IP fragments
    assert [
        r.data["exchange"]
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("event") == "ip_fragments"
    ] == ["IKE_INTERMEDIATE"]


def test_udp_only_with_the_policy_fails_with_the_reason() -> None:
    pair = run(**PQ, transport="udp", i_oversize_udp="tcp")
    assert not pair.of("i", IkeSaEstablished)
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and "does not fit a 1500-byte path" in deleted.reason


def test_a_large_certificate_chain_sends_the_initiator_to_tcp_in_the_simulator() -> None:
    from tests.ike.test_cert_auth_exchanges import CHECKED_AT, pki

    p = pki("rsa-2048", names=("big.initiator.lab", "responder.lab"))
    common = {"auth": "signature", "trust_anchors": p.trust_anchors, "validation_time": CHECKED_AT, "dh_groups": (31,)}
    session = IkeSession(
        name="big",
        initiator_config={
            **common,
            "credential": p.end_entities["big.initiator.lab"],
            "additional_key_exchanges": (36,),  # fits 1500 octets; the RSA chain in IKE_AUTH does not
            "oversize_udp": "tcp",
        },
        responder_config={**common, "credential": p.end_entities["responder.lab"]},
        data_bytes=16 * 1024,
    )
    scenario = Scenario(
        name="too-big",
        description="IKE_AUTH too big for UDP",
        topology="single-path",
        transfers=(session,),
        time_limit_s=30.0,
    )
    result = run_scenario(scenario, seed=2, pcaps=False)
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {t.extra["transport"] for t in result.transfers} == {"tcp"}
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    (why,) = [
        r.data
        for r in tracer.records
        if r.layer == "ike" and r.data.get("event") == "too_big_for_udp" and "exchange" in r.data
    ]
    assert why["exchange"] == "IKE_AUTH"
    assert max(t.extra["ike_established_s"] for t in result.transfers) < 1.0  # no UDP timeout waited out
    steps = [
        (r.data["event"], r.data["transport"])
        for r in tracer.records
        if r.layer == "ike" and r.node == "h1" and "attempt" in r.data
    ]
    assert steps == [  # IKE_SA_INIT and IKE_INTERMEDIATE fit, so UDP won; IKE_AUTH did not
        ("started", "udp"),
        ("won", "udp"),
        ("too_big_for_udp", "udp"),
        ("started", "tcp"),
        ("won", "tcp"),
    ]


def drop_oversized(kind: str, from_i: bool, data: bytes) -> bytes | None:
    """A path that loses every datagram larger than 1500 octets of IP (as one that drops IP fragments does)."""
    return None if kind == "udp" and len(data) + 8 + 20 > 1500 else data


@pytest.mark.parametrize(
    ("settings", "transport", "at_s"),
    [
        # no RFC 7383, no policy: IKE_INTERMEDIATE (sent at 20 ms) is lost through every retransmission
        # (0.5 + 1 + 2 s with retransmit_tries=2), then TCP from scratch
        ({"r_fragmentation": False, "retransmit_tries": 2}, "tcp", 0.02 + 3.5 + 4 * 2 * 0.01),
        # RFC 7383: every fragment fits, UDP works: IKE_SA_INIT, IKE_INTERMEDIATE, IKE_AUTH
        ({}, "udp", 3 * 2 * 0.01),
        # the policy: one UDP round trip, then TCP
        ({"r_fragmentation": False, "i_oversize_udp": "tcp"}, "tcp", 2 * 0.01 + 4 * 2 * 0.01),
    ],
    ids=["ip-fragments-dropped", "rfc7383", "straight-to-tcp"],
)
def test_a_path_that_drops_large_datagrams(settings: dict, transport: str, at_s: float) -> None:
    pair = Pair(*configs(**PQ, fragmentation=True, path_mtu_bytes=1500, **settings), tamper=drop_oversized)
    pair.i.connect(now=0.0)
    pair.run(10.0)
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == [transport]
    assert established_at(pair) == pytest.approx(at_s)
    udp_end = [event for _, event, t, _ in attempts(pair) if t == "udp"][-1]
    assert udp_end == {"tcp": "unanswered" if "retransmit_tries" in settings else "too_big_for_udp"}.get(
        transport, "won"
    )
