"""The pcap writer: round trips through read_pcap, and tshark reading what we write."""

from __future__ import annotations

import math
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.pcap import LINKTYPE_RAW, MAGIC_NANOSECONDS, PcapWriter, read_pcap
from lab.wire.checksum import pack_address
from lab.wire.ip import Ipv4Packet, Ipv6Packet, encode_ipv4, encode_ipv6
from lab.wire.tcp import (
    ACK,
    PSH,
    SYN,
    MaxSegmentSize,
    NoOperation,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    encode_segment,
)
from lab.wire.udp import UdpDatagram, encode_datagram

CLIENT4, SERVER4 = "192.0.2.1", "198.51.100.2"
CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"


def tcp4(seg: TcpSegment, src: str = CLIENT4, dst: str = SERVER4) -> bytes:
    return encode_ipv4(Ipv4Packet(src, dst, 6, encode_segment(seg, pack_address(src), pack_address(dst))))


def tcp6(seg: TcpSegment, src: str = CLIENT6, dst: str = SERVER6) -> bytes:
    return encode_ipv6(Ipv6Packet(src, dst, 6, encode_segment(seg, pack_address(src), pack_address(dst))))


def udp4(dgram: UdpDatagram, src: str = CLIENT4, dst: str = SERVER4) -> bytes:
    return encode_ipv4(Ipv4Packet(src, dst, 17, encode_datagram(dgram, pack_address(src), pack_address(dst))))


def udp6(dgram: UdpDatagram, src: str = CLIENT6, dst: str = SERVER6) -> bytes:
    return encode_ipv6(Ipv6Packet(src, dst, 17, encode_datagram(dgram, pack_address(src), pack_address(dst))))


SYN_OPTIONS: tuple[TcpOption, ...] = (
    MaxSegmentSize(1460),
    SackPermitted(),
    Timestamps(1, 0),
    NoOperation(),
    WindowScale(7),
    UnknownOption(30, b"\x01\x01"),  # MP_CAPABLE v1 with checksums required (RFC 8684)
)
# (packet, (source port, destination port)), all on ports no dissector claims.
PACKETS = [
    (tcp4(TcpSegment(47000, 47001, 1000, 0, SYN, 65535, SYN_OPTIONS)), (47000, 47001)),
    (
        tcp4(
            TcpSegment(
                47001,
                47000,
                5000,
                1001,
                PSH | ACK,
                502,
                (NoOperation(), NoOperation(), Sack(((1001, 1002),))),
                b"hello world",
            ),
            SERVER4,
            CLIENT4,
        ),
        (47001, 47000),
    ),
    (
        tcp6(TcpSegment(47002, 47003, 1, 2, PSH | ACK, 1000, (NoOperation(), NoOperation(), Timestamps(5, 6)), b"odd")),
        (47002, 47003),
    ),
    (udp4(UdpDatagram(47004, 47005, b"ping")), (47004, 47005)),
    (udp6(UdpDatagram(47006, 47007, b"pong!")), (47006, 47007)),
]


# --- the file format ----------------------------------------------------------------


def test_file_header_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    with PcapWriter(path, snaplen=1500):
        pass
    assert path.read_bytes() == bytes.fromhex(
        "4d3cb2a1"  # magic 0xa1b23c4d, little-endian: nanosecond timestamps
        "0200"
        "0400"  # version 2.4
        "00000000"  # thiszone
        "00000000"  # sigfigs
        "dc050000"  # snaplen 1500
        "65000000"  # LINKTYPE_RAW (101)
    )
    assert read_pcap(path) == []


