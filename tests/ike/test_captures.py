"""Real IKE traffic through lab.wire.ikev2, lab.wire.iketcp and lab.ike.keys.

``captures/`` holds copies of two shared spec files (spec/captures/README.md):

* ``ikev2_libreswan_udp_then_tcp_fallback_IMPAIRED_FRAMING.pcap``: libreswan
  4.10 to libreswan with ``enable-tcp=fallback`` and UDP dropped: four UDP
  IKE_SA_INITs, then a TCP connection to port 4500 with the IKETCP prefix. Its
  framing is *not* RFC 9329: without kernel espintcp libreswan wrote no
  Length field (iketcp.md §1.7), one ``marker | IKE message`` per TCP write.
  The IKE messages themselves are standard; their keys are unknown.
* ``ikev2_psk_aesgcm256_dh19_vs_libreswan.json``: the GOLD exchange of
  vectors.md §4, whose keys are known.

The tshark test frames the GOLD messages (and the DERIVED ESP packet of
vectors.md §5) into an RFC 9329 TCP capture, rewrites that as UDP port 4500
datagrams the way spec/peers/iketcp2udp.py does (tshark 4.0 has no RFC 9329
dissector), and lets tshark decrypt it with the keys exported as UAT records.
"""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.esp.sa import EspSa
from lab.ike.keys import (
    decrypt_message,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    encr_key_len,
    nat_detection_hash,
    tshark_esp_record,
    tshark_ikev2_record,
)
from lab.iketcp import (
    CLOSED_BAD_LENGTH,
    CLOSED_END_OF_STREAM,
    EspPacketReceived,
    IkeMessageReceived,
    IketcpStream,
    Role,
    StreamClosed,
)
from lab.pcap import PcapWriter, read_pcap_linktype
from lab.wire.checksum import pack_address
from lab.wire.esp import NEXT_HEADER_IPV4
from lab.wire.ikev2 import (
    ENCR_AES_GCM_16,
    IKE_AUTH,
    IKE_SA_INIT,
    NAT_DETECTION_DESTINATION_IP,
    NAT_DETECTION_SOURCE_IP,
    PRF_HMAC_SHA2_256,
    decode_ike_message,
    encode_ike_message,
    strip_non_esp_marker,
)
from lab.wire.ip import Ipv4Packet, decode_ip, encode_ipv4, ip_protocol
from lab.wire.tcp import ACK, PSH, SYN, TCP_PROTOCOL, TcpSegment, decode_segment, encode_segment
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, decode_datagram, encode_datagram

CAPTURES = Path(__file__).parent / "captures"
FALLBACK = CAPTURES / "ikev2_libreswan_udp_then_tcp_fallback_IMPAIRED_FRAMING.pcap"
GOLD = json.loads((CAPTURES / "ikev2_psk_aesgcm256_dh19_vs_libreswan.json").read_text())
TSHARK = shutil.which("tshark")
H = bytes.fromhex
LINKTYPE_ETHERNET = 1
ETHERTYPE_IPV4 = 0x0800
IKETCP_PORT = 4500

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class Packet:
    number: int
    time: float
    src: Endpoint
    dst: Endpoint
    protocol: int
    payload: bytes  # UDP payload, or TCP payload
    segment: TcpSegment | None = None


def read_ip_packets(path: Path) -> list[Packet]:
    """Every UDP/TCP-over-IPv4 packet of a capture, decoded with the lab's own codecs."""
    linktype, records = read_pcap_linktype(path)
    out = []
    for number, (time, raw) in enumerate(records, 1):
        if linktype == LINKTYPE_ETHERNET:
            if struct.unpack_from("!H", raw, 12)[0] != ETHERTYPE_IPV4:
                continue
            raw = raw[14:]
        ip = decode_ip(raw)
        if ip_protocol(ip) == UDP_PROTOCOL:
            udp = decode_datagram(ip.payload)
            out.append(Packet(number, time, (ip.src, udp.src_port), (ip.dst, udp.dst_port), UDP_PROTOCOL, udp.payload))
        elif ip_protocol(ip) == TCP_PROTOCOL:
            seg = decode_segment(ip.payload)
            out.append(
                Packet(number, time, (ip.src, seg.src_port), (ip.dst, seg.dst_port), TCP_PROTOCOL, seg.payload, seg)
            )
    return out


