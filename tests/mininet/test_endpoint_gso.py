"""The endpoint's bulk packet paths keep the segments the stack produced.

GSO (no root needed): the packets a real transfer's sender emits go through :class:`GsoSender`;
each frame it sends is cut the way the kernel cuts a TCPv4 GSO frame (RFC 791/9293 header
rules as Linux's tcp_gso_segment and inet_gso_segment apply them: the IP ID counts up from the
first, the sequence number advances by gso_size, PSH and FIN only on the last segment, each
checksum computed afresh), and the result must be, byte for byte and in order, what the stack
sent. On Mininet (root): a transfer over an unshaped path with GSO and GRO on is byte-exact, both
were used, and a capture on the router sees only MTU-sized segments with good checksums.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from lab.mininet.endpoint import VNET_HDR, VNET_HDR_LEN, EventLoop, GsoSender
from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.trace import NULL_TRACER
from lab.wire.checksum import finish_partial_checksum, internet_checksum, transport_checksum
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture

ETH4 = bytes(6) + bytes(5) + b"\x01" + b"\x08\x00"
ETH6 = bytes(6) + bytes(5) + b"\x01" + b"\x86\xdd"
FIN, PSH, CWR = 0x01, 0x08, 0x80


def kernel_segments(frame: bytes) -> list[bytes]:
    """The IP packets the kernel makes of one frame sent with a virtio_net_hdr."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(frame)
    assert frame[VNET_HDR_LEN : VNET_HDR_LEN + 14] in (ETH4, ETH6)
    packet = frame[VNET_HDR_LEN + 14 :]
    if not gso_type:
        if flags == 0:  # a frame sent as it is
            return [packet]
        # one TCP segment whose checksum the kernel finishes (the field holds the pseudo-header's sum)
        assert flags == 1 and (csum_start, csum_offset) == (14 + 20, 16) and packet[9] == 6
        return [finish_partial_checksum(packet, 20, 16)]
    assert gso_type == 1 and flags == 1 and csum_start == 14 + 20 and csum_offset == 16
    hlen = 20 + (packet[32] >> 4) * 4
    assert hdr_len == 14 + hlen
    payload = packet[hlen:]
    ident = int.from_bytes(packet[4:6], "big")
    seq = int.from_bytes(packet[24:28], "big")
    count = -(-len(payload) // gso_size)
    out = []
    for i in range(count):
        chunk = payload[i * gso_size : (i + 1) * gso_size]
        ip = bytearray(packet[:20])
        ip[2:4] = (hlen + len(chunk)).to_bytes(2, "big")
        ip[4:6] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
        ip[10:12] = b"\0\0"
        ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
        tcp = bytearray(packet[20:hlen])
        tcp[4:8] = ((seq + i * gso_size) & 0xFFFFFFFF).to_bytes(4, "big")
        if i < count - 1:
            tcp[13] &= ~(FIN | PSH)
        if i > 0:
            tcp[13] &= ~CWR
        tcp[16:18] = b"\0\0"
        tcp[16:18] = transport_checksum(bytes(ip[12:16]), bytes(ip[16:20]), 6, bytes(tcp) + chunk).to_bytes(2, "big")
        out.append(bytes(ip) + bytes(tcp) + chunk)
    return out


def _sender_packets(size: int, seed: int, topology_params: dict, *, offload: bool = False) -> list[list[bytes]]:
    """What h1's stack emits in a transfer to h2, grouped by the instant it was emitted at. With
    ``offload`` h1's interface finishes TCP checksums (as GsoSender has the kernel do): the packets
    are kept as emitted, and go on into the network with their checksums finished."""
    scenario = Scenario(
        name="gso",
        description="",
        topology="single-path",
        topology_params=topology_params,
        transfers=(Transfer(size_bytes=size),),
        time_limit_s=60.0,
    )
    run = ScenarioRun(scenario, seed=seed, tracer=NULL_TRACER)
    host = run.net.host("h1")
    transmit = host._transmit
    groups: list[list[bytes]] = []
    at = [-1.0]

    def capture(packet: bytes) -> None:
        if run.net.now != at[0]:
            at[0] = run.net.now
            groups.append([])
        groups[-1].append(packet)
        if offload and packet[9] == 6:
            packet = finish_partial_checksum(packet[:36] + _pseudo(packet) + packet[38:], 20, 16)
        transmit("h1-eth0", packet)

    host.set_interface_sender("h1-eth0", capture, checksum_offload=offload)
    run.net.run(until=60.0, stop=run.done)
    assert run.results[0].ok
    return groups


@pytest.mark.parametrize(
    ("seed", "params", "coalesced"),
    [
        (1, {"delay_ms": 2.0, "bw_mbps": None}, 0.8),
        # losses, SACK recovery and retransmissions: ACK-clocked sends in shorter runs
        (2, {"delay_ms": 10.0, "bw_mbps": 50.0, "loss_pct": 1.0}, 0.5),
    ],
)
def test_gso_frames_cut_as_the_kernel_does_are_the_segments_the_stack_sent(
    seed: int, params: dict, coalesced: float
) -> None:
    groups = _sender_packets(4 * 1024 * 1024, seed, params)
    sent: list[bytes] = []
    loop = EventLoop()
    errors: list[OSError] = []
    gso = GsoSender(sent.append, ETH4, ETH6, loop, errors.append)
    for group in groups:  # each instant is one callback of the endpoint's loop
        for packet in group:
            gso(packet)
        loop.run_after()
    loop.close()
    original = [p for g in groups for p in g]
    rebuilt = [p for frame in sent for p in kernel_segments(frame)]
    assert not errors
    assert len(rebuilt) == len(original)
    assert rebuilt == original
    assert gso.segments > coalesced * len(original)  # runs were coalesced
    assert len(sent) < (1 - coalesced / 2) * len(original)


def _pseudo(packet: bytes) -> bytes:
    total = int.from_bytes(packet[12:16], "big") + int.from_bytes(packet[16:20], "big") + 6 + len(packet) - 20
    return ((total % 0xFFFF) or 0xFFFF).to_bytes(2, "big")


def test_with_checksum_offload_the_stack_leaves_the_sums_and_the_kernel_makes_the_same_segments() -> None:
    """h1's data segments leave without their payload summed; cut and finished as the kernel does,
    they are the segments of the same run without offload, checksums included."""
    params = {"delay_ms": 4.0, "bw_mbps": 100.0, "loss_pct": 0.5}
    plain = [p for g in _sender_packets(2 * 1024 * 1024, 5, params) for p in g]
    groups = _sender_packets(2 * 1024 * 1024, 5, params, offload=True)
    offloaded = [p for g in groups for p in g]
    assert len(offloaded) == len(plain)
    unfilled = sum(a[36:38] != b[36:38] for a, b in zip(offloaded, plain, strict=True))
    assert unfilled > len(plain) // 2  # most data segments left their checksum to the interface
    sent: list[bytes] = []
    loop = EventLoop()
    gso = GsoSender(sent.append, ETH4, ETH6, loop, lambda exc: None)
    for group in groups:
        for packet in group:
            gso(packet)
        loop.run_after()
    loop.close()
    assert [p for frame in sent for p in kernel_segments(frame)] == plain


def test_a_segment_that_would_not_come_back_the_same_ends_the_run() -> None:
    """A gap in the sequence numbers, a changed option (timestamp) and an IP ID out of step each
    start a new frame."""
    groups = _sender_packets(256 * 1024, 3, {"delay_ms": 2.0, "bw_mbps": None})
    data = [p for g in groups for p in g if len(p) > 200][:6]
    assert len(data) == 6
    sent: list[bytes] = []
    loop = EventLoop()
    gso = GsoSender(sent.append, ETH4, ETH6, loop, lambda exc: None)
    tcp = bytearray(data[2][20:])
    tcp[24] ^= 1  # the tsval
    tcp[16:18] = b"\0\0"
    tcp[16:18] = transport_checksum(data[2][12:16], data[2][16:20], 6, bytes(tcp)).to_bytes(2, "big")
    changed_ts = data[2][:20] + bytes(tcp)
    for packet in (data[0], data[1], changed_ts, data[4], data[5]):
        gso(packet)
    loop.run_after()
    loop.close()
    frames = [kernel_segments(f) for f in sent]
    assert [len(f) for f in frames] == [2, 1, 2]  # the changed tsval alone; then a sequence gap (data[3] left out)
    assert [p for f in frames for p in f] == [data[0], data[1], changed_ts, data[4], data[5]]


# --- on Mininet ---------------------------------------------------------------------------


@pytest.mark.mininet
def test_an_unshaped_transfer_uses_gso_and_gro_and_the_wire_keeps_real_segments(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    from lab.mininet.run import run_mininet_scenario

    size = 32 * 1024 * 1024
    scenario = Scenario(
        name="gso-gro",
        description="user-space TCP both ends, unshaped",
        topology="single-path",
        topology_params={"delay_ms": 0.0, "bw_mbps": None},
        transfers=(Transfer(size_bytes=size),),
        time_limit_s=120.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcap_interfaces=["r1-eth0"])
    assert result.ok, result.summary()
    (transfer,) = result.transfers
    assert transfer.bytes_received == size and transfer.sha256_received == transfer.sha256_expected
    gso = result.endpoints["h1"]["stats"]["gso"]["h1-eth0"]
    gro = result.endpoints["h2"]["stats"]["gro"]["h2-eth0"]
    assert gso["frames"] > 0 and gso["segments"] > size // 1448 // 2, gso
    assert gro["packets"] > 0 and gro["bytes"] > size // 4, gro
    # the router's side of h1's link: every frame a real segment, every checksum good
    pcap = tmp_path / "pcaps" / "r1-eth0.pcap"
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
         "-Y", "tcp", "-T", "fields", "-e", "frame.len", "-e", "tcp.checksum.status", "-e", "ip.checksum.status"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in out if line.strip()]
    assert len(rows) > size // 1448
    assert max(int(r[0]) for r in rows) <= 1514
    assert {r[1] for r in rows} == {"1"} and {r[2] for r in rows} == {"1"}  # 1: good (0 bad, 2 unverified)