def test_record_bytes(tmp_path: Path) -> None:
    path = tmp_path / "one.pcap"
    with PcapWriter(path) as writer:
        writer.write(3.25, b"\x45abc")
    assert path.read_bytes()[24:] == bytes.fromhex(
        "03000000"  # 3 s
        "80b2e60e"  # 250 000 000 ns
        "04000000"  # captured length
        "04000000"  # original length
        "45616263"
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    times = [0.0, 0.5, 1.000000001, 12.345678912]
    with PcapWriter(path) as writer:
        for now, (packet, _ports) in zip(times, PACKETS[: len(times)], strict=True):
            writer.write(now, packet)
        assert writer.packets_written == len(times)
    records = read_pcap(path)
    assert [packet for _now, packet in records] == [packet for packet, _ports in PACKETS[: len(times)]]
    assert [now for now, _packet in records] == pytest.approx(times, abs=1e-9)


@given(st.lists(st.tuples(st.floats(min_value=0, max_value=2e9), st.binary(max_size=200)), max_size=10))
def test_round_trip_any_packets(tmp_path_factory: pytest.TempPathFactory, records: list[tuple[float, bytes]]) -> None:
    path = tmp_path_factory.getbasetemp() / "any.pcap"  # each example overwrites it
    with PcapWriter(path) as writer:
        for now, packet in records:
            writer.write(now, packet)
    got = read_pcap(path)
    assert [packet for _now, packet in got] == [packet for _now, packet in records]
    for (now_read, _), (now, _) in zip(got, records, strict=True):
        # Whole nanoseconds, as exact as a float of this size can say.
        assert now_read == pytest.approx(now, abs=1e-9 + math.ulp(now))


def test_nanoseconds_round_up_into_the_next_second(tmp_path: Path) -> None:
    path = tmp_path / "carry.pcap"
    with PcapWriter(path) as writer:
        writer.write(0.9999999999, b"\x60")
    sec, nsec = struct.unpack_from("<II", path.read_bytes(), 24)
    assert (sec, nsec) == (1, 0)


def test_snaplen_truncates_but_keeps_original_length(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    with PcapWriter(path, snaplen=8) as writer:
        writer.write(1.0, bytes(range(20)))
        writer.write(2.0, b"short")
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 16)[0] == 8
    assert struct.unpack_from("<II", raw, 24 + 8) == (8, 20)
    assert read_pcap(path) == [(1.0, bytes(range(8))), (2.0, b"short")]


@pytest.mark.parametrize("now", [-0.5, math.nan, math.inf, 2.0**32])
def test_rejects_times_pcap_cannot_hold(tmp_path: Path, now: float) -> None:
    with PcapWriter(tmp_path / "bad.pcap") as writer, pytest.raises(ValueError, match="timestamp"):
        writer.write(now, b"\x45")


@pytest.mark.parametrize("snaplen", [0, -1, 2**32])
def test_rejects_bad_snaplen(tmp_path: Path, snaplen: int) -> None:
    with pytest.raises(ValueError, match="snaplen"):
        PcapWriter(tmp_path / "bad.pcap", snaplen=snaplen)


def test_close_flush_and_write_after_close(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    writer = PcapWriter(path)
    writer.write(1.0, b"\x45")
    writer.flush()
    assert read_pcap(path) == [(1.0, b"\x45")]
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError):
        writer.write(2.0, b"\x45")


def test_context_manager_closes_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), PcapWriter(tmp_path / "e.pcap") as writer:
        writer.write(1.0, b"\x45")
        raise RuntimeError("boom")
    assert writer.closed
    assert read_pcap(tmp_path / "e.pcap") == [(1.0, b"\x45")]


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_microsecond_files_of_either_byte_order(tmp_path: Path, order: str) -> None:
    path = tmp_path / "usec.pcap"
    header = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    path.write_bytes(header + struct.pack(order + "IIII", 7, 250_000, 2, 2) + b"\x60\x00")
    assert read_pcap(path) == [(7.25, b"\x60\x00")]