def tcp_streams(packets: list[Packet]) -> dict[tuple[Endpoint, Endpoint], list[tuple[float, bytes]]]:
    """In-order TCP payload per direction, as (time, segment payload) pieces (the captures are loss-free)."""
    isn: dict[tuple[Endpoint, Endpoint], int] = {}
    pieces: dict[tuple[Endpoint, Endpoint], dict[int, tuple[float, bytes]]] = {}
    for p in packets:
        if p.segment is None:
            continue
        key = (p.src, p.dst)
        if p.segment.flags & SYN:
            isn[key] = p.segment.seq + 1
        elif p.payload:
            pieces.setdefault(key, {})[p.segment.seq] = (p.time, p.payload)
    streams = {}
    for key, by_seq in pieces.items():
        base = isn.get(key, min(by_seq))
        out, offset = [], 0
        for seq in sorted(by_seq, key=lambda s: (s - base) % 2**32):
            time, payload = by_seq[seq]
            if (seq - base) % 2**32 != offset:
                raise AssertionError(f"gap or overlap in {key} at offset {offset}")
            out.append((time, payload))
            offset += len(payload)
        streams[key] = out
    return streams


# --- the libreswan fallback capture ---------------------------------------------------------------------------------


@cache
def fallback() -> list[Packet]:
    return read_ip_packets(FALLBACK)


def fallback_tcp_messages() -> dict[str, list[bytes]]:
    """The IKE messages each side wrote over TCP (one ``marker | message`` per segment, no Length)."""
    out = {}
    for (src, _dst), pieces in tcp_streams(fallback()).items():
        side = "initiator" if src[1] != IKETCP_PORT else "responder"
        data = [payload for _time, payload in pieces]
        if side == "initiator":
            assert data[0] == b"IKETCP"  # sent alone, first (RFC 9329 §4)
            data = data[1:]
        out[side] = [strip_non_esp_marker(piece) for piece in data]
    return out


def rfc9329_stream(messages: list[bytes], *, prefix: bool) -> tuple[bytes, list[int]]:
    """The messages as RFC 9329 frames, with the offsets where each frame (or the prefix) ends."""
    sender = IketcpStream(role=Role.INITIATOR if prefix else Role.RESPONDER)
    ends = []
    data = b""
    if prefix:
        data += sender.data_to_send()
        ends.append(len(data))
    for message in messages:
        sender.send_ike(message)
        data += sender.data_to_send()
        ends.append(len(data))
    return data, ends


def feed(role: Role, data: bytes, cuts: list[int]) -> list[object]:
    stream = IketcpStream(role=role)
    points = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    for a, b in itertools.pairwise(points):
        if b > a:
            stream.receive_data(data[a:b])
    stream.receive_data(b"")
    out: list[object] = []
    while (event := stream.next_event()) is not None:
        out.append(event.message if isinstance(event, IkeMessageReceived) else event)
    return out


def test_every_ike_message_in_the_capture_round_trips() -> None:
    udp = [p for p in fallback() if p.protocol == UDP_PROTOCOL]
    assert len(udp) == 4 and all(p.dst[1] == 500 for p in udp)  # IKE_SA_INIT to UDP 500, no marker
    for p in udp:
        assert encode_ike_message(decode_ike_message(p.payload)) == p.payload
    tcp = fallback_tcp_messages()
    assert [decode_ike_message(m).exchange_type for m in tcp["initiator"]] == [IKE_SA_INIT, IKE_AUTH]
    assert [decode_ike_message(m).exchange_type for m in tcp["responder"]] == [IKE_SA_INIT, IKE_AUTH]
    for message in tcp["initiator"] + tcp["responder"]:
        assert encode_ike_message(decode_ike_message(message)) == message


