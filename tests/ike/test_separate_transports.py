"""Separate transports for IKE and ESP (draft-ietf-ipsecme-ikev2-reliable-transport): SEPARATE_TRANSPORTS in
IKE_SA_INIT over UDP 4500, then IKE over TCP (RFC 9329) while ESP stays on UDP; and what happens without it."""

from __future__ import annotations

import hashlib

import pytest

from lab.errors import ConfigError
from lab.ike.config import IkeConfig
from lab.ike.events import ChildSaEstablished, IkeSaDeleted, IkeSaEstablished, LivenessChecked, PacketReceived
from lab.ike.sa import IkeSa
from lab.ike.separate_transports import SEPARATE_TRANSPORTS, separate_transports_notify, separate_transports_offer
from lab.wire.esp import NEXT_HEADER_IPV4
from lab.wire.ikev2 import (
    IKE_SA_INIT,
    NON_ESP_MARKER,
    IkeMessage,
    NotifyPayload,
    decode_ike_message,
    encode_ike_message,
)
from tests.ike.pair import Pair, configs

BOTH = {"separate_transports": True}


def start(pair: Pair, until: float = 10.0) -> Pair:
    pair.i.connect(now=0.0)
    pair.run(until)
    return pair


def ike_state(pair: Pair, node: str, **fields: object) -> list[dict]:
    return [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node=node)
        if all(r.data.get(k) == v for k, v in fields.items())
    ]


def udp_kinds(pair: Pair) -> list[str]:
    """Each UDP datagram sent, as RFC 3948 tells them apart on port 4500 (the pair sends on 4500 only here)."""
    return ["ike" if data[:4] == NON_ESP_MARKER else "esp" for kind, _, data in pair.sent if kind == "udp"]


def exchanges_sent(pair: Pair, node: str) -> list[tuple[str, str, bool]]:
    return [
        (r.data["exchange"], r.data["transport"], r.data["response"])
        for r in pair.tracer.select(layer="ike", name="segment_sent", node=node)
    ]


# --- the notify --------------------------------------------------------------------------------------------


def test_the_notify_number_is_a_private_use_status_type_and_the_payload_is_empty() -> None:
    assert 40960 <= SEPARATE_TRANSPORTS <= 65535  # RFC 7296 §3.10.1 / IANA: status, Private Use (TBD by IANA)
    message = IkeMessage(b"\x01" * 8, bytes(8), IKE_SA_INIT, 0, (separate_transports_notify(),), initiator=True)
    data = encode_ike_message(message)
    # N payload: next payload 0, critical 0, length 8, Protocol ID 0, SPI Size 0, type 45000; nothing after
    assert data[28:] == bytes((0, 0, 0, 8, 0, 0)) + SEPARATE_TRANSPORTS.to_bytes(2, "big")
    assert decode_ike_message(data).notifies(SEPARATE_TRANSPORTS) == [NotifyPayload(SEPARATE_TRANSPORTS)]


@pytest.mark.parametrize(
    ("payloads", "offered", "ignored"),
    [
        ((), False, ""),
        ((NotifyPayload(SEPARATE_TRANSPORTS),), True, ""),
        ((NotifyPayload(SEPARATE_TRANSPORTS), NotifyPayload(SEPARATE_TRANSPORTS)), True, ""),  # twice: one offer
        ((NotifyPayload(SEPARATE_TRANSPORTS, b"\x01"),), False, "1 octets of data"),
        ((NotifyPayload(SEPARATE_TRANSPORTS, protocol_id=3, spi=b"\x00\x00\x10\x00"),), False, "SPI of 4 octets"),
        ((NotifyPayload(SEPARATE_TRANSPORTS, b"x"), NotifyPayload(SEPARATE_TRANSPORTS)), True, ""),
        ((NotifyPayload(SEPARATE_TRANSPORTS - 1),), False, ""),
    ],
)
def test_offer_is_read_from_well_formed_notifies_only(payloads: tuple, offered: bool, ignored: str) -> None:
    got, reason = separate_transports_offer(payloads)
    assert got is offered
    assert (ignored in reason) if ignored else reason == ""


def test_separate_transports_needs_udp_to_start_on() -> None:
    with pytest.raises(ConfigError, match="separate_transports"):
        IkeConfig(separate_transports=True, transport="tcp")
    assert IkeConfig().separate_transports is False  # off by default: nothing else changes


# --- negotiation ---------------------------------------------------------------------------------------------


