"""The IKE scenarios on Mininet: real packets through real routers, as root.

* ``hotspot``: all UDP is dropped at r1 (an NFQUEUE forwarder running the
  simulator's policy); the initiator retransmits IKE_SA_INIT over UDP 500,
  gives UDP up after ``udp_timeout_s`` and falls back to RFC 9329 TCP; the
  tunnelled stream arrives byte-exact. The captures show the UDP attempts
  stopping at the router and the ``IKETCP`` prefix on the TCP stream.
* ``nat``: r1 source-NATs h1 (nftables ``snat``): h2 sees only the router's
  address, both ends' NAT detection notifies report the NAT, ESP runs
  UDP-encapsulated through it.
* The run bundles' keys (``lab.ike.keylog``) let tshark decrypt IKE_AUTH and
  ESP in the real captures (``lab.ike.pcap`` turning RFC 9329 frames into
  UDP 4500 for it); the decrypted inner chunks put back together are the
  bytes the initiator sent.
* A :class:`lab.bench.ike.TunnelledBulk` (the ``mininet-esp-tcp-vs-udp``
  workload) on a lossy shaped path: an inner TCP stream through ESP in UDP
  and through ESP in TCP, byte-exact.

Each run checks that namespaces, links, the nft ruleset and its processes are as before.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.bench.ike import INNER_MSS, INNER_TCP_PORT, TunnelledBulk
from lab.ike.keylog import key_tables
from lab.ike.keylog import main as keylog_main
from lab.ike.pcap import iketcp_to_udp
from lab.ike.tunnel import INNER_PORT, TUNNEL_INITIATOR, TUNNEL_RESPONDER
from lab.mininet.run import MininetRunResult, run_mininet_scenario
from lab.pcap import read_pcap_linktype
from lab.scenario import Scenario
from lab.trace import TraceRecord, read_jsonl
from lab.wire.ip import decode_ipv4
from lab.wire.tcp import SYN, TCP_PROTOCOL, decode_segment
from lab.wire.udp import UDP_PROTOCOL, decode_datagram
from tests.mininet.test_endpoint import _leftovers, system_state
from topologies.ike_scenarios import SCENARIOS

H1, H2, ROUTER_OUTSIDE = "10.0.1.1", "10.0.2.2", "10.0.2.1"
ETHERTYPE_IPV4 = b"\x08\x00"


class Bundle:
    """One Mininet run of a scenario, its bundle and its trace."""

    def __init__(self, result: MininetRunResult, out: Path) -> None:
        self.result = result
        self.out = out
        self.records = list(read_jsonl(out / "trace.jsonl"))

    def ike(self, node: str, name: str, layer: str = "ike") -> list[TraceRecord]:
        return [r for r in self.records if r.node == node and r.layer == layer and r.name == name]

    def pcap(self, interface: str) -> Path:
        return self.out / "pcaps" / f"{interface}.pcap"


def _run(scenario: Scenario, out: Path) -> Bundle:
    before = system_state()
    try:
        result = run_mininet_scenario(scenario, seed=1, out_dir=out)
    finally:
        assert_nothing_left(before)
    return Bundle(result, out)


def assert_nothing_left(before: dict[str, Any], *, timeout: float = 10.0) -> None:
    """As :func:`assert_same_state`, but only this process's own endpoints count (as its
    children): other test processes on the machine may be running Mininet meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        left = _leftovers(before, system_state())
        left.pop("endpoints", None)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert left == {}


@pytest.fixture(scope="module")
def hotspot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    yield _run(SCENARIOS["hotspot"], tmp_path_factory.mktemp("hotspot"))


@pytest.fixture(scope="module")
def nat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    yield _run(SCENARIOS["nat"], tmp_path_factory.mktemp("nat"))


def ipv4_packets(path: Path) -> list[tuple[float, Any, Any]]:
    """(time, IPv4 packet, decoded UDP datagram or TCP segment) of every UDP/TCP packet of an Ethernet capture."""
    linktype, records = read_pcap_linktype(path)
    assert linktype == 1, linktype
    out = []
    for t, frame in records:
        if frame[12:14] != ETHERTYPE_IPV4:
            continue
        ip = decode_ipv4(frame[14:])
        if ip.protocol == UDP_PROTOCOL:
            out.append((t, ip, decode_datagram(ip.payload)))
        elif ip.protocol == TCP_PROTOCOL:
            out.append((t, ip, decode_segment(ip.payload)))
    return out