def test_fallback_timeline_and_fresh_ike_sa_init() -> None:
    """iketcp.md §1.5: UDP at +0, +1, +2, +4 s, TCP at about +8 s with a new IKE_SA_INIT (RFC 9329 §5.1)."""
    udp = [p for p in fallback() if p.protocol == UDP_PROTOCOL]
    syn = next(p for p in fallback() if p.segment is not None and p.segment.flags == SYN)
    start = udp[0].time
    assert [round(p.time - start, 1) for p in udp] == [0.0, 1.0, 2.0, 4.0]
    assert syn.dst[1] == IKETCP_PORT and 7.5 < syn.time - start < 8.5
    assert len({p.payload for p in udp}) == 1  # retransmissions of one message
    udp_request = decode_ike_message(udp[0].payload)
    tcp_request = decode_ike_message(fallback_tcp_messages()["initiator"][0])
    assert tcp_request.spi_i != udp_request.spi_i  # "MUST be initiated with the Initiator's new SPI"


def test_nat_detection_uses_the_transport_in_use() -> None:
    """libreswan hashes UDP 500 ports over UDP and the TCP ports over TCP (RFC 9329 §6.5), both directions."""
    checked = 0
    for p in fallback():
        if not p.payload or p.payload == b"IKETCP":
            continue
        message = decode_ike_message(p.payload if p.protocol == UDP_PROTOCOL else strip_non_esp_marker(p.payload))
        for notify_type, (address, port) in ((NAT_DETECTION_SOURCE_IP, p.src), (NAT_DETECTION_DESTINATION_IP, p.dst)):
            for notify in message.notifies(notify_type):
                assert notify.data == nat_detection_hash(message.spi_i, message.spi_r, address, port)
                checked += 1
    assert checked == 2 * 4 + 2 * 2  # four UDP requests, the TCP request and response


def test_impaired_stream_is_refused_by_an_rfc_9329_responder() -> None:
    pieces = tcp_streams(fallback())
    initiator = next(v for (src, _), v in pieces.items() if src[1] != IKETCP_PORT)
    (closed,) = feed(Role.RESPONDER, b"".join(p for _, p in initiator), [])
    assert isinstance(closed, StreamClosed) and closed.reason == CLOSED_BAD_LENGTH


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_reframed_capture_in_every_chunking(side: str) -> None:
    messages = fallback_tcp_messages()[side]
    role = Role.RESPONDER if side == "initiator" else Role.INITIATOR  # the stream's reader
    data, ends = rfc9329_stream(messages, prefix=side == "initiator")
    expected = [*messages, StreamClosed(reason=CLOSED_END_OF_STREAM)]
    assert feed(role, data, []) == expected  # at once
    assert feed(role, data, ends) == expected  # as the frames were written
    assert feed(role, data, list(range(len(data)))) == expected  # a byte at a time


@given(st.data())
def test_reframed_capture_under_random_split_points(data: st.DataObject) -> None:
    messages = fallback_tcp_messages()["initiator"]
    stream, _ = rfc9329_stream(messages, prefix=True)
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=20))
    assert feed(Role.RESPONDER, stream, cuts) == [*messages, StreamClosed(reason=CLOSED_END_OF_STREAM)]


@given(st.lists(st.integers(1, 600), max_size=15))
def test_gold_exchange_under_random_split_points(cuts: list[int]) -> None:
    messages = [H(GOLD[name]) for name in ("msg1", "msg3")]
    stream, _ = rfc9329_stream(messages, prefix=True)
    assert feed(Role.RESPONDER, stream, cuts) == [*messages, StreamClosed(reason=CLOSED_END_OF_STREAM)]


# --- tshark decrypts the GOLD exchange ------------------------------------------------------------------------------

INITIATOR: Endpoint = ("192.0.2.1", 0xAB5C)  # the port libreswan's NAT_DETECTION_DESTINATION_IP names
RESPONDER: Endpoint = ("192.0.2.2", IKETCP_PORT)
CHILD_SPI = 0xC0FFEE01
INNER_ICMP = H("45000027000000004001f6d2c0000201c000020208006239123400016c61622d6573702d6b6174")