def test_both_on_ike_sa_init_over_udp_4500_then_ike_over_tcp_and_esp_over_udp() -> None:
    pair = start(Pair(*configs(**BOTH)))
    (ev_i,) = pair.of("i", IkeSaEstablished)
    (ev_r,) = pair.of("r", IkeSaEstablished)
    assert (ev_i.transport, ev_i.esp_transport) == ("tcp", "udp")
    assert (ev_r.transport, ev_r.esp_transport) == ("tcp", "udp")
    # IKE_SA_INIT on UDP 4500 behind the non-ESP marker (RFC 3948), never on 500; IKE_AUTH on TCP
    assert ike_state(pair, "i", event="started") == [
        {"attempt": 1, "event": "started", "transport": "udp", "port": 4500}
    ]
    assert exchanges_sent(pair, "i") == [("IKE_SA_INIT", "udp", False), ("IKE_AUTH", "tcp", False)]
    assert exchanges_sent(pair, "r") == [("IKE_SA_INIT", "udp", True), ("IKE_AUTH", "tcp", True)]
    assert [kind for kind, _, _ in pair.sent] == ["udp", "udp", "tcp", "tcp"]
    assert udp_kinds(pair) == ["ike", "ike"]
    for node in ("i", "r"):
        (negotiated,) = ike_state(pair, node, event="separate_transports")
        assert (negotiated["negotiated"], negotiated["offered"], negotiated["peer_offered"]) == (True, True, True)


def test_the_switch_is_in_the_trace_on_both_ends() -> None:
    pair = start(Pair(*configs(**BOTH)))
    label = pair.of("i", IkeSaEstablished)[0].spi_i.hex()
    switched_i = ike_state(pair, "i", event="transport_switched")
    switched_r = ike_state(pair, "r", event="transport_switched")
    assert switched_i == [
        {
            "event": "transport_switched",
            "sa": label,
            "ike_transport": "tcp",
            "esp_transport": "udp",
            "esp_remote": "192.0.2.2:4500",
        }
    ]
    assert [(d["ike_transport"], d["esp_transport"], d["esp_remote"]) for d in switched_r] == [
        ("tcp", "udp", "192.0.2.1:4500")
    ]
    connecting = [
        r.data
        for r in pair.tracer.select(layer="iketcp", name="state_updated", node="i")
        if r.data.get("event") == "connecting"
    ]
    assert [(d["purpose"], d["remote"], d["sa"]) for d in connecting] == [
        ("separate_transports", "192.0.2.2:4500", label)
    ]
    (ok,) = ike_state(pair, "i", exchange="IKE_SA_INIT", result="ok")
    assert ok["separate_transports"] is True


@pytest.mark.parametrize("side", ["i", "r"])
def test_only_one_side_on_means_no_switch_and_udp_carries_on(side: str) -> None:
    pair = start(Pair(*configs(**{f"{side}_separate_transports": True})))
    (ev,) = pair.of("i", IkeSaEstablished)
    assert (ev.transport, ev.esp_transport) == ("udp", "")
    assert not any(kind == "tcp" for kind, _, _ in pair.sent)
    assert not ike_state(pair, "i", event="transport_switched") and not ike_state(pair, "r", event="transport_switched")
    (mine,) = ike_state(pair, side, event="separate_transports")
    assert (mine["negotiated"], mine["offered"], mine["peer_offered"]) == (False, True, False)
    # an initiator with the option starts on 4500 as the draft says; one without starts on 500
    assert ike_state(pair, "i", event="started")[0]["port"] == (4500 if side == "i" else 500)
    # the tunnel works over UDP as it always did
    pair.i.send_packet(b"over udp", now=pair.now)
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"over udp"]
    assert pair.i.esp_counters["udp"].packets_sent == 1 and pair.i.esp_counters["tcp"].packets_sent == 0


def test_neither_on_sends_no_notify() -> None:
    pair = start(Pair(*configs()))
    assert not ike_state(pair, "i", event="separate_transports")
    first = pair.sent[0][2]
    assert not decode_ike_message(first).notifies(SEPARATE_TRANSPORTS)


# --- ESP through the separated SA --------------------------------------------------------------------------


