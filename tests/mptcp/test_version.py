"""MPTCP version negotiation (RFC 8684 §3.1): v1 and v0 (RFC 6824) ends meeting each other.

The SYN offers the client's highest version; a server answers with the offered
version when it speaks it, with its own highest when the offer is higher; a
client continues with a lower version the SYN/ACK names when it speaks it, and
falls back to plain TCP otherwise. A SYN/ACK without MP_CAPABLE makes the
connection plain TCP; a client that also speaks v0 offers v0 to that server on
its next connection (a v0-only server cannot read the key-less v1 SYN).
"""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from lab.errors import ConfigError
from lab.mptcp import crypto
from lab.mptcp.config import MptcpConfig
from lab.mptcp.events import FallbackToTcp, SubflowEstablished
from lab.mptcp.hook import MptcpHook
from lab.scenario import Scenario, run_scenario
from lab.scenario.middlebox import Middlebox
from lab.scenario.mptcp import MptcpBackToBack, MptcpTransfer
from lab.tcp.addresses import FourTuple
from lab.trace import MemoryTracer, Tracer
from lab.wire import mptcp as w
from lab.wire.checksum import transport_checksum
from lab.wire.tcp import ACK, SYN, decode_segment
from tests.mptcp.pair import PATH_A, MptcpPair, rewrite_mptcp

BOTH = (1, 0)


def _pair(client: MptcpConfig, server: MptcpConfig, cache: dict | None = None, seed: int = 1) -> MptcpPair:
    pair = MptcpPair(client, server, seed=seed)
    pair.client._version_cache = {} if cache is None else cache
    return pair


def _mpc_sent(pair: MptcpPair, who: str) -> list[dict]:
    return [o for r in pair.records(who, "segment_sent") for o in r.data["mptcp"] if o["subtype"] == "MP_CAPABLE"]


def _negotiated(pair: MptcpPair, who: str) -> list[dict]:
    return [r.data["version_negotiated"] for r in pair.records(who, "state_updated") if "version_negotiated" in r.data]


def _exchange_data(pair: MptcpPair, now: float = 0.0) -> None:
    up, down = random.Random(5).randbytes(200_000), random.Random(6).randbytes(150_000)
    pair.client.send(up)
    pair.server.send(down)
    now = pair.run(now=now, until=now + 2.0)
    pair.client.close(now=now)
    pair.server.close(now=now)
    pair.run(now=now, until=now + 3.0)
    assert hashlib.sha256(pair.received["server"]).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(pair.received["client"]).digest() == hashlib.sha256(down).digest()


def test_versions_are_checked() -> None:
    assert MptcpConfig().supported_versions == (1,)
    assert MptcpConfig(version=0).supported_versions == (0,)
    assert MptcpConfig(versions=(0, 1)).supported_versions == (1, 0)
    for bad in ({"versions": (2,)}, {"versions": (1, 1)}, {"versions": [1, 0]}, {"version": 0, "versions": (1, 0)}):
        with pytest.raises(ConfigError, match="versions"):
            MptcpConfig(**bad)


def test_both_speak_both_versions_they_use_v1() -> None:
    pair = _pair(MptcpConfig(versions=BOTH, path_manager="none"), MptcpConfig(versions=BOTH, path_manager="none"))
    pair.handshake()
    assert pair.client.version == pair.server.version == 1 and pair.client.fallback is None
    assert _mpc_sent(pair, "client")[0] == {"subtype": "MP_CAPABLE", "version": 1, "flags": 1, "sender_key": None}
    assert _negotiated(pair, "server") == [
        {"offered": 1, "chosen": 1, "supported": [1, 0], "why": "we speak the offered version"}
    ]
    assert pair.client.local_token == crypto.key_token(pair.client.local_key, version=1)
    assert pair.client._version_cache == {}
    _exchange_data(pair)


