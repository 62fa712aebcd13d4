"""IKEv2 exchanges between two lab endpoints (tests/ike/pair.py): RFC 7296 behaviour, RFC 9329 transports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import LocalProtocolError
from lab.ike.config import IkeConfig
from lab.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    FallbackToTcp,
    IkeSaDeleted,
    IkeSaEstablished,
    LivenessChecked,
    PacketReceived,
)
from lab.ike.state import TRANSITIONS, IkeSaState, Input
from lab.wire.esp import NEXT_HEADER_IPV4
from lab.wire.ikev2 import (
    AUTHENTICATION_FAILED,
    COOKIE,
    DH_CURVE25519,
    DH_ECP_256,
    DH_MODP_2048,
    INVALID_KE_PAYLOAD,
    NO_PROPOSAL_CHOSEN,
    decode_ike_message,
)
from tests.ike.pair import Pair, configs


def established(pair: Pair, *, until: float = 5.0) -> Pair:
    pair.i.connect(now=pair.now)
    pair.run(until)
    return pair


def records(pair: Pair, layer: str, name: str | None = None, node: str | None = None) -> list:
    return pair.tracer.select(layer=layer, name=name, node=node)


@pytest.mark.parametrize("group", [DH_ECP_256, DH_CURVE25519, DH_MODP_2048])
@pytest.mark.parametrize("bits", [128, 256])
def test_udp_exchange_per_group_and_key_size(group: int, bits: int) -> None:
    pair = established(Pair(*configs(dh_groups=(group,), encr_key_bits=(bits,), transport="udp")))
    (ev,) = pair.of("i", IkeSaEstablished)
    assert ev.transport == "udp" and ev.port == 4500 and not ev.nat_detected
    assert pair.of("r", IkeSaEstablished)[0].spi_i == ev.spi_i
    keys = [r.data for r in records(pair, "ike", "key_updated")]
    assert {(k["dh_group"], k["key_bits"]) for k in keys} == {(group, bits)}
    assert keys[0]["sk_ei"] == keys[1]["sk_ei"]  # both ends derived the same keys
    assert len(pair.of("i", ChildSaEstablished)) == len(pair.of("r", ChildSaEstablished)) == 1
    # IKE_SA_INIT on port 500 without marker, IKE_AUTH on 4500 behind the non-ESP marker (RFC 7296 §2.23)
    udp = [data for kind, from_i, data in pair.sent if kind == "udp" and from_i]
    assert decode_ike_message(udp[0]).exchange_type == 34 and udp[1][:4] == bytes(4)


def test_tunnelled_packets_both_ways_over_udp_and_tcp() -> None:
    for transport in ("udp", "tcp"):
        pair = established(Pair(*configs(transport=transport)))
        pair.i.send_packet(b"inner i->r", now=pair.now)
        pair.r.send_packet(b"inner r->i", now=pair.now)
        pair.run(pair.now + 1)
        assert [e.data for e in pair.of("r", PacketReceived)] == [b"inner i->r"]
        assert [e.data for e in pair.of("i", PacketReceived)] == [b"inner r->i"]
        assert pair.i.esp_counters[transport].packets_sent == 1
        assert pair.i.esp_counters[transport].packets_received == 1


def test_responder_asks_for_another_group() -> None:
    """INVALID_KE_PAYLOAD (RFC 7296 §1.2): the initiator retries with the group the responder names."""
    pair = established(Pair(*configs(i_dh_groups=(DH_ECP_256, DH_MODP_2048), r_dh_groups=(DH_MODP_2048,))))
    assert pair.of("i", IkeSaEstablished)
    results = [
        r.data for r in records(pair, "ike", "state_updated", "i") if r.data.get("result") == "INVALID_KE_PAYLOAD"
    ]
    assert results and results[0]["dh_group"] == DH_MODP_2048
    assert {r.data["dh_group"] for r in records(pair, "ike", "key_updated")} == {DH_MODP_2048}


def test_no_common_proposal_fails_without_trying_tcp() -> None:
    pair = established(Pair(*configs(i_dh_groups=(DH_ECP_256,), r_dh_groups=(DH_MODP_2048,))))
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and deleted.notify_type == NO_PROPOSAL_CHOSEN
    assert not any(kind == "tcp" for kind, _, _ in pair.sent)


def test_cookie_under_load() -> None:
    """A responder over its half-open threshold answers COOKIE; the initiator repeats with it first (§2.6)."""
    pair = established(Pair(*configs(r_cookie_threshold=0)))
    assert pair.of("i", IkeSaEstablished)
    first, second = [
        decode_ike_message(d) for k, from_i, d in pair.sent if k == "udp" and from_i and d[:4] != bytes(4)
    ][:2]
    assert not first.notifies(COOKIE)
    assert second.payloads[0].notify_type == COOKIE  # "the first payload"
    assert [r.data["event"] for r in records(pair, "ike", "state_updated", "r") if "event" in r.data] == [
        "cookie_requested",
        "path",
    ]


def test_forged_cookie_is_refused() -> None:
    def forge(kind: str, from_i: bool, data: bytes) -> bytes | None:
        if from_i and kind == "udp" and data[:4] != bytes(4):
            message = decode_ike_message(data)
            if message.notifies(COOKIE):
                at = data.index(message.notifies(COOKIE)[0].data)
                return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
        return data

    pair = established(
        Pair(*configs(r_cookie_threshold=0, transport="udp", retransmit_tries=2), tamper=forge), until=20
    )
    assert not pair.of("i", IkeSaEstablished)
    assert any(r.data.get("reason") == "bad_cookie" for r in records(pair, "ike", "segment_dropped", "r"))


def test_wrong_psk_fails_authentication() -> None:
    ci, cr = configs()
    cr = IkeConfig(**{**cr.__dict__, "psk": b"another-psk-000000"})
    pair = established(Pair(ci, cr))
    assert pair.of("i", IkeSaDeleted)[0].notify_type == AUTHENTICATION_FAILED
    assert pair.of("r", IkeSaDeleted)[0].notify_type == AUTHENTICATION_FAILED
    assert not pair.of("i", IkeSaEstablished) and not pair.of("r", IkeSaEstablished)


def test_unexpected_peer_identity_is_refused() -> None:
    pair = established(Pair(*configs(r_remote_id=b"somebody-else")))
    assert pair.of("r", IkeSaDeleted)[0].reason.startswith("unexpected IDi")
    assert not pair.of("i", IkeSaEstablished)


def test_childless_ike_auth() -> None:
    pair = established(Pair(*configs(child_sa=False)))
    assert pair.of("i", IkeSaEstablished) and pair.of("r", IkeSaEstablished)
    assert not pair.of("i", ChildSaEstablished) and not pair.of("r", ChildSaEstablished)
    with pytest.raises(LocalProtocolError):
        pair.i.send_packet(b"x", now=pair.now)


def test_rekey_child_then_old_sa_deleted() -> None:
    pair = established(Pair(*configs()))
    old = pair.of("i", ChildSaEstablished)[0]
    pair.i.send_packet(b"before", now=pair.now)
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1)
    new = pair.of("i", ChildSaEstablished)[1]
    assert new.rekeyed_spi_in == old.spi_in and new.spi_in != old.spi_in
    assert [e.spi_in for e in pair.of("i", ChildSaDeleted)] == [old.spi_in]
    assert len(pair.of("r", ChildSaDeleted)) == 1
    pair.i.send_packet(b"after", now=pair.now)
    pair.run(pair.now + 1)
    received = pair.of("r", PacketReceived)
    assert [e.data for e in received] == [b"before", b"after"]
    assert received[0].spi != received[1].spi == new.spi_out


def test_liveness_and_delete() -> None:
    pair = established(Pair(*configs()))
    pair.i.check_liveness(now=pair.now)
    pair.run(pair.now + 1)
    assert len(pair.of("i", LivenessChecked)) == 1
    pair.i.close(now=pair.now)
    pair.run(pair.now + 1)
    assert pair.of("i", IkeSaDeleted)[0].reason == "closed"
    assert pair.of("r", IkeSaDeleted)[0].reason == "deleted by peer"
    assert pair.i.sa.state is IkeSaState.CLOSED


def test_responder_can_close_too() -> None:
    pair = established(Pair(*configs(transport="tcp")))
    pair.r.close(now=pair.now)
    pair.run(pair.now + 1)
    assert pair.of("r", IkeSaDeleted)[0].reason == "closed"
    assert pair.of("i", IkeSaDeleted)[0].reason == "deleted by peer"


def test_periodic_liveness_checks() -> None:
    pair = established(Pair(*configs(dpd_interval_s=1.0)))
    pair.run(pair.now + 3.5)
    assert len(pair.of("i", LivenessChecked)) + len(pair.of("r", LivenessChecked)) >= 3


# --- retransmission: UDP with backoff, TCP never ---------------------------------------------------------------------


def test_udp_retransmits_with_backoff_then_gives_up() -> None:
    pair = Pair(*configs(transport="udp", retransmit_s=0.5, retransmit_tries=3), blocked_udp_ports={500, 4500})
    established(pair, until=30)
    sent = records(pair, "ike", "segment_sent", "i")
    times = [r.t for r in sent]
    assert times == [0.0, 0.5, 1.5, 3.5]  # 0.5, 1, 2 s apart (RFC 7296 §2.1)
    assert [r.data.get("retransmission", 0) for r in sent] == [0, 1, 2, 3]
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and "unresponsive" in deleted.reason
    assert pair.tracer.select(layer="ike", node="i")[-1].t == pytest.approx(7.5)  # 0.5 * (2**4 - 1)


def test_tcp_never_retransmits() -> None:
    def swallow(kind: str, from_i: bool, data: bytes) -> bytes | None:
        return None if kind == "tcp" and not from_i else data  # the responder's answers vanish

    pair = Pair(*configs(transport="tcp", retransmit_s=0.5, retransmit_tries=3), tamper=swallow)
    established(pair, until=30)
    assert [r.data.get("retransmission") for r in records(pair, "ike", "segment_sent", "i")] == [None]
    assert pair.of("i", IkeSaDeleted) and pair.i.sa is None


def test_unresponsive_peer_after_establishment() -> None:
    pair = established(Pair(*configs(transport="udp", retransmit_tries=2)))
    pair.blocked_udp_ports = {4500}
    pair.i.check_liveness(now=pair.now)
    pair.run(pair.now + 10)
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and deleted.reason == "peer unresponsive (INFORMATIONAL)"


def test_retransmitted_request_gets_the_cached_response() -> None:
    dropped = []

    def drop_first_auth_response(kind: str, from_i: bool, data: bytes) -> bytes | None:
        if not from_i and data[:4] == bytes(4) and data[4 + 18] == 35 and not dropped:
            dropped.append(data)
            return None
        return data

    pair = established(Pair(*configs(transport="udp"), tamper=drop_first_auth_response))
    assert pair.of("i", IkeSaEstablished) and len(pair.of("r", IkeSaEstablished)) == 1
    resent = [r.data for r in records(pair, "ike", "segment_sent", "r") if r.data.get("resent")]
    assert len(resent) == 1 and resent[0]["exchange"] == "IKE_AUTH"
    auth_responses = [d for k, from_i, d in pair.sent if not from_i and d[:4] == bytes(4) and d[4 + 18] == 35]
    assert auth_responses[0] == auth_responses[1]


# --- malformed and forged input ---------------------------------------------------------------------------------------


def test_corrupted_ike_auth_is_dropped_then_retransmission_succeeds() -> None:
    hits = []

    def flip(kind: str, from_i: bool, data: bytes) -> bytes | None:
        if from_i and data[:4] == bytes(4) and data[4 + 18] == 35 and not hits:
            hits.append(1)
            return data[:-3] + bytes([data[-3] ^ 0x40]) + data[-2:]  # inside the ICV
        return data

    pair = established(Pair(*configs(transport="udp"), tamper=flip))
    assert pair.of("i", IkeSaEstablished)
    drops = [r.data["reason"] for r in records(pair, "ike", "segment_dropped", "r")]
    assert drops == ["integrity"]


@given(st.binary(max_size=300), st.sampled_from([500, 4500]))
def test_garbage_datagrams_never_raise(garbage: bytes, port: int) -> None:
    pair = established(Pair(*configs(transport="udp")), until=1)
    pair.r.receive_datagram(garbage, local=("192.0.2.2", port), remote=("192.0.2.9", 500), now=pair.now)
    pair.i.receive_datagram(garbage, local=("192.0.2.1", port), remote=("192.0.2.2", port), now=pair.now)
    pair.run(pair.now + 0.5)
    assert pair.i.sa is not None and pair.i.sa.established


@given(st.integers(0, 259), st.integers(0, 7), st.integers(28, 260))
def test_bitflipped_or_truncated_init_request_leaves_no_established_state(at: int, bit: int, cut: int) -> None:
    pair = Pair(*configs(transport="udp"))
    pair.i.connect(now=0.0)
    request = bytearray(pair.i.actions_to_send()[0].data)
    request[at % len(request)] ^= 1 << bit
    pair.r.receive_datagram(bytes(request[:cut]), local=("192.0.2.2", 500), remote=("192.0.2.1", 500), now=0.0)
    for action in pair.r.actions_to_send():
        assert decode_ike_message(action.data).exchange_type == 34  # at most an unencrypted IKE_SA_INIT answer
    assert not any(sa.established for sa in pair.r.sas())


def test_replayed_and_forged_esp_is_dropped_and_leaks_nothing() -> None:
    captured = []

    def keep(kind: str, from_i: bool, data: bytes) -> bytes | None:
        if from_i and kind == "udp" and data[:4] != bytes(4):
            captured.append(data)
        return data

    pair = established(Pair(*configs(transport="udp"), tamper=keep))
    pair.i.send_packet(b"secret inner packet", now=pair.now)
    pair.run(pair.now + 1)
    esp = captured[-1]
    forged = esp[:-1] + bytes([esp[-1] ^ 1])
    unknown = b"\x00\x00\x12\x34" + esp[4:]
    for packet in (esp, forged, unknown, esp[:10]):
        pair.r.receive_datagram(packet, local=("192.0.2.2", 4500), remote=("192.0.2.1", 4500), now=pair.now)
    pair.flush()
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"secret inner packet"]
    reasons = [r.data["reason"] for r in records(pair, "esp", "segment_dropped", "r")]
    assert reasons == ["duplicate", "duplicate", "unknown_spi", "malformed"]
    assert pair.r.esp_counters["udp"].packets_dropped == 4
    assert b"secret" not in repr(pair.tracer.records).encode()


# --- the state table ---------------------------------------------------------------------------------------------------


@given(st.sampled_from(list(IkeSaState)), st.sampled_from(list(Input)))
def test_every_state_input_pair_is_in_the_table_or_refused(state: IkeSaState, inp: Input) -> None:
    import random

    from lab.ike.sa import IkeSa

    ci, _ = configs()
    sa = IkeSa(
        config=ci,
        initiator=True,
        transport="udp",
        local=("192.0.2.1", 500),
        remote=("192.0.2.2", 500),
        rng=random.Random(1),
    )
    sa.state = state
    if (state, inp) in TRANSITIONS:
        sa._set_state(inp, 0.0)
        assert sa.state is TRANSITIONS[(state, inp)]
    else:
        with pytest.raises(LocalProtocolError):
            sa._set_state(inp, 0.0)
        assert sa.state is state


def test_api_misuse_raises_and_changes_nothing() -> None:
    pair = Pair(*configs())
    with pytest.raises(LocalProtocolError):
        pair.r.connect(now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.i.check_liveness(now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.i.rekey_child(now=0.0)
    pair.i.connect(now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.i.connect(now=0.0)


def test_config_rejects_bad_values() -> None:
    from lab.errors import ConfigError

    for bad in (
        {"dh_groups": (5,)},
        {"encr_key_bits": (192,)},
        {"transport": "quic"},
        {"fallback": "parallel"},
        {"tcp_ports": (0,)},
        {"udp_ports": (501,)},
        {"udp_timeout_s": 0},
        {"retransmit_tries": 0},
        {"replay_window_packets": 8},
        {"psk": b""},
    ):
        with pytest.raises(ConfigError):
            IkeConfig(**bad)


def test_fallback_event_and_invalid_ke_do_not_confuse_attempts() -> None:
    pair = established(Pair(*configs(r_dh_groups=(DH_CURVE25519,)), blocked_udp_ports={500, 4500}), until=10)
    assert len(pair.of("i", FallbackToTcp)) == 1
    assert pair.of("i", IkeSaEstablished)[0].transport == "tcp"
    assert INVALID_KE_PAYLOAD  # the TCP attempt went through a group retry
    assert any(r.data.get("result") == "INVALID_KE_PAYLOAD" for r in records(pair, "ike", "state_updated", "i"))
    _ = NEXT_HEADER_IPV4