def tshark_fields(
    pcap: Path, options: list[str], fields: list[str], display_filter: str | None = None
) -> list[list[str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is not installed: apt install tshark")
    argv = [tshark, "-n", "-r", str(pcap), *options, "-T", "fields", "-E", "separator=|"]
    if display_filter:
        argv += ["-Y", display_filter]
    proc = subprocess.run(
        [*argv, *(a for f in fields for a in ("-e", f))], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-1000:]
    return [line.split("|") for line in proc.stdout.splitlines()]


# --- hotspot


@pytest.mark.mininet
def test_hotspot_falls_back_to_tcp_and_the_tunnel_is_byte_exact(hotspot: Bundle) -> None:
    result = hotspot.result
    assert result.ok, result.summary()
    assert [t.name for t in result.transfers] == ["ike i->r", "ike r->i"]
    for t in result.transfers:
        assert t.bytes_received == t.bytes_expected == 32 * 1024 and t.sha256_received == t.sha256_expected
        assert (t.extra["transport"], t.extra["port"]) == ("tcp", 4500)
    assert result.transfers[1].extra["closed"]  # the Delete was answered
    attempts = [r for r in hotspot.ike("h1", "state_updated") if "attempt" in r.data]
    steps = [(r.data["event"], r.data["transport"], r.data["port"]) for r in attempts]
    assert steps == [("started", "udp", 500), ("timeout", "udp", 500), ("started", "tcp", 4500), ("won", "tcp", 4500)]
    # the UDP attempt: IKE_SA_INIT and two retransmissions (0.5 s, then 1 s later), then the 2 s timeout
    udp = [r for r in hotspot.ike("h1", "segment_sent") if r.data["transport"] == "udp"]
    assert [r.data.get("retransmission") for r in udp] == [None, 1, 2]
    assert {r.data["exchange"] for r in udp} == {"IKE_SA_INIT"}
    assert udp[1].t - udp[0].t == pytest.approx(0.5, abs=0.1)
    assert udp[2].t - udp[1].t == pytest.approx(1.0, abs=0.1)
    assert 2.0 <= attempts[1].data["after_s"] < 2.2
    assert attempts[2].t == pytest.approx(attempts[1].t, abs=0.05)
    # the first thing the TCP Originator writes is the stream prefix, alone (RFC 9329 §4)
    frames = hotspot.ike("h1", "segment_sent", layer="iketcp")
    assert frames[0].data["kind"] == "prefix" and {f.data["kind"] for f in frames[1:]} == {"ike", "esp"}
    assert not hotspot.ike("h2", "segment_received") or all(
        r.data["transport"] == "tcp" for r in hotspot.ike("h2", "segment_received")
    )


@pytest.mark.mininet
def test_hotspot_captures_show_udp_dying_at_the_router_and_the_iketcp_prefix(hotspot: Bundle) -> None:
    inside, outside = ipv4_packets(hotspot.pcap("h1-eth0")), ipv4_packets(hotspot.pcap("h2-eth0"))
    udp_out = [(t, ip) for t, ip, l4 in inside if ip.protocol == UDP_PROTOCOL and ip.src == H1]
    assert len(udp_out) == 3  # IKE_SA_INIT to UDP 500 and two retransmissions...
    assert all(decode_datagram(ip.payload).dst_port == 500 for _t, ip in udp_out)
    assert not [p for p in outside if p[1].protocol == UDP_PROTOCOL]  # ...none of which got past r1
    to_4500 = [
        (t, seg) for t, ip, seg in inside if ip.protocol == TCP_PROTOCOL and ip.src == H1 and seg.dst_port == 4500
    ]
    syn = next(t for t, seg in to_4500 if seg.flags & SYN)
    assert syn - udp_out[0][0] == pytest.approx(2.0, abs=0.2)  # TCP only after the UDP timeout
    # the stream starts with the prefix, then a length-framed IKE_SA_INIT behind the non-ESP marker
    stream = next(seg.payload for _t, seg in to_4500 if seg.payload)
    assert stream.startswith(b"IKETCP")
    frame = stream[6:]
    assert frame[2:6] == bytes(4) and frame[6 + 18] == 34  # marker, then the IKE header: IKE_SA_INIT
    assert int.from_bytes(frame[:2], "big") == 2 + 4 + int.from_bytes(frame[6 + 24 : 6 + 28], "big")
    arrived = [seg for _t, ip, seg in outside if ip.protocol == TCP_PROTOCOL and ip.src == H1 and seg.payload]
    assert arrived[0].payload.startswith(b"IKETCP")  # TCP passed the router


@pytest.mark.mininet
def test_tshark_decrypts_ike_auth_and_esp_in_the_hotspot_captures(hotspot: Bundle, tmp_path: Path) -> None:
    assert keylog_main([str(hotspot.out), "--out", str(tmp_path / "keys")]) == 0
    tables = key_tables(hotspot.records)
    assert len(tables.ikev2) == 1 and len(tables.esp) == 2
    assert (tmp_path / "keys" / "esp_sa").read_text().splitlines() == tables.esp
    udp_pcap = tmp_path / "h1-udp.pcap"
    conversion = iketcp_to_udp(hotspot.pcap("h1-eth0"), udp_pcap)
    assert conversion.ike_frames == 8 and conversion.esp_frames == 66 and not conversion.broken
    rows = tshark_fields(
        udp_pcap,
        tables.tshark_options(),
        ["isakmp.exchangetype", "isakmp.typepayload", "esp.spi", "ip.src", "udp.dstport", "data.data"],
    )
    auth = [row for row in rows if row[0] == "35"]
    assert len(auth) == 2
    assert {"46", "35", "36", "39", "33", "44", "45"} <= set(auth[0][1].split(","))  # SK{IDi, IDr, AUTH, SA, TSi, TSr}
    assert {"46", "36", "39", "33"} <= set(auth[1][1].split(","))  # SK{IDr, AUTH, SA, ...}: decrypted
    esp = [row for row in rows if row[2]]
    assert len(esp) == 66 and all(str(INNER_PORT) in row[4].split(",") for row in esp)
    # the decrypted inner chunks of each direction, put back together, are the bytes of that direction
    for src, transfer in ((H1, hotspot.result.transfers[0]), (H2, hotspot.result.transfers[1])):
        chunks = {}
        for row in esp:
            if row[3].split(",")[0] == src:
                data = bytes.fromhex(row[5])
                chunks[int.from_bytes(data[:4], "big")] = data[8:]
        stream = b"".join(chunks[k] for k in sorted(chunks))
        assert len(chunks) == 33 and hashlib.sha256(stream).hexdigest() == transfer.sha256_expected


# --- nat


@pytest.mark.mininet
def test_nat_the_responder_sees_the_router_and_nat_detection_reports_it(nat: Bundle) -> None:
    result = nat.result
    assert result.ok, result.summary()
    for t in result.transfers:
        assert t.extra["nat_detected"] is True and (t.extra["transport"], t.extra["port"]) == ("udp", 4500)
    assert result.transfers[0].extra.get("rekeyed")
    detected = [r.data for r in nat.ike("h2", "state_updated") if "nat_detected_remote" in r.data]
    assert detected and detected[0]["nat_detected_remote"] and not detected[0]["nat_detected_local"]
    mine = [r.data for r in nat.ike("h1", "state_updated") if "nat_detected_local" in r.data]
    assert mine and mine[0]["nat_detected_local"] and not mine[0]["nat_detected_remote"]
    # h2 only ever hears from the router's public address, on UDP 500 and then 4500
    at_h2 = [(ip, l4) for _t, ip, l4 in ipv4_packets(nat.pcap("h2-eth0")) if ip.dst == H2]
    assert at_h2 and {ip.src for ip, _l4 in at_h2} == {ROUTER_OUTSIDE}
    assert {l4.dst_port for ip, l4 in at_h2 if ip.protocol == UDP_PROTOCOL} == {500, 4500}
    at_h1 = [ip for _t, ip, _l4 in ipv4_packets(nat.pcap("h1-eth0")) if ip.src == H1]
    assert {ip.dst for ip in at_h1} == {H2}
    # keepalives keep the mapping (0xFF in UDP 4500, RFC 3948 §2.3)
    assert any(r.data.get("kind") == "nat_keepalive" for r in nat.ike("h1", "segment_sent"))
    assert any(r.data.get("kind") == "nat_keepalive" for r in nat.ike("h2", "segment_received"))


@pytest.mark.mininet
def test_tshark_decrypts_the_esp_the_nat_forwarded(nat: Bundle) -> None:
    tables = key_tables(nat.records)
    assert len(tables.esp) == 4  # two Child SAs (the rekey), two directions each
    rows = tshark_fields(nat.pcap("r1-eth1"), tables.tshark_options(), ["ip.src", "esp.spi", "udp.dstport"], "esp")
    assert len(rows) == 66
    assert {row[0].split(",")[0] for row in rows} == {ROUTER_OUTSIDE, H2}  # outside the NAT: the public address
    assert all(str(INNER_PORT) in row[2].split(",") for row in rows)  # every one decrypted to the inner datagram
    assert len({row[1] for row in rows}) == 3  # i->r on the old and the rekeyed SA, r->i after the rekey


# --- the benchmark's workload


@pytest.mark.mininet
def test_an_inner_tcp_stream_through_esp_in_udp_and_in_tcp_over_a_lossy_path(tmp_path: Path) -> None:
    scenario = Scenario(
        name="esp-bulk",
        description="an inner TCP stream through ESP in UDP, then through ESP in TCP, 1 % loss",
        topology="single-path",
        topology_params={"delay_ms": 10.0, "bw_mbps": 20.0, "loss_pct": 1.0},
        transfers=(TunnelledBulk(size_bytes=512 * 1024, transports=("udp", "tcp"), gap_s=0.2),),
        time_limit_s=60.0,
    )
    bundle = _run(scenario, tmp_path)
    result = bundle.result
    assert result.ok, result.summary()
    udp, tcp = result.transfers
    assert (udp.name, tcp.name) == ("esp-bulk udp-1", "esp-bulk tcp-1")
    for t, transport in ((udp, "udp"), (tcp, "tcp")):
        assert t.bytes_received == 512 * 1024 and t.sha256_received == t.sha256_expected
        assert t.extra["transport"] == transport and t.goodput_mbps is not None and t.goodput_mbps < 20.0
    assert tcp.started_at > udp.completed_at  # back to back, never sharing the path
    # on the wire: the inner TCP's segments in ESP, first in UDP 4500, then in RFC 9329 frames on TCP 4500;
    # tshark decrypts both with the exported keys and finds the inner TCP between the tunnel addresses
    tables = key_tables(bundle.records)
    assert len(tables.ikev2) == 2 and len(tables.esp) == 4
    udp_pcap = tmp_path / "h2-udp.pcap"
    conversion = iketcp_to_udp(bundle.pcap("h2-eth0"), udp_pcap)
    assert conversion.esp_frames > 512 * 1024 // INNER_MSS and not conversion.broken
    fields = ["ip.src", "ip.dst", "udp.srcport", "udp.dstport", "tcp.dstport", "tcp.len"]
    rows = tshark_fields(udp_pcap, tables.tshark_options(), fields, "esp")
    inner_bytes = {"udp": 0, "tcp": 0}  # ESP in UDP 4500 <-> 4500; frames of TCP 4500 <-> an ephemeral port
    for src, dst, sport, dport, inner_port, inner_len in rows:
        if src.split(",")[-1] == TUNNEL_INITIATOR and dst.split(",")[-1] == TUNNEL_RESPONDER:
            assert inner_port.split(",")[-1] == str(INNER_TCP_PORT)
            outer = "udp" if (sport, dport) == ("4500", "4500") else "tcp"
            inner_bytes[outer] += int(inner_len.split(",")[-1] or 0)
    # each session's stream (retransmissions included), decrypted by tshark from the real capture
    assert inner_bytes["udp"] >= 512 * 1024 and inner_bytes["tcp"] >= 512 * 1024, inner_bytes
