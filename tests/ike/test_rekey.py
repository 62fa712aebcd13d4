"""IKE SA rekeying (RFC 7296 §1.3.2, §2.18), PFS in Child SA rekeys (§1.3.1), and a refused TCP reconnect."""

from __future__ import annotations

import pytest

from lab.ike.config import IkeConfig
from lab.ike.events import (
    ChildSaEstablished,
    IkeSaDeleted,
    IkeSaRekeyed,
    LivenessChecked,
    PacketReceived,
)
from lab.ike.keylog import key_tables
from lab.ike.state import IkeSaState
from lab.wire.ikev2 import ENCR_AES_CBC
from tests.ike.pair import Pair, configs


def established(transport: str = "udp", **overrides: object) -> Pair:
    pair = Pair(*configs(transport=transport, **overrides))
    pair.i.connect(now=0.0)
    pair.run(1.0)
    assert pair.i.sa is not None and pair.i.sa.established
    return pair


def exchange_packets(pair: Pair, tag: bytes) -> tuple[list[bytes], list[bytes]]:
    pair.i.send_packet(b"i->r " + tag, now=pair.now)
    pair.r.send_packet(b"r->i " + tag, now=pair.now)
    pair.run(pair.now + 1)
    return [e.data for e in pair.of("r", PacketReceived)], [e.data for e in pair.of("i", PacketReceived)]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("side", ["i", "r"])
def test_ike_sa_rekey_by_either_end_keeps_the_child_sa(transport: str, side: str) -> None:
    pair = established(transport)
    old_i, old_r = pair.i.sas()[0], pair.r.sas()[0]
    child_spis = (old_i.child.spi_in, old_r.child.spi_in)
    getattr(pair, side).rekey_ike(now=pair.now)
    pair.run(pair.now + 1)
    (rekeyed_i,) = pair.of("i", IkeSaRekeyed)
    (rekeyed_r,) = pair.of("r", IkeSaRekeyed)
    assert (rekeyed_i.spi_i, rekeyed_i.spi_r) == (rekeyed_r.spi_i, rekeyed_r.spi_r)
    assert (rekeyed_i.old_spi_i, rekeyed_i.old_spi_r) == (old_i.spi_i, old_i.spi_r)
    assert rekeyed_i.initiated is (side == "i") and rekeyed_r.initiated is (side == "r")
    assert {rekeyed_i.spi_i, rekeyed_i.spi_r}.isdisjoint({old_i.spi_i, old_i.spi_r})
    # the old SA is deleted on both ends; nobody saw an IKE SA go away
    assert old_i.state is IkeSaState.CLOSED and old_r.state is IkeSaState.CLOSED
    assert not pair.of("i", IkeSaDeleted) and not pair.of("r", IkeSaDeleted)
    (new_i,), (new_r,) = pair.i.sas(), pair.r.sas()
    assert new_i.established and new_r.established and new_i.spi_i == rekeyed_i.spi_i
    assert new_i.initiator is (side == "i")  # the rekey initiator is the new SA's original initiator (§2.18)
    assert new_i.keys.sk_d != old_i.keys.sk_d and new_i.keys == new_r.keys
    assert (new_i.child.spi_in, new_r.child.spi_in) == child_spis  # the Child SA moved, unchanged
    to_r, to_i = exchange_packets(pair, b"after the rekey")
    assert to_r == [b"i->r after the rekey"] and to_i == [b"r->i after the rekey"]
    pair.r.check_liveness(now=pair.now)
    pair.run(pair.now + 1)
    assert len(pair.of("r", LivenessChecked)) == 1  # the new SA carries exchanges, message IDs from 0
    pair.i.rekey_child(now=pair.now)  # Child SA rekeys go on the new SA
    pair.run(pair.now + 1)
    assert [e.rekeyed_spi_in for e in pair.of("i", ChildSaEstablished)][-1] == child_spis[0]
    pair.i.close(now=pair.now)
    pair.run(pair.now + 2)
    assert [e.reason for e in pair.of("i", IkeSaDeleted)] == ["closed"]
    assert [e.reason for e in pair.of("r", IkeSaDeleted)] == ["deleted by peer"]


def test_ike_sa_rekey_with_aes_cbc_and_sha2_512() -> None:
    pair = established(encrs=(ENCR_AES_CBC,), i_prfs=(7,), i_integs=(14,))
    assert (pair.i.sa.encr_id, pair.i.sa.integ_id, pair.i.sa.prf_id) == (ENCR_AES_CBC, 14, 7)
    pair.r.rekey_ike(now=pair.now)
    pair.run(pair.now + 1)
    assert len(pair.of("i", IkeSaRekeyed)) == 1
    assert (pair.i.sa.encr_id, pair.i.sa.integ_id, pair.i.sa.prf_id) == (ENCR_AES_CBC, 14, 7)
    to_r, to_i = exchange_packets(pair, b"cbc")
    assert to_r == [b"i->r cbc"] and to_i == [b"r->i cbc"]


def test_keylog_holds_the_rekeyed_ike_sa_and_child_sa() -> None:
    pair = established()
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 1)
    pair.r.rekey_child(now=pair.now)
    pair.run(pair.now + 1)
    tables = key_tables(pair.tracer.records)
    spis = [record.split(",")[:2] for record in tables.ikev2]
    (rekeyed,) = pair.of("i", IkeSaRekeyed)
    assert spis == [[rekeyed.old_spi_i.hex(), rekeyed.old_spi_r.hex()], [rekeyed.spi_i.hex(), rekeyed.spi_r.hex()]]
    assert len(tables.esp) == 4  # two Child SAs, two directions each