def test_v1_client_continues_in_v0_when_the_server_answers_v0() -> None:
    pair = _pair(MptcpConfig(versions=BOTH), MptcpConfig(version=0))
    pair.handshake()
    c, s = pair.client, pair.server
    assert c.version == s.version == 0 and c.fallback is None and s.fallback is None and s.established
    client_mpc, server_mpc = _mpc_sent(pair, "client"), _mpc_sent(pair, "server")
    assert client_mpc[0]["version"] == 1 and client_mpc[0]["sender_key"] is None  # the 4-byte v1 SYN
    assert server_mpc[0]["version"] == 0 and server_mpc[0]["sender_key"] == f"{s.local_key:016x}"  # v0 SYN/ACK
    assert client_mpc[1]["version"] == 0 and client_mpc[1]["receiver_key"] == f"{s.local_key:016x}"  # v0 ACK
    # v0 derives tokens and IDSNs with SHA-1, on both ends alike
    sha1 = hashlib.sha1(struct.pack("!Q", c.local_key)).digest()
    assert c.local_token == int.from_bytes(sha1[:4], "big") == s.remote_token
    assert s.remote_idsn == int.from_bytes(sha1[-8:], "big") == c.local_idsn
    assert c.remote_token == crypto.key_token(s.local_key, version=0) == s.local_token
    assert _negotiated(pair, "client") == [
        {"offered": 1, "chosen": 0, "supported": [1, 0], "why": "the SYN/ACK answered with v0"}
    ]
    assert _negotiated(pair, "server") == [
        {"offered": 1, "chosen": 0, "supported": [0], "why": "the offer is higher than we speak"}
    ]
    keys = pair.records("client", "key_updated")[-1].data
    assert keys["version"] == 0 and keys["local_token"] == c.local_token
    assert c._version_cache == {PATH_A.remote_addr: 0}
    # v0 ADD_ADDR (no HMAC) and v0 joins (HMAC-SHA1) work too, and data goes both ways byte-exact
    pair.run(now=0.0, until=0.5)
    joined = {(e.addr.local_addr, e.addr.remote_addr) for e in pair.of("client", SubflowEstablished)}
    assert ("10.0.3.1", "10.0.4.2") in joined and len(joined) == 4, joined
    assert any(o["subtype"] == "ADD_ADDR" for r in pair.records("server", "segment_sent") for o in r.data["mptcp"])
    _exchange_data(pair, 0.5)


def test_a_v1_only_client_falls_back_to_tcp_against_a_v0_server() -> None:
    pair = _pair(MptcpConfig(path_manager="none"), MptcpConfig(version=0, path_manager="none"))
    pair.handshake()
    assert pair.of("client", FallbackToTcp) == [FallbackToTcp(reason="SYN/ACK MP_CAPABLE version 0")]
    _exchange_data(pair)
    assert pair.server.fallback == "the client's keys never arrived (third ACK without MP_CAPABLE)"
    assert pair.client._version_cache == {}


def test_a_v0_client_and_a_v1_only_server_use_plain_tcp() -> None:
    pair = _pair(MptcpConfig(version=0, path_manager="none"), MptcpConfig(path_manager="none"))
    pair.handshake()
    assert pair.server.fallback == "peer offers MPTCP v0 only"
    assert pair.client.fallback == "no MP_CAPABLE in the SYN/ACK"
    assert _mpc_sent(pair, "client")[0]["sender_key"] == f"{pair.client.local_key:016x}"  # the 12-byte v0 SYN
    _exchange_data(pair)


def test_a_v0_client_and_a_server_of_both_versions_use_v0() -> None:
    pair = _pair(MptcpConfig(version=0, path_manager="none"), MptcpConfig(versions=BOTH, path_manager="none"))
    pair.handshake()
    assert pair.client.version == pair.server.version == 0 and pair.server.fallback is None
    assert pair.server.remote_key == pair.client.local_key  # from the v0 SYN
    assert pair.server.local_token == crypto.key_token(pair.server.local_key, version=0)
    assert _negotiated(pair, "server")[0]["chosen"] == 0
    _exchange_data(pair)


def _strict_v0(direction: str, addr: FourTuple, seg: bytes) -> bytes:
    """A v0-only server that cannot read the key-less v1 SYN answers without MP_CAPABLE."""
    if direction == "s2c" and decode_segment(seg).flags & SYN:
        return rewrite_mptcp(seg, addr, lambda o: None if isinstance(o, w.MpCapableSynAck) and o.version else o)
    if direction == "c2s" and decode_segment(seg).flags & SYN:
        return rewrite_mptcp(seg, addr, lambda o: None if isinstance(o, w.MpCapableSyn) and o.version else o)
    return seg


