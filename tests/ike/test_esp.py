"""lab.wire.esp and lab.esp.sa: the DERIVED vector of vectors.md §5, anti-replay, tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError, LocalProtocolError
from lab.esp.sa import (
    DROP_BAD_PADDING,
    DROP_DUPLICATE,
    DROP_INTEGRITY,
    DROP_MALFORMED,
    DROP_TOO_OLD,
    DROP_WRONG_SPI,
    EspDropped,
    EspSa,
    ReplayWindow,
    aes_gcm_open,
    aes_gcm_seal,
)
from lab.iketcp import IketcpStream, Role
from lab.trace import RECORD_NAMES, MemoryTracer
from lab.wire.buffer import Buffer
from lab.wire.esp import (
    NEXT_HEADER_IPV4,
    NEXT_HEADER_NONE,
    EspPacket,
    EspPlaintext,
    decode_esp_packet,
    default_padding,
    minimum_pad_length,
    pull_esp_plaintext,
    push_esp_packet,
    push_esp_plaintext,
)
from lab.wire.ip import Ipv4Packet, decode_ip

H = bytes.fromhex
GOLD = json.loads((Path(__file__).parent / "captures" / "ikev2_psk_aesgcm256_dh19_vs_libreswan.json").read_text())
KEYMAT = H(GOLD["child_KEYMAT_i2r_key_salt"])  # DERIVED i->r child SA key | salt (vectors.md §4)
SPI = 0xC0FFEE01
INNER = H("45000027000000004001f6d2c0000201c000020208006239123400016c61622d6573702d6b6174")
VECTOR = H(
    "c0ffee0100000001000000000000000108b0ee7a7cf8b9c2118a054105dbf6ffac6370a9bfea7fd3c27f12265ff16de0"
    "78a2e0b9ed9d6af8dfb98c6e729809ecf2a3f64ebe70fbe0ef82733c"
)


def sa(**kwargs: object) -> EspSa:
    return EspSa(spi=SPI, keymat=KEYMAT, **kwargs)  # type: ignore[arg-type]


# --- vectors.md §5 (DERIVED) ----------------------------------------------------------------------------------------


def test_derived_vector_encrypts_byte_for_byte() -> None:
    packet = sa().encrypt(INNER, next_header=NEXT_HEADER_IPV4)
    assert packet == VECTOR
    parsed = decode_esp_packet(packet)
    assert (parsed.spi, parsed.seq, parsed.iv, len(parsed.icv)) == (SPI, 1, H("0000000000000001"), 16)
    assert aes_gcm_open(KEYMAT[:32], KEYMAT[32:], parsed.iv, parsed.ciphertext + parsed.icv, VECTOR[:8]) == (
        INNER + H("01020303 04")
    )


def test_derived_vector_decrypts_to_the_icmp_echo() -> None:
    plain = sa().decrypt(VECTOR)
    assert plain == EspPlaintext(INNER, NEXT_HEADER_IPV4, H("010203"))
    inner = decode_ip(plain.data)  # verifies the inner IPv4 header checksum
    assert isinstance(inner, Ipv4Packet)
    assert (inner.src, inner.dst, inner.protocol, inner.payload[8:]) == ("192.0.2.1", "192.0.2.2", 1, b"lab-esp-kat")


def test_derived_vector_as_a_tcp_frame() -> None:
    stream = IketcpStream(role=Role.INITIATOR)
    stream.send_esp(VECTOR)
    assert stream.data_to_send() == b"IKETCP" + H("004e") + VECTOR


def test_scapy_decrypts_our_packet() -> None:
    """An independent ESP implementation (Scapy's, AES-GCM with key | salt) reads what we sent."""
    pytest.importorskip("scapy")
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.packet import Raw

    scapy_sa = SecurityAssociation(
        ESP, spi=SPI, crypt_algo="AES-GCM", crypt_key=KEYMAT, auth_algo="NULL", auth_key=None
    )
    outer = IP(bytes(IP(src="198.51.100.1", dst="198.51.100.2", proto=50) / Raw(VECTOR)))
    decrypted = scapy_sa.decrypt(outer)
    assert bytes(decrypted[ICMP].payload) == b"lab-esp-kat"
    assert decrypted[IP].src == "198.51.100.1" and decrypted[IP][IP:2].src == "192.0.2.1"


# --- wire --------------------------------------------------------------------------------------------------------------


def test_packet_and_plaintext_layout() -> None:
    packet = EspPacket(SPI, 7, b"\x00" * 8, b"ciphertext", b"\xee" * 16)
    data = push_esp_packet(packet)
    assert data[:8] == H("c0ffee01 00000007")
    assert decode_esp_packet(data) == packet
    plain = EspPlaintext(b"data", 6, default_padding(2))
    assert push_esp_plaintext(plain) == b"data" + H("0102 02 06")
    assert pull_esp_plaintext(Buffer(b"data" + H("0102 02 06"))) == plain
    assert (plain.pad_length, plain.is_dummy, EspPlaintext(b"", NEXT_HEADER_NONE).is_dummy) == (2, False, True)


@pytest.mark.parametrize("data_len", range(12))
def test_minimum_padding_aligns_the_trailer(data_len: int) -> None:
    pad = minimum_pad_length(data_len)
    assert pad < 4 and (8 + data_len + pad + 2) % 4 == 0


MALFORMED_PACKETS = [
    pytest.param(H("00000000 00000001") + bytes(24), "spi", 0, id="spi-zero"),
    pytest.param(H("c0ffee01 0000"), "seq", 4, id="no-seq"),
    pytest.param(H("c0ffee01 00000001 0000"), "iv", 8, id="short-iv"),
    pytest.param(H("c0ffee01 00000001") + bytes(8 + 15), "icv", 16, id="short-icv"),
]


@pytest.mark.parametrize(("data", "field", "offset"), MALFORMED_PACKETS)
def test_malformed_packets(data: bytes, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_esp_packet(data)
    assert (exc.value.field, exc.value.offset) == (field, offset)


def test_malformed_plaintext() -> None:
    with pytest.raises(DecodeError) as exc:
        pull_esp_plaintext(Buffer(b"\x04"))
    assert exc.value.field == "next_header"
    with pytest.raises(DecodeError) as exc:
        pull_esp_plaintext(Buffer(H("0102 05 04")))
    assert (exc.value.field, exc.value.offset) == ("pad_length", 2)
    with pytest.raises(ValueError):
        push_esp_plaintext(EspPlaintext(b"", 4, bytes(256)))
    with pytest.raises(ValueError):
        push_esp_packet(EspPacket(0, 1, bytes(8), b"", bytes(16)))


@given(
    st.integers(1, 0xFFFF_FFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.binary(min_size=8, max_size=8),
    st.binary(max_size=64),
    st.sampled_from([8, 12, 16]),
)
def test_packet_round_trip(spi: int, seq: int, iv: bytes, ciphertext: bytes, icv_len: int) -> None:
    packet = EspPacket(spi, seq, iv, ciphertext, bytes(range(icv_len)))
    assert decode_esp_packet(push_esp_packet(packet), icv_len=icv_len) == packet


@given(st.binary(max_size=64), st.integers(0, 255), st.binary(max_size=255))
def test_plaintext_round_trip(data: bytes, next_header: int, padding: bytes) -> None:
    plain = EspPlaintext(data, next_header, padding)
    assert pull_esp_plaintext(Buffer(push_esp_plaintext(plain))) == plain


@given(
    st.binary(max_size=200),
    st.integers(0, 255),
    st.sampled_from([20, 28, 36]),
    st.sampled_from([8, 12, 16]),
)
def test_sa_round_trip(data: bytes, next_header: int, keymat_len: int, icv_len: int) -> None:
    keymat = bytes(range(keymat_len))
    sender = EspSa(spi=0x1001, keymat=keymat, icv_len=icv_len)
    receiver = EspSa(spi=0x1001, keymat=keymat, icv_len=icv_len)
    for _ in range(2):
        packet = sender.encrypt(data, next_header=next_header)
        assert (len(packet) - 8 - icv_len) % 4 == 0  # trailer aligned (RFC 4303 §2.4)
        assert receiver.decrypt(packet) == EspPlaintext(
            data, next_header, default_padding(minimum_pad_length(len(data)))
        )


def test_truncated_icv_equals_the_full_tag_prefix() -> None:
    """GCM with an 8- or 12-octet ICV is the 16-octet tag cut short (RFC 4106 §6)."""
    key, salt, iv = bytes(32), bytes(4), bytes(8)
    full = aes_gcm_seal(key, salt, iv, b"payload", b"aad")
    for icv_len in (8, 12):
        assert aes_gcm_seal(key, salt, iv, b"payload", b"aad", icv_len=icv_len) == full[: 7 + icv_len]


# --- anti-replay (RFC 4303 §3.4.3) -----------------------------------------------------------------------------------


def packets(count: int) -> list[bytes]:
    sender = sa()
    return [sender.encrypt(b"x%d" % i, next_header=59) for i in range(count)]


def drop_reason(receiver: EspSa, packet: bytes) -> str | None:
    try:
        receiver.decrypt(packet)
    except EspDropped as exc:
        assert not hasattr(exc, "plaintext")
        return exc.reason
    return None


def test_window_accepts_out_of_order_and_refuses_duplicates() -> None:
    sent = packets(70)  # sent[i] carries sequence number i + 1
    receiver = sa()
    assert drop_reason(receiver, sent[9]) is None  # 10 first: right of the window
    assert drop_reason(receiver, sent[4]) is None  # 5: inside, not yet seen
    assert drop_reason(receiver, sent[4]) == DROP_DUPLICATE
    assert drop_reason(receiver, sent[9]) == DROP_DUPLICATE  # the right edge itself
    assert receiver.replay_window.highest == 10


def test_window_advances_and_old_packets_fall_off() -> None:
    sent = packets(70)
    receiver = sa()
    assert drop_reason(receiver, sent[0]) is None  # seq 1
    assert drop_reason(receiver, sent[65]) is None  # seq 66: window is now 3..66
    assert drop_reason(receiver, sent[2]) is None  # seq 3: the left edge, still inside
    assert drop_reason(receiver, sent[1]) == DROP_TOO_OLD  # seq 2: 64 behind
    assert drop_reason(receiver, sent[0]) == DROP_TOO_OLD  # seq 1: seen, and now too old
    assert receiver.replay_window.received(66) and receiver.replay_window.received(3)
    assert not receiver.replay_window.received(4)


def test_window_size_is_configurable() -> None:
    sent = packets(100)
    wide = sa(replay_window_packets=128)
    assert drop_reason(wide, sent[99]) is None
    assert drop_reason(wide, sent[0]) is None  # 99 behind: inside a 128-packet window
    narrow = sa(replay_window_packets=32)
    assert drop_reason(narrow, sent[99]) is None
    assert drop_reason(narrow, sent[67]) == DROP_TOO_OLD  # 32 behind
    off = sa(replay_window_packets=0)
    assert drop_reason(off, sent[0]) is None and drop_reason(off, sent[0]) is None
    with pytest.raises(ValueError):
        sa(replay_window_packets=16)


def test_sequence_number_zero_is_refused() -> None:
    assert ReplayWindow().check(0) == DROP_TOO_OLD


def test_window_moves_only_after_the_icv_verifies() -> None:
    sent = packets(70)
    receiver = sa()
    forged = bytearray(sent[69])
    forged[-1] ^= 0x80
    assert drop_reason(receiver, bytes(forged)) == DROP_INTEGRITY
    assert receiver.replay_window.highest == 0
    assert drop_reason(receiver, sent[0]) is None  # still acceptable: the forgery did not slide the window


@given(st.lists(st.integers(1, 300), max_size=60), st.sampled_from([32, 64, 100]))
def test_window_matches_a_reference_model(seqs: list[int], size: int) -> None:
    window = ReplayWindow(size)
    seen: set[int] = set()
    highest = 0
    for seq in seqs:
        expected = (
            None
            if seq > highest
            else DROP_TOO_OLD
            if highest - seq >= size
            else DROP_DUPLICATE
            if seq in seen
            else None
        )
        assert window.check(seq) == expected
        if expected is None:
            window.update(seq)
            seen.add(seq)
            highest = max(highest, seq)


# --- tampering and other drops -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 3, 4, 7, 8, 15, 16, 40, len(VECTOR) - 16, len(VECTOR) - 1])
def test_any_flipped_bit_is_dropped_without_plaintext(position: int) -> None:
    tracer = MemoryTracer()
    receiver = EspSa(spi=SPI, keymat=KEYMAT, tracer=tracer)
    tampered = bytearray(VECTOR)
    tampered[position] ^= 0x04
    with pytest.raises(EspDropped) as exc:
        receiver.decrypt(bytes(tampered), now=2.5)
    expected = DROP_WRONG_SPI if position < 4 else DROP_INTEGRITY
    assert exc.value.reason == expected
    assert b"lab-esp-kat" not in str(exc.value).encode()
    (record,) = tracer.records
    assert (record.t, record.layer, record.name, record.data["reason"]) == (2.5, "esp", "segment_dropped", expected)
    assert record.name in RECORD_NAMES
    assert receiver.decrypt(VECTOR).data == INNER  # the genuine packet still gets through


def test_malformed_and_bad_padding_are_dropped() -> None:
    receiver = sa()
    with pytest.raises(EspDropped) as exc:
        receiver.decrypt(VECTOR[:20])
    assert exc.value.reason == DROP_MALFORMED
    sender = sa()
    odd = sender.encrypt(b"data", next_header=4, padding=b"\x09\x09")
    with pytest.raises(EspDropped) as exc:
        receiver.decrypt(odd)
    assert exc.value.reason == DROP_BAD_PADDING


def test_dummy_packets_are_returned_for_the_caller_to_discard() -> None:
    packet = sa().encrypt(b"random filler", next_header=NEXT_HEADER_NONE)
    assert sa().decrypt(packet).is_dummy


def test_sequence_numbers_never_cycle() -> None:
    sender = sa(sent_seq=0xFFFF_FFFE)
    last = sender.encrypt(b"last", next_header=4)
    assert decode_esp_packet(last).seq == 0xFFFF_FFFF
    with pytest.raises(LocalProtocolError, match="rekey"):
        sender.encrypt(b"one too many", next_header=4)
    assert sender.sent_seq == 0xFFFF_FFFF


def test_bad_sa_parameters() -> None:
    with pytest.raises(ValueError):
        EspSa(spi=0, keymat=KEYMAT)
    with pytest.raises(ValueError):
        EspSa(spi=SPI, keymat=KEYMAT[:32])  # no salt
    with pytest.raises(ValueError):
        EspSa(spi=SPI, keymat=KEYMAT, icv_len=4)