@dataclass
class TcpWriter:
    """Writes both directions of one TCP connection as raw-IP pcap records."""

    pcap: PcapWriter
    seq: dict[Endpoint, int]
    time: float = 1.0

    def send(self, src: Endpoint, dst: Endpoint, payload: bytes, flags: int = ACK | PSH) -> None:
        ack = self.seq[dst] if flags != SYN else 0
        segment = TcpSegment(src[1], dst[1], self.seq[src], ack, flags, 65535, payload=payload)
        tcp = encode_segment(segment, pack_address(src[0]), pack_address(dst[0]))
        self.pcap.write(self.time, encode_ipv4(Ipv4Packet(src[0], dst[0], TCP_PROTOCOL, tcp)))
        self.seq[src] = (self.seq[src] + len(payload) + (1 if flags & SYN else 0)) % 2**32
        self.time += 0.001


def write_gold_tcp_capture(path: Path) -> list[str]:
    """An RFC 9329 connection carrying msg1-msg4 and one ESP packet; returns what each data segment holds."""
    initiator, responder = IketcpStream(role=Role.INITIATOR), IketcpStream(role=Role.RESPONDER)
    child = derive_child_sa_keys(
        prf_id=PRF_HMAC_SHA2_256, sk_d=H(GOLD["SK_d"]), ni=H(GOLD["Ni"]), nr=H(GOLD["Nr"]), encr_key_len=36
    )
    esp = EspSa(spi=CHILD_SPI, keymat=child.encr_i2r).encrypt(INNER_ICMP, next_header=NEXT_HEADER_IPV4)
    with PcapWriter(path) as pcap:
        tcp = TcpWriter(pcap, {INITIATOR: 1000, RESPONDER: 5000})
        tcp.send(INITIATOR, RESPONDER, b"", SYN)
        tcp.send(RESPONDER, INITIATOR, b"", SYN | ACK)
        tcp.send(INITIATOR, RESPONDER, b"", ACK)
        for name, sender, src, dst in (
            ("msg1", initiator, INITIATOR, RESPONDER),
            ("msg2", responder, RESPONDER, INITIATOR),
            ("msg3", initiator, INITIATOR, RESPONDER),
            ("msg4", responder, RESPONDER, INITIATOR),
        ):
            sender.send_ike(H(GOLD[name]))
            tcp.send(src, dst, sender.data_to_send())
        initiator.send_esp(esp)
        tcp.send(INITIATOR, RESPONDER, initiator.data_to_send())
    return ["msg1", "msg2", "msg3", "msg4", "esp"]


def iketcp_to_udp(tcp_pcap: Path, udp_pcap: Path) -> int:
    """Our own iketcp2udp: every RFC 9329 frame becomes one UDP 4500 datagram with the same addresses.

    Deliberately independent of IketcpStream: a plain Length walk over each
    reassembled direction, so tshark also checks the framing we wrote.
    """
    packets = read_ip_packets(tcp_pcap)
    count = 0
    datagrams = []
    for (src, dst), pieces in tcp_streams(packets).items():
        stream = b"".join(payload for _, payload in pieces)
        ends, total = [], 0
        for time, payload in pieces:
            total += len(payload)
            ends.append((total, time))
        pos = 6 if stream.startswith(b"IKETCP") else 0
        while pos + 2 <= len(stream):
            length = int.from_bytes(stream[pos : pos + 2], "big")
            assert 2 <= length and pos + length <= len(stream), f"bad frame at {pos}"
            time = next(t for end, t in ends if end >= pos + length)
            body = stream[pos + 2 : pos + length]
            udp = encode_datagram(UdpDatagram(src[1], dst[1], body), pack_address(src[0]), pack_address(dst[0]))
            datagrams.append((time, encode_ipv4(Ipv4Packet(src[0], dst[0], UDP_PROTOCOL, udp))))
            pos += length
        assert pos == len(stream)
    with PcapWriter(udp_pcap) as pcap:
        for time, packet in sorted(datagrams):
            pcap.write(time, packet)
            count += 1
    return count