def test_no_mp_capable_in_the_syn_ack_makes_the_next_connection_offer_v0() -> None:
    cache: dict = {}
    first = _pair(MptcpConfig(versions=BOTH, path_manager="none"), MptcpConfig(version=0), cache)
    first.tamper = _strict_v0
    first.handshake()
    assert first.client.fallback == "no MP_CAPABLE in the SYN/ACK"  # this connection stays plain TCP
    assert _negotiated(first, "client")[0]["chosen"] is None
    assert "next connection offers v0" in _negotiated(first, "client")[0]["why"]
    _exchange_data(first)
    assert cache == {PATH_A.remote_addr: 0}
    # a new connection to the same server: a 12-byte v0 SYN with our key, and MPTCP v0
    second = _pair(MptcpConfig(versions=BOTH, path_manager="none"), MptcpConfig(version=0), cache, seed=7)
    second.tamper = _strict_v0
    second.handshake()
    syn = _mpc_sent(second, "client")[0]
    assert syn["version"] == 0 and syn["sender_key"] == f"{second.client.local_key:016x}"
    assert second.client.version == second.server.version == 0 and second.client.fallback is None
    assert _negotiated(second, "client")[0]["why"].startswith("remembered for this server")
    _exchange_data(second)
    # a server that takes neither version: the v0 attempt fails as well, and the cache forgets
    third = _pair(MptcpConfig(versions=BOTH, path_manager="none"), MptcpConfig(version=0), cache, seed=9)
    third.tamper = lambda d, a, seg: rewrite_mptcp(seg, a, lambda o: None) if d == "s2c" else seg
    third.handshake()
    assert third.client.fallback == "no MP_CAPABLE in the SYN/ACK" and cache == {}


# --- in the simulator -----------------------------------------------------------------------------


class StripV1MpCapableSyn(Middlebox):
    """Blanks (NOPs) a 4-byte MP_CAPABLE in a SYN: what a v0-only server makes of the key-less
    v1 SYN (it cannot read it and answers as plain TCP). A 12-byte v0 SYN passes."""

    name = "strip_v1_mp_capable_syn"

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        if packet[0] >> 4 != 4 or packet[9] != 6:
            return packet
        hl = (packet[0] & 0x0F) * 4
        seg = bytearray(packet[hl:])
        if seg[13] & (SYN | ACK) != SYN:
            return packet
        i, end = 20, (seg[12] >> 4) * 4
        while i < end:
            kind = seg[i]
            if kind in (0, 1):
                i += 1
                continue
            length = seg[i + 1]
            if kind == w.MPTCP_KIND and length == 4:
                seg[i : i + 4] = b"\x01" * 4
                seg[16:18] = b"\x00\x00"
                seg[16:18] = transport_checksum(packet[12:16], packet[16:20], 6, bytes(seg)).to_bytes(2, "big")
                self._record(tracer, now, "segment_sent", {"action": "rewritten", "what": "v1 MP_CAPABLE blanked"})
                return packet[:hl] + bytes(seg)
            i += max(length, 2)
        return packet


def _records(result) -> list:
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    return [r for r in tracer.records if r.layer == "mptcp"]