def test_read_big_endian_nanosecond_file(tmp_path: Path) -> None:
    path = tmp_path / "nsec.pcap"
    header = struct.pack(">IHHiIII", MAGIC_NANOSECONDS, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    path.write_bytes(header + struct.pack(">IIII", 7, 500_000_000, 1, 1) + b"\x45")
    assert read_pcap(path) == [(7.5, b"\x45")]


@pytest.mark.parametrize(
    ("data", "field", "offset"),
    [
        (b"", "header", 0),
        (b"\x4d\x3c\xb2\xa1" + b"\x00" * 10, "header", 14),
        (b"\x0a\x0d\x0d\x0a" + b"\x00" * 20, "magic", 0),  # pcapng is not classic pcap
    ],
)
def test_read_rejects_bad_headers(tmp_path: Path, data: bytes, field: str, offset: int) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(data)
    with pytest.raises(DecodeError) as info:
        read_pcap(path)
    assert (info.value.field, info.value.offset) == (field, offset)


def test_read_rejects_truncated_records(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    with PcapWriter(path) as writer:
        writer.write(1.0, b"\x45" * 10)
    raw = path.read_bytes()
    path.write_bytes(raw[:-1])
    with pytest.raises(DecodeError) as info:
        read_pcap(path)
    assert (info.value.field, info.value.offset) == ("incl_len", 32)
    path.write_bytes(raw[:30])
    with pytest.raises(DecodeError) as info:
        read_pcap(path)
    assert (info.value.field, info.value.offset) == ("record", 24)


# --- tshark as an independent reader ------------------------------------------------------

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not on PATH")
CHECK_CHECKSUMS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
BAD_CHECKSUM = re.compile(r"checksum status: Bad|\[incorrect", re.IGNORECASE)
GOOD_CHECKSUM = re.compile(r"checksum status: Good", re.IGNORECASE)


def tshark(path: Path, *args: str) -> str:
    assert TSHARK is not None
    result = subprocess.run(
        [TSHARK, "-r", str(path), "-n", *CHECK_CHECKSUMS, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_pcap(path: Path, packets: list[bytes], *, start: float = 1.5) -> None:
    with PcapWriter(path) as writer:
        for i, packet in enumerate(packets):
            writer.write(start + i * 1e-9, packet)


def checksums_expected(packets: list[bytes]) -> int:
    """IPv4 header checksums plus TCP/UDP checksums: what tshark should call Good."""
    return sum(1 + (packet[0] >> 4 == 4) for packet in packets)


@needs_tshark
def test_tshark_reads_our_packets(tmp_path: Path) -> None:
    path = tmp_path / "ours.pcap"
    write_pcap(path, [packet for packet, _ports in PACKETS])

    detail = tshark(path, "-V", "-o", "tcp.relative_sequence_numbers:FALSE")
    assert len(re.findall(r"^Frame \d+:", detail, re.MULTILINE)) == len(PACKETS)
    assert "Malformed" not in detail
    assert not BAD_CHECKSUM.findall(detail)
    assert len(GOOD_CHECKSUM.findall(detail)) == checksums_expected([p for p, _ in PACKETS])
    assert "Multipath TCP" in detail  # kind 30 reached Wireshark's MPTCP dissector
    assert "SACK permitted" in detail
    assert "left edge = 1001" in detail

    expert = tshark(path, "-q", "-z", "expert")
    assert "Errors (" not in expert
    assert "Warns (" not in expert

    fields = tshark(
        path,
        "-T", "fields", "-E", "separator=,",
        "-e", "frame.time_epoch",
        "-e", "ip.src", "-e", "ipv6.src",
        "-e", "tcp.srcport", "-e", "tcp.dstport",
        "-e", "udp.srcport", "-e", "udp.dstport",
    )  # fmt: skip
    rows = [line.split(",") for line in fields.splitlines()]
    assert len(rows) == len(PACKETS)
    for i, (row, (packet, ports)) in enumerate(zip(rows, PACKETS, strict=True)):
        epoch, ip_src, ipv6_src, tcp_sport, tcp_dport, udp_sport, udp_dport = row
        assert epoch == f"1.50000000{i}"  # nanoseconds survive the trip
        assert (ipv6_src if packet[0] >> 4 == 6 else ip_src) in (CLIENT4, SERVER4, CLIENT6, SERVER6)
        got_ports = (tcp_sport, tcp_dport) if packet[9 if packet[0] >> 4 == 4 else 6] == 6 else (udp_sport, udp_dport)
        assert tuple(map(int, got_ports)) == ports


@needs_tshark
def test_tshark_notices_bad_checksums(tmp_path: Path) -> None:
    """The negative control: with our checks on, tshark does report a bad checksum."""
    bad_ip = bytearray(PACKETS[0][0])
    bad_ip[8] ^= 0x01  # TTL, under the IPv4 header checksum
    bad_tcp = bytearray(PACKETS[2][0])
    bad_tcp[-1] ^= 0x01  # payload, under the TCP checksum
    bad_udp = bytearray(PACKETS[3][0])
    bad_udp[-1] ^= 0x01
    path = tmp_path / "bad.pcap"
    write_pcap(path, [bytes(bad_ip), bytes(bad_tcp), bytes(bad_udp)])
    assert len(BAD_CHECKSUM.findall(tshark(path, "-V"))) >= 3
    assert "Errors (3)" in tshark(path, "-q", "-z", "expert")


@needs_tshark
def test_tshark_reads_random_segments_and_datagrams(tmp_path: Path) -> None:
    """A seeded batch of random segments (options Wireshark knows) and datagrams, all well formed."""
    rng = random.Random(7)
    packets = []
    for i in range(200):
        v6 = bool(i & 1)
        src, dst = (CLIENT6, SERVER6) if v6 else (CLIENT4, SERVER4)
        payload = rng.randbytes(rng.randrange(0, 300))
        if i % 4 < 2:
            options: list[TcpOption] = []
            budget = 40
            for _ in range(rng.randrange(0, 8)):
                opt = rng.choice(
                    [
                        NoOperation(),
                        MaxSegmentSize(rng.randrange(1 << 16)),
                        WindowScale(rng.randrange(15)),
                        SackPermitted(),
                        Sack(
                            tuple((rng.randrange(1 << 32), rng.randrange(1 << 32)) for _ in range(rng.randrange(1, 4)))
                        ),
                        Timestamps(rng.randrange(1 << 32), rng.randrange(1 << 32)),
                    ]
                )
                size = len(encode_segment(TcpSegment(0, 0, 0, 0, 0, 0, (opt,)), b"\0" * 4, b"\0" * 4)) - 20
                if size <= budget:
                    options.append(opt)
                    budget -= size
            seg = TcpSegment(
                47100 + i,
                47999,
                rng.randrange(1 << 32),
                rng.randrange(1 << 32),
                rng.choice([ACK, PSH | ACK, SYN, SYN | ACK]),
                rng.randrange(1 << 16),
                tuple(options),
                b"" if rng.random() < 0.2 else payload,
            )
            packets.append(tcp6(seg, src, dst) if v6 else tcp4(seg, src, dst))
        else:
            dgram = UdpDatagram(47100 + i, 47999, payload)
            packets.append(udp6(dgram, src, dst) if v6 else udp4(dgram, src, dst))
    path = tmp_path / "random.pcap"
    write_pcap(path, packets)

    detail = tshark(path, "-V")
    assert len(re.findall(r"^Frame \d+:", detail, re.MULTILINE)) == len(packets)
    assert "Malformed" not in detail
    assert not BAD_CHECKSUM.findall(detail)
    assert len(GOOD_CHECKSUM.findall(detail)) == checksums_expected(packets)
    assert "Errors (" not in tshark(path, "-q", "-z", "expert")


def test_linktype_is_reported(tmp_path) -> None:
    from lab.pcap import LINKTYPE_RAW, PcapWriter, read_pcap_linktype

    path = tmp_path / "x.pcap"
    with PcapWriter(path) as w:
        w.write(1.5, b"\x45" + bytes(19))
    linktype, records = read_pcap_linktype(path)
    assert linktype == LINKTYPE_RAW == 101
    assert records == [(1.5, b"\x45" + bytes(19))]