def test_tshark_decrypts_the_converted_capture(tmp_path: Path) -> None:
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark); the IKE/ESP decryption cross-check needs it")
    tcp_pcap, udp_pcap = tmp_path / "gold_iketcp.pcap", tmp_path / "gold_udp4500.pcap"
    write_gold_tcp_capture(tcp_pcap)
    assert iketcp_to_udp(tcp_pcap, udp_pcap) == 5

    keys = derive_ike_sa_keys(
        prf_id=PRF_HMAC_SHA2_256,
        shared_secret=H(GOLD["g_ir"]),
        ni=H(GOLD["Ni"]),
        nr=H(GOLD["Nr"]),
        spi_i=H(GOLD["SPIi"]),
        spi_r=H(GOLD["SPIr"]),
        encr_key_len=encr_key_len(ENCR_AES_GCM_16, 256),
    )
    child = derive_child_sa_keys(
        prf_id=PRF_HMAC_SHA2_256, sk_d=keys.sk_d, ni=H(GOLD["Ni"]), nr=H(GOLD["Nr"]), encr_key_len=36
    )
    ike_record = tshark_ikev2_record(spi_i=H(GOLD["SPIi"]), spi_r=H(GOLD["SPIr"]), sk_ei=keys.sk_ei, sk_er=keys.sk_er)
    esp_record = tshark_esp_record(src=INITIATOR[0], dst=RESPONDER[0], spi=CHILD_SPI, encr_key=child.encr_i2r)
    fields = [
        "frame.number",
        "isakmp.exchangetype",
        "isakmp.typepayload",
        "esp.spi",
        "esp.protocol",
        "icmp.type",
        "data.data",
    ]
    proc = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(udp_pcap),
            "-o",
            f"uat:ikev2_decryption_table:{ike_record}",
            "-o",
            "esp.enable_encryption_decode:TRUE",
            "-o",
            f"uat:esp_sa:{esp_record}",
            "-T",
            "fields",
            "-E",
            "separator=|",
            *(arg for f in fields for arg in ("-e", f)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|") for line in proc.stdout.splitlines()]
    assert len(rows) == 5, proc.stdout
    exchange, payload_types = [row[1] for row in rows], [set(row[2].split(",")) - {""} for row in rows]
    assert exchange == ["34", "34", "35", "35", ""]
    assert payload_types[0] >= {"33", "34", "40"}  # SA, KE, Nonce in the clear
    # the payload types inside SK are visible only when tshark decrypted it with our keys
    assert payload_types[2] >= {"46", "35", "39", "33", "44", "45"}, rows[2]  # SK{IDi, AUTH, SA, TSi, TSr}
    assert payload_types[3] >= {"46", "36", "39", "41"}, rows[3]  # SK{IDr, AUTH, N(TS_UNACCEPTABLE)}
    assert int(rows[4][3], 16) == CHILD_SPI
    assert (int(rows[4][4], 0), rows[4][5]) == (4, "8")  # Next Header IPv4; the inner packet is an ICMP echo request
    assert "6c61622d6573702d6b6174" in rows[4][6]  # b"lab-esp-kat"


def test_gold_capture_through_our_own_stream_and_keys(tmp_path: Path) -> None:
    """The same capture read back with IketcpStream and decrypted with lab.ike.keys (no tshark needed)."""
    path = tmp_path / "gold_iketcp.pcap"
    write_gold_tcp_capture(path)
    streams = tcp_streams(read_ip_packets(path))
    to_responder = b"".join(p for _, p in streams[(INITIATOR, RESPONDER)])
    stream = IketcpStream(role=Role.RESPONDER)
    stream.receive_data(to_responder)
    events = []
    while (event := stream.next_event()) is not None:
        events.append(event)
    assert [type(e) for e in events] == [IkeMessageReceived, IkeMessageReceived, EspPacketReceived]
    assert events[0].message == H(GOLD["msg1"])
    _, inner = decrypt_message(events[1].message, sk_e=H(GOLD["SK_ei"]))
    assert inner[0].data == b"west"
    child = EspSa(spi=CHILD_SPI, keymat=H(GOLD["child_KEYMAT_i2r_key_salt"]))
    assert child.decrypt(events[2].packet).data == INNER_ICMP