@pytest.mark.parametrize(
    ("client", "server", "version", "offered"),
    [
        ({"versions": BOTH}, {"version": 0}, 0, 1),  # v1 client, v0 server: the SYN/ACK says v0
        ({"version": 0}, {"versions": BOTH}, 0, 0),  # v0 client, a server of both
        ({"versions": BOTH}, {"versions": BOTH}, 1, 1),  # both of both: v1
        ({"version": 0}, {}, None, 0),  # v0 client, v1-only server: plain TCP
        ({}, {"version": 0}, None, 1),  # v1-only client, v0 server: plain TCP
    ],
    ids=["v1-to-v0", "v0-to-both", "both-to-both", "v0-to-v1only", "v1only-to-v0"],
)
def test_simulated_versions_meet(client: dict, server: dict, version: int | None, offered: int) -> None:
    sc = Scenario(
        name="mptcp-versions",
        description="Two MPTCP ends of given versions on two-paths.",
        topology="two-paths",
        transfers=(
            MptcpTransfer(
                size_bytes=2 * 1024 * 1024,
                client={**client, "path_manager": "paired"},
                server={**server, "path_manager": "paired"},
            ),
        ),
        time_limit_s=60.0,
    )
    result = run_scenario(sc, seed=2, pcaps=False)
    assert result.ok, result.transfers[0].to_dict()  # byte-exact (SHA-256) whatever was agreed
    recs = _records(result)
    syn = next(
        o
        for r in recs
        if r.node == "h1" and r.name == "segment_sent"
        for o in r.data["mptcp"]
        if o["subtype"] == "MP_CAPABLE"
    )
    assert syn["version"] == offered and (syn["sender_key"] is None) == (offered == 1)
    fallbacks = {r.node: r.data["fallback"] for r in recs if "fallback" in r.data}
    if version is None:
        assert set(fallbacks) == {"h1", "h2"}, fallbacks
        return
    assert fallbacks == {}
    keys = {r.node: r.data for r in recs if r.name == "key_updated" and r.data["remote_key"]}
    assert keys["h1"]["version"] == keys["h2"]["version"] == version
    assert keys["h1"]["remote_token"] == keys["h2"]["local_token"]
    assert keys["h1"]["local_token"] == crypto.key_token(int(keys["h1"]["local_key"], 16), version=version)
    joined = {r.data["subflow"] for r in recs if r.node == "h1" and r.data.get("to") == "ESTABLISHED"}
    assert len(joined) == 2, joined
    chosen = [r.data["version_negotiated"] for r in recs if r.node == "h2" and "version_negotiated" in r.data]
    assert [c["chosen"] for c in chosen] == [version]


def test_simulated_strict_v0_server_first_plain_tcp_then_v0_on_the_next_connection() -> None:
    size = 1024 * 1024
    sc = Scenario(
        name="mptcp-v0-retry",
        description="r1 blanks v1 MP_CAPABLE SYNs (a v0-only server); h1's next connection offers v0.",
        topology="two-paths",
        middleboxes=(("r1", StripV1MpCapableSyn),),
        transfers=(
            MptcpBackToBack(
                transfers=tuple(
                    MptcpTransfer(
                        name=f"attempt-{i}",
                        size_bytes=size,
                        port=5001 + i,
                        client={"versions": BOTH, "path_manager": "paired"},
                        server={"version": 0, "path_manager": "paired"},
                    )
                    for i in range(2)
                ),
                gap_s=0.2,
            ),
        ),
        time_limit_s=60.0,
    )
    result = run_scenario(sc, seed=4, pcaps=False)
    assert result.ok, [t.to_dict() for t in result.transfers]
    recs = [r for r in _records(result) if r.node == "h1"]
    fallbacks = [r.data["fallback"] for r in recs if "fallback" in r.data]
    assert fallbacks == ["no MP_CAPABLE in the SYN/ACK"]  # the first connection only
    chosen = [r.data["version_negotiated"] for r in recs if "version_negotiated" in r.data]
    assert [c["chosen"] for c in chosen] == [None, 0]
    syns = [
        o
        for r in recs
        if r.name == "segment_sent"
        for o in r.data["mptcp"]
        if o["subtype"] == "MP_CAPABLE" and "receiver_key" not in o and "data_level_length" not in o
    ]
    assert [o["version"] for o in syns] == [1, 0]
    keys = [r.data for r in recs if r.name == "key_updated" and r.data["remote_key"]]
    assert keys and keys[-1]["version"] == 0
    joined = {r.data["subflow"] for r in recs if r.data.get("to") == "ESTABLISHED"}
    assert any(":5002" in s and "10.0.3.1" in s for s in joined), joined  # the v0 connection joined path B
    assert result.network.host("h1").hook(MptcpHook).versions == {"10.0.2.2": 0}