def test_simultaneous_ike_sa_rekeys_end_with_one_ike_sa() -> None:
    pair = established()
    pair.i.rekey_ike(now=pair.now)
    pair.r.rekey_ike(now=pair.now)  # both requests cross on the wire (§2.8.2)
    pair.run(pair.now + 10)
    (new_i,), (new_r,) = pair.i.sas(), pair.r.sas()
    assert new_i.established and new_r.established and (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    assert len(pair.of("i", IkeSaRekeyed)) == len(pair.of("r", IkeSaRekeyed)) >= 1
    assert not pair.of("i", IkeSaDeleted) and not pair.of("r", IkeSaDeleted)
    collisions = [
        r for r in pair.tracer.select(layer="ike", name="state_updated") if r.data.get("ike_rekey") == "collision"
    ]
    assert collisions  # the crossing was seen and answered with TEMPORARY_FAILURE
    to_r, to_i = exchange_packets(pair, b"after the collision")
    assert to_r == [b"i->r after the collision"] and to_i == [b"r->i after the collision"]


@pytest.mark.parametrize("pfs", [True, False])
def test_child_sa_rekey_with_and_without_pfs(pfs: bool) -> None:
    pair = established(i_pfs=pfs)
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1)
    (rekeyed,) = [e for e in pair.of("i", ChildSaEstablished) if e.rekeyed_spi_in is not None]
    keys = [r.data for r in pair.tracer.select(layer="esp", name="key_updated") if r.data.get("rekeyed")]
    assert len(keys) == 2 and all(bool(k.get("pfs")) is pfs for k in keys)
    to_r, to_i = exchange_packets(pair, b"new child")
    assert to_r == [b"i->r new child"] and to_i == [b"r->i new child"]
    assert pair.i.sa.child.spi_in == rekeyed.spi_in


def test_child_sa_rekey_pfs_follows_invalid_ke_payload() -> None:
    """The initiator's PFS group is not the responder's: INVALID_KE_PAYLOAD, then the group asked for."""
    pair = established(i_dh_groups=(19, 31), r_dh_groups=(19, 31))
    pair.r.sas()[0].config = IkeConfig(**{**_config_fields(pair.config_r), "dh_groups": (31,)})
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1)
    results = [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("exchange") == "CREATE_CHILD_SA"
    ]
    assert results[0]["result"] == "INVALID_KE_PAYLOAD" and results[0]["dh_group"] == 31
    assert results[-1]["result"] == "ok" and results[-1]["pfs"] is True
    assert len([e for e in pair.of("i", ChildSaEstablished) if e.rekeyed_spi_in is not None]) == 1


def _config_fields(config: IkeConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def test_refused_tcp_reconnect_declares_the_peer_gone_at_once() -> None:
    pair = established("tcp")
    pair.refused_tcp_ports = {4500}  # the responder is gone: its port answers with RST
    pair.i.check_liveness(now=pair.now)
    pair.flush()
    broke_at = pair.now
    pair.break_tcp()
    pair.run(pair.now + 40)
    (gone,) = pair.of("i", IkeSaDeleted)
    assert gone.error and "refused" in gone.reason
    ended = next(
        r.t for r in pair.tracer.select(layer="ike", name="state_updated", node="i") if r.data.get("to") == "FAILED"
    )
    assert ended - broke_at < 0.1  # one RTT for the refused SYN, not the 31.5 s response timeout
    assert pair.config_i.response_timeout_s == pytest.approx(31.5)
    (why,) = [
        r.data for r in pair.tracer.select(layer="iketcp", name="state_updated") if r.data.get("event") == "peer_gone"
    ]
    assert "refused" in why["reason"]


def test_reconnect_that_times_out_is_tried_again_then_the_sa_fails() -> None:
    pair = established("tcp", i_tcp_reconnect_tries=2)
    pair.blocked_tcp_ports = {4500}
    pair.i.check_liveness(now=pair.now)
    pair.flush()
    pair.break_tcp()
    for conn_id in list(pair.i._reconnecting):  # the driver gives up on the connect (no SYN-ACK ever)
        pair.i.tcp_failed(conn_id, "timed out", now=pair.now)
    pair.flush()
    for conn_id in list(pair.i._reconnecting):
        pair.i.tcp_failed(conn_id, "timed out", now=pair.now)
    pair.flush()
    events = [r.data["event"] for r in pair.tracer.select(layer="iketcp", name="state_updated", node="i")]
    assert events.count("reconnecting") == 2 and "reconnect_exhausted" in events
    (gone,) = pair.of("i", IkeSaDeleted)
    assert gone.reason == "TCP connection lost"


def test_closing_right_after_a_rekey_deletes_old_and_new_sa() -> None:
    pair = established()
    pair.i.rekey_ike(now=pair.now)
    pair.flush()
    pair.run(pair.now + 0.015)  # the rekey answered, the old SA's Delete still on its way
    assert pair.r.retiring_sas()
    pair.r.close(now=pair.now)
    pair.run(pair.now + 2)
    assert not [sa for sa in pair.i.sas() + pair.r.sas() if not sa.closed]
    assert [e.reason for e in pair.of("r", IkeSaDeleted)] == ["closed"]
