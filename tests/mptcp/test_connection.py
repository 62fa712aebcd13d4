"""The sans-I/O MPTCP connection: handshakes, joins, data, close, and hostile peers."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from lab.errors import ConfigError, LocalProtocolError
from lab.mptcp import crypto
from lab.mptcp.config import MptcpConfig
from lab.mptcp.events import (
    AddressAnnounced,
    ConnectionEstablished,
    ConnectionTerminated,
    FallbackToTcp,
    StreamEnded,
    SubflowClosed,
    SubflowEstablished,
)
from lab.wire import mptcp as w
from tests.mptcp.pair import PATH_A, PATH_B, MptcpPair, raw_option, rewrite_mptcp

NO_PM = MptcpConfig(path_manager="none", announce=False)


def payload(n: int, seed: int = 3) -> bytes:
    return random.Random(seed).randbytes(n)


def test_mp_capable_exchanges_keys_and_both_ends_derive_the_same_tokens_and_idsns() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()
    c, s = pair.client, pair.server
    assert c.established and s.established
    assert c.remote_key == s.local_key and s.remote_key == c.local_key
    assert c.remote_token == crypto.key_token(s.local_key) == s.local_token
    assert s.remote_idsn == crypto.key_idsn(c.local_key)
    assert pair.of("client", ConnectionEstablished) and pair.of("server", ConnectionEstablished)
    assert pair.of("client", SubflowEstablished) == [SubflowEstablished(addr=PATH_A, address_id=0)]
    # the forms the RFC gives each segment: 4-byte SYN, 12-byte SYN/ACK, 20-byte third ACK
    sent = [r.data["mptcp"][0] for r in pair.records("client", "segment_sent")]
    assert sent[0] == {"subtype": "MP_CAPABLE", "version": 1, "flags": 0x01, "sender_key": None}
    assert sent[1]["subtype"] == "MP_CAPABLE" and sent[1]["receiver_key"] == f"{s.local_key:016x}"
    keys = pair.records("client", "key_updated")[-1].data
    assert keys["local_token"] == c.local_token and keys["remote_key"] == f"{s.local_key:016x}"


def test_data_both_ways_over_two_subflows_and_a_clean_close() -> None:
    cfg = MptcpConfig(path_manager="none", announce=False, scheduler="round_robin")
    pair = MptcpPair(cfg, NO_PM)
    pair.handshake()
    pair.client.open_subflow(PATH_B, now=0.01)
    now = pair.run(now=0.01, until=0.1)
    assert [e.addr for e in pair.of("client", SubflowEstablished)] == [PATH_A, PATH_B]
    up, down = payload(300_000, 1), payload(200_000, 2)
    pair.client.send(up)
    pair.server.send(down)
    pair.client.close(now=now)
    pair.server.close(now=now)
    now = pair.run(now=now, until=5.0)
    assert bytes(pair.received["server"]) == up
    assert bytes(pair.received["client"]) == down
    assert all(sf.bytes_scheduled > 50_000 for sf in pair.client.subflows) or any(
        r.data.get("to") == "CLOSED" and r.data["bytes_sent"] > 50_000 for r in pair.records("client", "state_updated")
    )
    assert pair.of("client", StreamEnded) and pair.of("server", StreamEnded)
    assert pair.client._fin_acked and pair.server._fin_acked
    now = pair.run(now=now, until=200.0, step=5.0)  # past TIME-WAIT
    for who in ("client", "server"):
        terminated = pair.of(who, ConnectionTerminated)
        assert terminated == [ConnectionTerminated(reason="closed", reset=False)], who


def test_a_lost_third_ack_of_mp_join_is_sent_again() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()
    dropped = []

    def drop_join_ack(direction, addr, seg):
        if direction == "c2s" and addr == PATH_B and not dropped:
            opt = [o for o in _mptcp_options(seg, addr)]
            if opt and isinstance(opt[0], w.MpJoinAck):
                dropped.append(seg)
                return None
        return seg

    pair.tamper = drop_join_ack
    pair.client.open_subflow(PATH_B, now=0.0)
    pair.run(now=0.0, until=3.0)
    assert dropped
    assert [e.addr for e in pair.of("client", SubflowEstablished)] == [PATH_A, PATH_B]
    assert len([e for e in pair.of("server", SubflowEstablished)]) == 2


def _mptcp_options(seg: bytes, addr) -> list:
    from lab.wire.checksum import pack_address
    from lab.wire.tcp import UnknownOption, decode_segment

    s = decode_segment(seg, pack_address(addr.local_addr), pack_address(addr.remote_addr))
    return [
        w.from_tcp_option(o, syn=bool(s.flags & 0x02), ack=bool(s.flags & 0x10))
        for o in s.options
        if isinstance(o, UnknownOption) and o.kind == w.MPTCP_KIND
    ]


def test_an_mp_join_syn_ack_with_a_wrong_hmac_resets_that_subflow_and_the_connection_lives_on() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()

    def forge(direction, addr, seg):
        if direction == "s2c" and addr == PATH_B.reversed():
            return rewrite_mptcp(
                seg,
                addr,
                lambda o: replace(o, truncated_hmac=bytes(8)) if isinstance(o, w.MpJoinSynAck) else o,
            )
        return seg

    pair.tamper = forge
    pair.client.open_subflow(PATH_B, now=0.0)
    now = pair.run(now=0.0, until=1.0)
    errors = [r.data["reason"] for r in pair.records("client", "error")]
    assert "MP_JOIN SYN/ACK with a wrong HMAC" in errors
    assert [e.addr for e in pair.of("client", SubflowClosed)] == [PATH_B]
    pair.tamper = None
    data = payload(100_000)
    pair.client.send(data)
    pair.run(now=now, until=3.0)
    assert bytes(pair.received["server"]) == data


def test_an_mp_join_third_ack_with_a_wrong_hmac_is_refused_by_the_server() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()

    def forge(direction, addr, seg):
        if direction == "c2s" and addr == PATH_B:
            return rewrite_mptcp(seg, addr, lambda o: replace(o, hmac=bytes(20)) if isinstance(o, w.MpJoinAck) else o)
        return seg

    pair.tamper = forge
    pair.client.open_subflow(PATH_B, now=0.0)
    pair.run(now=0.0, until=1.0)
    assert "MP_JOIN third ACK with a wrong HMAC" in [r.data["reason"] for r in pair.records("server", "error")]
    assert len(pair.of("server", SubflowEstablished)) == 1  # only the initial subflow
    assert PATH_B.reversed() not in [sf.addr for sf in pair.server.subflows]


def test_an_mp_join_for_an_unknown_token_is_not_accepted() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()

    def wrong_token(direction, addr, seg):
        if direction == "c2s" and addr == PATH_B:
            return rewrite_mptcp(
                seg, addr, lambda o: replace(o, token=o.token ^ 1) if isinstance(o, w.MpJoinSyn) else o
            )
        return seg

    pair.tamper = wrong_token
    pair.client.open_subflow(PATH_B, now=0.0)
    pair.exchange(now=0.0)
    assert pair.join_refused == [PATH_B.reversed()]


def test_add_addr_is_verified_echoed_and_a_forged_hmac_is_ignored() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="none"), MptcpConfig(path_manager="fullmesh"))
    pair.handshake()
    pair.run(now=0.0, until=0.5)
    announced = pair.of("client", AddressAnnounced)
    assert announced == [AddressAnnounced(address_id=1, address="10.0.4.2", port=None)]
    assert pair.client.remote_addresses == [("10.0.4.2", 5001)]
    assert pair.server._announce == []  # the echo arrived: no more retransmissions
    # a second connection whose ADD_ADDR HMAC is forged
    bad = MptcpPair(MptcpConfig(path_manager="none"), MptcpConfig(path_manager="fullmesh"))

    def forge(direction, addr, seg):
        if direction == "s2c":
            return rewrite_mptcp(
                seg,
                addr,
                lambda o: replace(o, truncated_hmac=bytes(8)) if isinstance(o, w.AddAddr) and not o.echo else o,
            )
        return seg

    bad.tamper = forge
    bad.handshake()
    bad.run(now=0.0, until=0.5)
    assert bad.of("client", AddressAnnounced) == []
    assert any("wrong HMAC" in r.data["reason"] for r in bad.records("client", "error"))


def test_full_mesh_client_opens_subflows_to_announced_addresses() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="fullmesh"), MptcpConfig(path_manager="fullmesh"))
    pair.handshake()
    pair.run(now=0.0, until=1.0)
    pairs = {(e.addr.local_addr, e.addr.remote_addr) for e in pair.of("client", SubflowEstablished)}
    assert pairs == {(a, b) for a in ("10.0.1.1", "10.0.3.1") for b in ("10.0.2.2", "10.0.4.2")}


def test_a_malformed_dss_is_recorded_and_dropped_and_the_data_still_arrives() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()
    mangled = []

    def mangle(direction, addr, seg):
        if direction == "c2s" and len(mangled) < 1 and len(seg) > 100:
            mangled.append(1)
            return raw_option(seg, addr, bytes([w.DSS << 4, 0x05, 1, 2, 3]))  # M and A flags, 3 bytes of body
        return seg

    pair.tamper = mangle
    data = payload(50_000)
    pair.client.send(data)
    pair.run(now=0.0, until=3.0)
    assert mangled
    assert any("bad MPTCP option" in r.data["reason"] for r in pair.records("server", "segment_dropped"))
    assert bytes(pair.received["server"]) == data


def test_a_mapping_far_outside_the_window_is_refused_and_accepted_data_is_kept() -> None:
    pair = MptcpPair(NO_PM, MptcpConfig(path_manager="none", announce=False, receive_buffer_bytes=65536))
    pair.handshake()
    first = payload(20_000, 5)
    pair.client.send(first)
    now = pair.run(now=0.0, until=1.0)
    assert bytes(pair.received["server"]) == first

    def far(direction, addr, seg):
        if direction == "c2s" and len(seg) > 100:
            return rewrite_mptcp(
                seg,
                addr,
                lambda o: (
                    replace(o, data_seq=(o.data_seq + (1 << 40)) % (1 << 64))
                    if isinstance(o, w.Dss) and o.data_seq is not None
                    else o
                ),
            )
        return seg

    pair.tamper = far
    pair.client.send(payload(10_000, 6))
    pair.run(now=now, until=now + 2.0)
    reasons = [r.data["reason"] for r in pair.records("server", "segment_dropped")]
    assert "mapping outside the receive window" in reasons
    assert bytes(pair.received["server"]) == first  # nothing beyond what was accepted, nothing corrupted


def test_dss_checksum_failure_on_the_only_subflow_delivers_nothing_corrupted() -> None:
    cfg = MptcpConfig(path_manager="none", announce=False, checksum=True)
    pair = MptcpPair(cfg, cfg)
    pair.handshake()
    assert pair.client.checksum and pair.server.checksum
    flipped = []

    def flip(direction, addr, seg):
        if direction == "c2s" and len(seg) > 1000 and not flipped:
            flipped.append(1)
            b = bytearray(seg)
            b[-10] ^= 0xFF
            from lab.wire.checksum import pack_address
            from lab.wire.tcp import decode_segment, encode_segment

            src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
            s = decode_segment(seg, src, dst)
            return encode_segment(replace(s, payload=bytes(b[len(seg) - len(s.payload) :])), src, dst)
        return seg

    pair.tamper = flip
    data = payload(30_000)
    pair.client.send(data)
    pair.run(now=0.0, until=2.0)
    got = bytes(pair.received["server"])
    # MP_FAIL, then the client's infinite mapping over the data sent again (tests/mptcp/test_mpfail.py)
    assert got == data  # the corrupted mapping never reached the application
    assert "DSS checksum failed" in [r.data["reason"] for r in pair.records("server", "error")]
    assert pair.of("server", FallbackToTcp) == [FallbackToTcp(reason="checksum failure: MP_FAIL then infinite mapping")]
    assert not pair.of("server", ConnectionTerminated)


def test_a_server_without_mptcp_answer_makes_the_client_fall_back() -> None:
    pair = MptcpPair(NO_PM, NO_PM)

    def strip(direction, addr, seg):
        return rewrite_mptcp(seg, addr, lambda o: None)

    pair.tamper = strip
    pair.handshake()
    assert pair.of("client", FallbackToTcp) == [FallbackToTcp(reason="no MP_CAPABLE in the SYN/ACK")]
    assert pair.of("server", FallbackToTcp) == [FallbackToTcp(reason="no MP_CAPABLE in the SYN")]
    data = payload(100_000)
    pair.client.send(data)
    pair.client.close(now=0.0)
    pair.run(now=0.0, until=3.0)
    assert bytes(pair.received["server"]) == data
    assert pair.of("server", StreamEnded)


def test_version_0_uses_sha1_keys_in_the_syn() -> None:
    cfg = MptcpConfig(version=0, path_manager="none", announce=False)
    pair = MptcpPair(cfg, cfg)
    pair.handshake()
    c, s = pair.client, pair.server
    assert c.established and s.established
    assert c.remote_token == crypto.key_token(s.local_key, version=0)
    syn = pair.records("client", "segment_sent")[0].data["mptcp"][0]
    assert syn["version"] == 0 and syn["sender_key"] == f"{c.local_key:016x}"
    data = payload(40_000)
    pair.client.send(data)
    pair.client.close(now=0.0)
    pair.run(now=0.0, until=3.0)
    assert bytes(pair.received["server"]) == data


def test_commands_in_the_wrong_state_raise_and_change_nothing() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    with pytest.raises(LocalProtocolError):
        pair.client.open_subflow(PATH_B, now=0.0)
    pair.handshake()
    with pytest.raises(LocalProtocolError):
        pair.client.connect(PATH_A, now=0.0)
    pair.client.close(now=0.0)
    with pytest.raises(LocalProtocolError):
        pair.client.send(b"late")


@pytest.mark.parametrize(
    "kw",
    [
        {"version": 2},
        {"scheduler": "fastest"},
        {"path_manager": "star"},
        {"congestion": "bbr"},
        {"max_subflows": 0},
        {"mapping_bytes": 70000},
        {"receive_buffer_bytes": 10},
    ],
)
def test_bad_configuration_is_refused_with_a_clear_message(kw: dict) -> None:
    with pytest.raises(ConfigError):
        MptcpConfig(**kw)


def test_set_backup_sends_mp_prio_and_the_peer_records_it() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()
    pair.client.open_subflow(PATH_B, now=0.0)
    now = pair.run(now=0.0, until=0.5)
    pair.client.set_backup(PATH_B.local_addr, True, now=now)
    pair.run(now=now, until=now + 0.5)
    sent = [o for r in pair.records("client", "segment_sent") for o in r.data["mptcp"]]
    assert {"subtype": "MP_PRIO", "backup": True, "address_id": None, "reserved": 0} in sent
    assert [sf.peer_backup for sf in pair.server.subflows if sf.addr == PATH_B.reversed()] == [True]


def test_a_peers_mp_tcprst_reason_closes_the_subflow_with_that_reason() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()

    def forge(direction, addr, seg):
        if direction == "s2c" and addr == PATH_B.reversed():
            return rewrite_mptcp(
                seg,
                addr,
                lambda o: replace(o, truncated_hmac=bytes(8)) if isinstance(o, w.MpJoinSynAck) else o,
            )
        return seg

    pair.tamper = forge
    pair.client.open_subflow(PATH_B, now=0.0)
    pair.run(now=0.0, until=1.0)
    # the client resets the join with MP_TCPRST; the server reads the reason off the RST
    (closed,) = [e for e in pair.of("server", SubflowClosed) if e.addr == PATH_B.reversed()]
    assert closed.reason == "MP_TCPRST from peer: MPTCP-specific error", closed.reason
    received = [r.data for r in pair.records("server", "segment_received") if r.data.get("flags") == "R"]
    assert received and any(o["subtype"] == "MP_TCPRST" for o in received[0]["mptcp"]), received


def test_mp_fastclose_on_a_rst_ends_the_peers_connection_and_is_recorded() -> None:
    pair = MptcpPair(NO_PM, NO_PM)
    pair.handshake()
    pair.client.open_subflow(PATH_B, now=0.0)
    now = pair.run(now=0.0, until=1.0)
    assert len(pair.server.subflows) == 2
    pair.client.abort("the application gave up", now=now)
    pair.run(now=now, until=now + 1.0)
    assert [r.data for r in pair.records("server", "state_updated") if r.data.get("fastclose")]
    (ended,) = pair.of("server", ConnectionTerminated)
    assert ended.reset
    reasons = {e.reason for e in pair.of("server", SubflowClosed)}
    assert reasons == {"MP_FASTCLOSE from peer"}, reasons
