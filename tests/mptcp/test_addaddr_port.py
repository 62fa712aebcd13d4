"""ADD_ADDR with a port (RFC 8684 §3.4.1): codec and HMAC against Linux, the endpoints, the simulator.

The HMAC of an ADD_ADDR covers Address ID, address and port; the receiver opens
its MP_JOIN to the announced port and echoes the option with the port; a host
listening with ``MptcpConfig(announce_port=P)`` accepts MP_JOINs on P.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.mptcp import crypto
from lab.mptcp.config import MptcpConfig
from lab.mptcp.events import AddressAnnounced, SubflowEstablished
from lab.scenario import Scenario, run_scenario
from lab.scenario.mptcp import MptcpTransfer
from lab.tcp.addresses import FourTuple
from lab.trace import MemoryTracer
from lab.wire import mptcp as w
from lab.wire.checksum import pack_address
from lab.wire.tcp import UnknownOption, decode_segment
from tests.mptcp.pair import PATH_A, MptcpPair, rewrite_mptcp
from tests.mptcp.test_captures import load

CAPTURE = Path(__file__).parent / "captures" / "mptcp_v1_addaddr_port.pcap"
TSHARK = shutil.which("tshark")
PORT = 10100


def _hmac_by_hand(sender_key: int, receiver_key: int, address_id: int, address: str, port: int) -> bytes:
    """RFC 8684 §3.4.1 spelled out with hashlib: HMAC-SHA256(Key_sender ‖ Key_receiver, ID ‖ address ‖ port),
    rightmost 64 bits."""
    key = struct.pack("!QQ", sender_key, receiver_key)
    message = bytes((address_id,)) + pack_address(address) + struct.pack("!H", port)
    return hmac.new(key, message, hashlib.sha256).digest()[-8:]


# --- the Linux capture --------------------------------------------------------------------------


def _tshark_fields(path: Path) -> list[dict[str, str]]:
    fields = [
        "frame.number",
        "tcp.options.mptcp.subtype",
        "tcp.options.mptcp.sendkey",
        "tcp.options.mptcp.recvkey",
        "tcp.options.mptcp.addrid",
        "tcp.options.mptcp.ipv4",
        "tcp.options.mptcp.port",
        "tcp.options.mptcp.addaddrtrunchmac",
        "tcp.options.mptcp.echo",
        "tcp.dstport",
    ]
    cmd = [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_linux_add_addr_with_port_verifies_with_the_keys_tshark_reads_from_mp_capable() -> None:
    rows = _tshark_fields(CAPTURE)
    # the keys, as tshark (an independent decoder) reads them from the MP_CAPABLE third ACK
    third_ack = next(r for r in rows if r["tcp.options.mptcp.subtype"] == "0" and r["tcp.options.mptcp.recvkey"])
    client_key = int(third_ack["tcp.options.mptcp.sendkey"])
    server_key = int(third_ack["tcp.options.mptcp.recvkey"])
    adds = [r for r in rows if r["tcp.options.mptcp.subtype"] == "3"]
    announce = next(r for r in adds if r["tcp.options.mptcp.echo"] == "0")
    echo = next(r for r in adds if r["tcp.options.mptcp.echo"] == "1")
    assert int(announce["tcp.options.mptcp.port"]) == int(echo["tcp.options.mptcp.port"]) == PORT
    # our codec on the same frames (by number), bytes re-encoded exactly
    frames = {f.number: f for f in load(CAPTURE.name).frames}
    ours = {}
    for row in (announce, echo):
        frame = frames[int(row["frame.number"])]
        (raw, opt), *_ = [(r, o) for r, o in frame.mptcp if isinstance(o, w.AddAddr)]
        assert w.to_tcp_option(opt) == raw
        assert (opt.address_id, opt.address, opt.port) == (
            int(row["tcp.options.mptcp.addrid"]),
            row["tcp.options.mptcp.ipv4"],
            PORT,
        )
        ours[row["tcp.options.mptcp.echo"]] = (raw, opt)
    raw, opt = ours["0"]
    assert len(raw.data) + 2 == 18 and not opt.echo
    assert int.from_bytes(opt.truncated_hmac, "big") == int(announce["tcp.options.mptcp.addaddrtrunchmac"])
    # the server sent it: HMAC keyed with its key first, over ID, address and *port*
    assert crypto.add_addr_hmac(server_key, client_key, opt.address_id, opt.address, opt.port) == opt.truncated_hmac
    assert _hmac_by_hand(server_key, client_key, opt.address_id, opt.address, PORT) == opt.truncated_hmac
    # without the port (or with the keys swapped) it does not verify
    assert crypto.add_addr_hmac(server_key, client_key, opt.address_id, opt.address, None) != opt.truncated_hmac
    assert crypto.add_addr_hmac(client_key, server_key, opt.address_id, opt.address, PORT) != opt.truncated_hmac
    raw_echo, opt_echo = ours["1"]
    assert len(raw_echo.data) + 2 == 10 and opt_echo.echo and opt_echo.truncated_hmac is None
    # and the join went to the announced port
    assert any(r["tcp.options.mptcp.subtype"] == "1" and r["tcp.dstport"] == str(PORT) for r in rows)


def test_our_client_accepts_the_linux_add_addr_echoes_it_with_the_port_and_joins_that_port() -> None:
    """The capture's keys put into a pair; the server's pure ACK replaced by the captured ADD_ADDR bytes."""
    cap = load(CAPTURE.name)
    (frame, captured), *_ = [(f, o) for f, o in cap.options(w.AddAddr) if not o.echo]
    raw = next(r for r, o in frame.mptcp if o is captured)
    pair = MptcpPair(MptcpConfig(path_manager="fullmesh"), MptcpConfig(path_manager="none", announce=False))
    for ep, key in ((pair.client, cap.keys.client), (pair.server, cap.keys.server)):
        ep.local_key, ep.local_token, ep.local_idsn = key, crypto.key_token(key), crypto.key_idsn(key)
    pair.client.local_addresses = ["192.0.2.1", "198.51.100.1"]
    addr = FourTuple("192.0.2.1", 35862, "192.0.2.2", 5001)
    pair.client.connect(addr, now=0.0)
    pair.exchange(now=0.0)
    assert pair.client.remote_key == cap.keys.server
    injected = []

    def swap(direction: str, a: FourTuple, seg: bytes) -> bytes | None:
        if direction == "s2c" and not injected and not decode_segment(seg).payload:
            injected.append(a)
            first = []
            return rewrite_mptcp(seg, a, lambda o: None if first else first.append(o) or raw)
        return seg

    pair.tamper = swap
    pair.client.send(b"hello")  # the server's Data ACK comes back on a pure ACK: that one carries the ADD_ADDR
    pair.run(now=0.0, until=0.5)
    assert injected
    assert pair.of("client", AddressAnnounced) == [AddressAnnounced(address_id=1, address="198.51.100.2", port=PORT)]
    echoes = [
        o
        for r in pair.records("client", "segment_sent")
        for o in r.data["mptcp"]
        if o["subtype"] == "ADD_ADDR" and o["truncated_hmac"] is None
    ]
    assert echoes and echoes[0]["port"] == PORT and echoes[0]["address"] == "198.51.100.2"
    # the echo on the wire is the 10-byte form Linux sent
    echo_opt = w.AddAddr(address_id=1, address="198.51.100.2", port=PORT)
    captured_echo = next(r for f, o in cap.options(w.AddAddr) if o.echo for r, oo in f.mptcp if oo is o)
    assert w.to_tcp_option(echo_opt) == captured_echo
    joins = [r for r in pair.records("client", "state_updated") if r.data.get("initial") is False]
    assert {r.data["subflow"].rsplit(":", 1)[-1] for r in joins} >= {str(PORT)}


# --- our endpoints ------------------------------------------------------------------------------


def test_announce_port_is_checked() -> None:
    for bad in (0, 65536, -1, True, "10100"):
        with pytest.raises(ConfigError, match="announce_port"):
            MptcpConfig(announce_port=bad)
    assert MptcpConfig(announce_port=PORT).announce_port == PORT


def test_server_announces_with_port_hmac_over_the_port_and_the_client_joins_there() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="fullmesh"), MptcpConfig(path_manager="fullmesh", announce_port=PORT))
    sent: list[tuple[FourTuple, bytes]] = []

    def watch(direction: str, a: FourTuple, seg: bytes) -> bytes:
        sent.append((a, seg))
        return seg

    pair.tamper = watch
    pair.handshake()
    pair.run(now=0.0, until=1.0)
    announced = pair.of("client", AddressAnnounced)
    assert announced == [AddressAnnounced(address_id=1, address="10.0.4.2", port=PORT)]
    # on the wire: the 18-byte form, alone on its pure ACK (no room left next to a Data ACK)
    found = []
    for a, seg in sent:
        s = decode_segment(seg)
        opts = [w.from_tcp_option(o) for o in s.options if isinstance(o, UnknownOption) and o.kind == w.MPTCP_KIND]
        for o in opts:
            if isinstance(o, w.AddAddr) and not o.echo:
                found.append((o, opts))
    assert found
    opt, together = found[0]
    assert len(w.push_mptcp_option(opt)) + 2 == 18 and together == [opt]
    assert opt.truncated_hmac == _hmac_by_hand(pair.server.local_key, pair.client.local_key, 1, "10.0.4.2", PORT)
    # the echo carries the port, and the server stops announcing once it arrived
    echoes = [
        o for a, seg in sent for o in _mptcp(seg) if isinstance(o, w.AddAddr) and o.echo and o.address == "10.0.4.2"
    ]
    assert echoes and all(e.port == PORT for e in echoes)
    assert pair.server._announce == []
    # full mesh: both client addresses join 10.0.4.2 on the announced port
    joined = {
        (e.addr.local_addr, e.addr.remote_addr, e.addr.remote_port) for e in pair.of("client", SubflowEstablished)
    }
    assert ("10.0.1.1", "10.0.4.2", PORT) in joined and ("10.0.3.1", "10.0.4.2", PORT) in joined
    assert not any(r == "10.0.4.2" and p != PORT for _l, r, p in joined)
    server_side = {(e.addr.local_addr, e.addr.local_port) for e in pair.of("server", SubflowEstablished)}
    assert ("10.0.4.2", PORT) in server_side


def _mptcp(seg: bytes) -> list[w.MptcpOption]:
    s = decode_segment(seg)
    return [w.from_tcp_option(o) for o in s.options if isinstance(o, UnknownOption) and o.kind == w.MPTCP_KIND]


def test_an_echo_with_another_port_does_not_stop_the_announcement() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="none"), MptcpConfig(path_manager="fullmesh", announce_port=PORT))

    def wrong_port(direction: str, a: FourTuple, seg: bytes) -> bytes:
        if direction == "c2s":
            return rewrite_mptcp(seg, a, lambda o: replace(o, port=PORT + 1) if isinstance(o, w.AddAddr) else o)
        return seg

    pair.tamper = wrong_port
    pair.handshake()
    pair.run(now=0.0, until=0.2)
    assert pair.server._announce, "an echo naming another port is not the echo of this ADD_ADDR"


def test_a_forged_hmac_over_the_port_is_refused() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="fullmesh"), MptcpConfig(path_manager="fullmesh", announce_port=PORT))

    def change_port(direction: str, a: FourTuple, seg: bytes) -> bytes:
        if direction == "s2c":  # a middlebox rewrites the port but cannot fix the HMAC
            return rewrite_mptcp(
                seg, a, lambda o: replace(o, port=PORT + 1) if isinstance(o, w.AddAddr) and not o.echo else o
            )
        return seg

    pair.tamper = change_port
    pair.handshake()
    pair.run(now=0.0, until=1.0)
    assert pair.of("client", AddressAnnounced) == []
    assert any("wrong HMAC" in r.data["reason"] for r in pair.records("client", "error"))
    assert all(e.addr.remote_addr == PATH_A.remote_addr for e in pair.of("client", SubflowEstablished))


# --- the simulator ------------------------------------------------------------------------------


def test_simulated_transfer_joins_the_announced_port_and_is_byte_exact() -> None:
    sc = Scenario(
        name="mptcp-addaddr-port",
        description="h2 announces 10.0.4.2 with port 10100; h1's join goes there.",
        topology="two-paths",
        topology_params={"delay_ms": (10.0, 20.0), "bw_mbps": (10.0, 10.0), "queue_packets": 100},
        transfers=(
            MptcpTransfer(
                size_bytes=3 * 1024 * 1024,
                client={"path_manager": "paired"},
                server={"path_manager": "paired", "announce_port": PORT},
            ),
        ),
        time_limit_s=60.0,
    )
    result = run_scenario(sc, seed=3, pcaps=False)
    assert result.ok, result.transfers[0].to_dict()
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    recs = [r for r in tracer.records if r.layer == "mptcp"]
    carried: dict[str, int] = {}
    for r in recs:
        if r.node == "h1" and (r.name == "metrics_updated" or r.data.get("to") == "CLOSED"):
            carried[r.data["subflow"]] = max(carried.get(r.data["subflow"], 0), r.data["bytes_sent"])
    on_port = {s: n for s, n in carried.items() if s.endswith(f"10.0.4.2:{PORT}")}
    assert on_port and max(on_port.values()) > 256 * 1024, carried
    # h2 accepted that join on its announced port and traced the ADD_ADDR it sent with the port
    sent = [o for r in recs if r.node == "h2" and r.name == "segment_sent" for o in r.data["mptcp"]]
    assert any(o["subtype"] == "ADD_ADDR" and o["port"] == PORT and o["truncated_hmac"] for o in sent)


class _Clock:
    now = 0.0

    def call_at(self, when: float, callback) -> None:
        pass


def test_the_announced_port_takes_mp_join_only() -> None:
    """A host listening with announce_port: a plain SYN (or a join for no connection) to that port gets a RST."""
    from lab.stack.host import HostStack, StreamHandler
    from lab.wire.ip import Ipv4Packet, decode_ip, encode_ipv4
    from lab.wire.tcp import ACK, RST, SYN, TcpSegment, encode_segment

    sent: list[bytes] = []
    host = HostStack("h2", interfaces={"eth0": ["10.0.2.2"]}, transmit=lambda _i, p: sent.append(p), scheduler=_Clock())
    host.listen(5001, StreamHandler, group=MptcpConfig(announce_port=PORT))
    src, dst = pack_address("10.0.1.1"), pack_address("10.0.2.2")

    def syn(dport: int, options: tuple = ()) -> TcpSegment:
        seg = encode_segment(TcpSegment(40000, dport, 1000, 0, SYN, 65535, options=options), src, dst)
        host.input_packet(encode_ipv4(Ipv4Packet("10.0.1.1", "10.0.2.2", 6, seg)))
        return decode_segment(decode_ip(sent.pop()).payload)

    join = w.to_tcp_option(w.MpJoinSyn(address_id=1, token=0x1234, nonce=7))
    for options in ((), (join,)):
        reply = syn(PORT, options)
        assert reply.flags & RST and reply.flags & ACK and reply.src_port == PORT
    assert not host.connections() and not host.groups()
    # the listening port itself still takes a plain SYN (plain TCP for a client without MPTCP)
    reply = syn(5001)
    assert reply.flags & SYN and reply.flags & ACK