def test_a_transfer_both_ways_goes_over_udp_byte_exact_while_ike_stays_on_tcp() -> None:
    pair = start(Pair(*configs(**BOTH)))
    sent_i = [bytes([n]) * (100 + 37 * n) for n in range(40)]
    sent_r = [hashlib.sha256(bytes([n])).digest() * (1 + n % 20) for n in range(30)]
    for data in sent_i:
        pair.i.send_packet(data, now=pair.now)
    pair.run(pair.now + 1)
    sa_r = pair.r.sas()[0]
    for data in sent_r:
        pair.r.send_packet(data, now=pair.now, sa=sa_r)
    pair.run(pair.now + 1)
    got_r = [e.data for e in pair.of("r", PacketReceived)]
    got_i = [e.data for e in pair.of("i", PacketReceived)]
    assert hashlib.sha256(b"".join(got_r)).digest() == hashlib.sha256(b"".join(sent_i)).digest() and got_r == sent_i
    assert got_i == sent_r
    assert all(e.next_header == NEXT_HEADER_IPV4 for e in pair.of("r", PacketReceived))
    # every ESP packet went in UDP 4500, none in the TCP stream
    assert udp_kinds(pair) == ["ike", "ike"] + ["esp"] * (len(sent_i) + len(sent_r))
    for ep, n_out in ((pair.i, len(sent_i)), (pair.r, len(sent_r))):
        assert ep.esp_counters["udp"].packets_sent == n_out
        assert ep.esp_counters["tcp"].packets_sent == 0 and ep.esp_counters["tcp"].packets_received == 0
    esp = [r.data["transport"] for r in pair.tracer.select(layer="esp", name="segment_sent")]
    assert set(esp) == {"udp"} and len(esp) == len(sent_i) + len(sent_r)


def test_later_exchanges_run_over_tcp_and_the_rekeyed_child_keeps_esp_on_udp() -> None:
    pair = start(Pair(*configs(**BOTH)))
    pair.i.check_liveness(now=pair.now)
    pair.run(pair.now + 1)
    assert len(pair.of("i", LivenessChecked)) == 1
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1)
    assert [e.rekeyed_spi_in is not None for e in pair.of("i", ChildSaEstablished)] == [False, True]
    pair.i.send_packet(b"after the rekey", now=pair.now)
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"after the rekey"]
    transports = {(x, t) for x, t, _ in exchanges_sent(pair, "i") if x != "IKE_SA_INIT"}
    assert transports == {("IKE_AUTH", "tcp"), ("INFORMATIONAL", "tcp"), ("CREATE_CHILD_SA", "tcp")}
    assert udp_kinds(pair)[-1] == "esp"
    assert pair.i.esp_counters["tcp"].packets_sent == 0


# --- a peer that gets it wrong -----------------------------------------------------------------------------


def _responder_answers_with(monkeypatch: pytest.MonkeyPatch, *notifies: NotifyPayload) -> None:
    """The responder puts ``notifies`` in its IKE_SA_INIT response instead of the well-formed one (it signs
    what it sent, so IKE_AUTH still verifies: only the notify is wrong)."""
    original = IkeSa._init_notifies

    def patched(self: IkeSa, *, peer: object) -> list:
        out = original(self, peer=peer)
        if peer is None:
            return out
        kept = [p for p in out if not (isinstance(p, NotifyPayload) and p.notify_type == SEPARATE_TRANSPORTS)]
        return kept + list(notifies)

    monkeypatch.setattr(IkeSa, "_init_notifies", patched)


@pytest.mark.parametrize(
    ("notify", "reason"),
    [
        (NotifyPayload(SEPARATE_TRANSPORTS, b"\x00\x01"), "2 octets of data"),
        (NotifyPayload(SEPARATE_TRANSPORTS, protocol_id=3, spi=b"\x12\x34\x56\x78"), "SPI of 4 octets"),
    ],
)
def test_a_malformed_notify_in_the_response_is_ignored_and_udp_carries_on(
    monkeypatch: pytest.MonkeyPatch, notify: NotifyPayload, reason: str
) -> None:
    _responder_answers_with(monkeypatch, notify)
    pair = start(Pair(*configs(**BOTH)))
    (ev,) = pair.of("i", IkeSaEstablished)
    assert (ev.transport, ev.esp_transport) == ("udp", "")
    (ignored,) = ike_state(pair, "i", event="separate_transports_ignored")
    assert reason in ignored["reason"] and "ignored" in ignored["reason"]
    (negotiated,) = ike_state(pair, "i", event="separate_transports")
    assert (negotiated["negotiated"], negotiated["peer_offered"]) == (False, False)
    assert not any(kind == "tcp" for kind, _, _ in pair.sent)
    assert not pair.of("i", IkeSaDeleted)
    pair.i.send_packet(b"still fine", now=pair.now)
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"still fine"]


def test_a_duplicated_notify_counts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _responder_answers_with(monkeypatch, separate_transports_notify(), separate_transports_notify())
    pair = start(Pair(*configs(**BOTH)))
    (ev,) = pair.of("i", IkeSaEstablished)
    assert (ev.transport, ev.esp_transport) == ("tcp", "udp")
    assert len(ike_state(pair, "i", event="transport_switched")) == 1
    assert not ike_state(pair, "i", event="separate_transports_ignored")


def test_a_malformed_notify_in_the_request_gets_no_notify_back(monkeypatch: pytest.MonkeyPatch) -> None:
    original = IkeSa._init_notifies

    def patched(self: IkeSa, *, peer: object) -> list:
        out = original(self, peer=peer)
        if peer is not None:
            return out
        return [
            NotifyPayload(SEPARATE_TRANSPORTS, b"junk")
            if isinstance(p, NotifyPayload) and p.notify_type == SEPARATE_TRANSPORTS
            else p
            for p in out
        ]

    monkeypatch.setattr(IkeSa, "_init_notifies", patched)
    pair = start(Pair(*configs(**BOTH)))
    response = decode_ike_message(pair.sent[1][2][len(NON_ESP_MARKER) :])
    assert response.response and not response.notifies(SEPARATE_TRANSPORTS)
    (ignored,) = ike_state(pair, "r", event="separate_transports_ignored")
    assert "4 octets of data" in ignored["reason"]
    assert pair.of("i", IkeSaEstablished)[0].transport == "udp"


def test_tcp_refused_after_agreeing_fails_the_sa_with_a_clear_reason() -> None:
    pair = start(Pair(*configs(**BOTH), refused_tcp_ports={4500}), until=60.0)
    assert not pair.of("i", IkeSaEstablished)
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and "TCP 4500 for IKE (separate transports) did not connect" in deleted.reason
    assert "refused" in deleted.reason
    tcp = [r.data["event"] for r in pair.tracer.select(layer="iketcp", name="state_updated", node="i")]
    assert tcp == ["connecting", "connect_failed", "peer_gone"]  # refused: no point trying again


# --- ESP over UDP gets nothing through ------------------------------------------------------------------------


def _drop_udp_esp(kind: str, from_i: bool, data: bytes) -> bytes | None:
    """A path that lets IKE (UDP with the non-ESP marker, and TCP) through but drops UDP-encapsulated ESP."""
    if kind == "udp" and data[:4] != NON_ESP_MARKER and len(data) > 1:
        return None
    return data


def test_esp_moves_into_the_tcp_connection_when_nothing_comes_back_over_udp() -> None:
    pair = start(Pair(*configs(**BOTH, esp_udp_timeout_s=1.0), tamper=_drop_udp_esp))
    assert pair.of("i", IkeSaEstablished)[0].esp_transport == "udp"
    t0 = pair.now
    pair.i.send_packet(b"lost on udp", now=pair.now)
    pair.run(t0 + 0.9)
    assert not pair.of("r", PacketReceived) and not ike_state(pair, "i", event="esp_moved")
    pair.run(t0 + 1.1)
    (moved,) = ike_state(pair, "i", event="esp_moved")
    assert moved["esp_transport"] == "tcp" and "no ESP came back over UDP within 1 s" in moved["reason"]
    later = [bytes([n]) * (50 + n) for n in range(10)]
    for data in later:
        pair.i.send_packet(data, now=pair.now)
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("r", PacketReceived)] == later  # what was sent after the move, byte exact
    (followed,) = ike_state(pair, "r", event="esp_moved")
    assert followed["esp_transport"] == "tcp" and followed["reason"] == "the peer sends ESP over TCP"
    pair.r.send_packet(b"answer over tcp", now=pair.now, sa=pair.r.sas()[0])
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("i", PacketReceived)] == [b"answer over tcp"]
    assert pair.i.esp_counters["tcp"].packets_sent == len(later) and pair.r.esp_counters["tcp"].packets_sent == 1
    assert pair.i.esp_counters["udp"].packets_sent == 1  # the one that was lost
    pair.i.check_liveness(now=pair.now)  # IKE carries on over the same connection
    pair.run(pair.now + 1)
    assert len(pair.of("i", LivenessChecked)) == 1


def test_esp_stays_on_udp_while_it_comes_back() -> None:
    pair = start(Pair(*configs(**BOTH, esp_udp_timeout_s=1.0)))
    sa_r = pair.r.sas()[0]
    for n in range(5):
        pair.i.send_packet(b"ping %d" % n, now=pair.now)
        pair.run(pair.now + 0.05)
        pair.r.send_packet(b"pong %d" % n, now=pair.now, sa=sa_r)
        pair.run(pair.now + 0.6)
    pair.run(pair.now + 5)
    assert not ike_state(pair, "i", event="esp_moved") and not ike_state(pair, "r", event="esp_moved")
    assert len(pair.of("i", PacketReceived)) == 5 and pair.i.esp_counters["tcp"].packets_sent == 0


def test_without_the_timeout_esp_is_never_moved() -> None:
    pair = start(Pair(*configs(**BOTH), tamper=_drop_udp_esp))
    pair.i.send_packet(b"lost", now=pair.now)
    pair.run(pair.now + 60)
    assert not ike_state(pair, "i", event="esp_moved")
    assert pair.i.esp_counters["tcp"].packets_sent == 0


# --- in the simulator --------------------------------------------------------------------------------------


def test_behind_a_source_nat_esp_goes_udp_encapsulated_to_the_mapped_port_and_ike_over_tcp() -> None:
    from dataclasses import replace

    from lab.scenario import get_scenario, run_scenario

    base = get_scenario("nat")  # the initiator behind a source NAT on r1; the session rekeys its Child SA
    (session,) = base.transfers
    session = replace(
        session,
        initiator_config={**session.initiator_config, **BOTH},
        responder_config={**session.responder_config, **BOTH},
    )
    result = run_scenario(replace(base, name="nat-separate-transports", transfers=(session,)), seed=1, pcaps=False)
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {(t.extra["transport"], t.extra["esp_transport"], t.extra["nat_detected"]) for t in result.transfers} == {
        ("tcp", "udp", True)
    }
    records = result.network.tracer.records
    switched = {
        r.node: r.data["esp_remote"]
        for r in records
        if r.layer == "ike" and r.name == "state_updated" and r.data.get("event") == "transport_switched"
    }
    nat = [r.data for r in records if r.layer == "middlebox" and r.data.get("mapping") == "created"]
    public_udp = {d["public"] for d in nat if d["protocol"] == "udp"}
    assert {d["public"] for d in nat if d["protocol"] == "tcp"} - public_udp  # TCP got a mapping of its own
    assert switched["h1"] == "10.0.2.2:4500" and switched["h2"] in public_udp  # the NAT's UDP mapping, not TCP's
    esp = [r for r in records if r.layer == "esp" and r.name == "segment_received"]
    assert {r.data["transport"] for r in esp} == {"udp"} and {r.node for r in esp} == {"h1", "h2"}
    assert any(r.data.get("kind") == "nat_keepalive" for r in records if r.layer == "ike" and r.node == "h1")
    rekeys = [r for r in records if r.layer == "ike" and r.data.get("exchange") == "CREATE_CHILD_SA"]
    assert rekeys and {r.data["transport"] for r in rekeys if "transport" in r.data} == {"tcp"}


def test_an_ike_sa_rekey_keeps_ike_on_tcp_and_esp_on_udp() -> None:
    pair = start(Pair(*configs(**BOTH, esp_udp_timeout_s=1.0)))
    old = pair.i.sa
    pair.i.send_packet(b"before", now=pair.now)  # arms the wait for ESP back over UDP
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 0.2)
    new = pair.i.sa
    assert new is not old and new.esp_transport == "udp" and new.transport == "tcp"
    sa_r = next(sa for sa in pair.r.sas() if sa.spi_i == new.spi_i or sa.spi_r == new.spi_r)
    pair.r.send_packet(b"back over udp", now=pair.now, sa=sa_r)  # answers within the second: UDP works
    pair.run(pair.now + 5)
    assert not ike_state(pair, "i", event="esp_moved") and not ike_state(pair, "r", event="esp_moved")
    pair.i.send_packet(b"after", now=pair.now)
    pair.run(pair.now + 0.5)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"before", b"after"]
    assert [e.data for e in pair.of("i", PacketReceived)] == [b"back over udp"]
    rekey = [(x, t) for x, t, _ in exchanges_sent(pair, "i") if x in ("CREATE_CHILD_SA", "INFORMATIONAL")]
    assert rekey and {t for _, t in rekey} == {"tcp"}
    assert pair.i.esp_counters["tcp"].packets_sent == 0 and pair.r.esp_counters["tcp"].packets_sent == 0


def test_the_wait_for_esp_over_udp_moves_to_the_ike_sa_a_rekey_made() -> None:
    pair = start(Pair(*configs(**BOTH, esp_udp_timeout_s=1.0), tamper=_drop_udp_esp))
    t0 = pair.now
    pair.i.send_packet(b"lost", now=t0)
    pair.i.rekey_ike(now=t0)
    pair.run(t0 + 0.5)
    new = pair.i.sa
    assert new.spi_i != pair.of("i", IkeSaEstablished)[0].spi_i and new.esp_transport == "udp"
    pair.run(t0 + 1.05)
    (moved,) = ike_state(pair, "i", event="esp_moved")
    assert moved["sa"] == new.label and new.esp_transport == "tcp"
