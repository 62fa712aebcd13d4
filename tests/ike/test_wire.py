"""lab.wire.ikev2: exact bytes, round trips under Hypothesis, malformed input naming its field."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.buffer import Buffer
from lab.wire.ikev2 import (
    ATTRIBUTE_KEY_LENGTH,
    CHILDLESS_IKEV2_SUPPORTED,
    DH_ECP_256,
    ENCR_AES_GCM_16,
    ESN_NONE,
    ID_FQDN,
    IKE_AUTH,
    IKE_SA_INIT,
    IKEV2_FRAGMENTATION_SUPPORTED,
    INFORMATIONAL,
    INVALID_KE_PAYLOAD,
    NAT_DETECTION_DESTINATION_IP,
    NAT_DETECTION_SOURCE_IP,
    PAYLOAD_AUTH,
    PAYLOAD_IDI,
    PAYLOAD_SK,
    PRF_HMAC_SHA2_256,
    PROTO_ESP,
    PROTO_IKE,
    TRANSFORM_DH,
    TRANSFORM_ENCR,
    TRANSFORM_ESN,
    TRANSFORM_PRF,
    TS_IPV4_ADDR_RANGE,
    TS_IPV6_ADDR_RANGE,
    TS_UNACCEPTABLE,
    AuthPayload,
    DeletePayload,
    EncryptedPayload,
    IdiPayload,
    IdrPayload,
    IkeHeader,
    IkeMessage,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    UnknownTrafficSelector,
    VendorIdPayload,
    add_non_esp_marker,
    classify_udp_4500,
    decode_ike_message,
    encode_ike_message,
    pull_ike_header,
    pull_payload_chain,
    pull_transform_attribute,
    push_ike_header,
    push_payload_chain,
    push_transform_attribute,
    strip_non_esp_marker,
)

CAPTURES = Path(__file__).parent / "captures"
GOLD = json.loads((CAPTURES / "ikev2_psk_aesgcm256_dh19_vs_libreswan.json").read_text())
H = bytes.fromhex


def gold(name: str) -> bytes:
    return H(GOLD[name])


# --- exact bytes --------------------------------------------------------------------------------------------

AES_GCM_256 = Transform(TRANSFORM_ENCR, ENCR_AES_GCM_16, (TransformAttribute(ATTRIBUTE_KEY_LENGTH, 256),))
IKE_PROPOSAL = Proposal(
    1,
    PROTO_IKE,
    (AES_GCM_256, Transform(TRANSFORM_PRF, PRF_HMAC_SHA2_256), Transform(TRANSFORM_DH, DH_ECP_256)),
)


def test_ike_sa_init_request_is_built_byte_for_byte() -> None:
    """vectors.md §4 msg1: HDR, SA, KEi, Ni as our initiator sent them to libreswan."""
    message = IkeMessage(
        spi_i=gold("SPIi"),
        spi_r=bytes(8),
        exchange_type=IKE_SA_INIT,
        message_id=0,
        initiator=True,
        payloads=(SaPayload((IKE_PROPOSAL,)), KePayload(DH_ECP_256, gold("KEi")), NoncePayload(gold("Ni"))),
    )
    assert encode_ike_message(message) == gold("msg1")
    assert decode_ike_message(gold("msg1")) == message


def test_ike_sa_init_response_from_libreswan() -> None:
    message = decode_ike_message(gold("msg2"))
    assert (message.response, message.initiator, message.spi_r) == (True, False, gold("SPIr"))
    assert message.payloads[:3] == (
        SaPayload((IKE_PROPOSAL,)),
        KePayload(DH_ECP_256, gold("KEr")),
        NoncePayload(gold("Nr")),
    )
    assert [n.notify_type for n in message.notifies()] == [
        IKEV2_FRAGMENTATION_SUPPORTED,
        NAT_DETECTION_SOURCE_IP,
        NAT_DETECTION_DESTINATION_IP,
        CHILDLESS_IKEV2_SUPPORTED,
    ]
    assert message.notifies(NAT_DETECTION_SOURCE_IP)[0].data == H("2dc7b88e8c81586d4cd89e50dc6d3203346e3ca5")
    assert not any(n.is_error for n in message.notifies())
    assert encode_ike_message(message) == gold("msg2")


def test_ike_auth_inner_payloads_are_built_byte_for_byte() -> None:
    """msg3's plaintext (vectors.md §4): IDi, AUTH, SA(ESP), TSi, TSr, then Pad Length 0."""
    child = Proposal(
        1,
        PROTO_ESP,
        (AES_GCM_256, Transform(TRANSFORM_ESN, ESN_NONE)),
        spi=H("2a088679"),
    )
    inner = (
        IdiPayload(ID_FQDN, b"west"),
        AuthPayload(2, gold("AUTHi")),
        SaPayload((child,)),
        TsiPayload((TrafficSelector(TS_IPV4_ADDR_RANGE, "192.0.2.1", "192.0.2.1"),)),
        TsrPayload((TrafficSelector(TS_IPV4_ADDR_RANGE, "192.0.2.2", "192.0.2.2"),)),
    )
    first, chain = push_payload_chain(inner)
    assert (first, chain + b"\x00") == (PAYLOAD_IDI, gold("msg3_plain"))
    assert pull_payload_chain(Buffer(chain), PAYLOAD_IDI) == inner


def test_ike_auth_response_inner_payloads() -> None:
    plain = gold("msg4_plain")[:-1]  # Pad Length 0
    inner = pull_payload_chain(Buffer(plain), PAYLOAD_IDI + 1)
    assert inner == (IdrPayload(ID_FQDN, b"east"), AuthPayload(2, gold("AUTHr")), NotifyPayload(TS_UNACCEPTABLE))
    assert [(p.payload_type, push_payload_chain((p,))[1][4:].hex()) for p in inner] == [
        tuple(x) for x in GOLD["msg4_payloads"]
    ]


def test_sk_payload_header_only() -> None:
    message = decode_ike_message(gold("msg3"))
    (sk,) = message.payloads
    assert isinstance(sk, EncryptedPayload)
    assert sk.first_payload == PAYLOAD_IDI
    assert sk.data[:8] == H("0000000000000001")
    assert (message.exchange_type, message.message_id, message.initiator) == (IKE_AUTH, 1, True)
    assert encode_ike_message(message) == gold("msg3")


def test_header_flags_and_version_bytes() -> None:
    header = IkeHeader(b"\x01" * 8, b"\x02" * 8, 46, INFORMATIONAL, 7, 28, initiator=True, response=True)
    data = push_ike_header(header)
    assert data[16:] == H("2e 20 25 28 00000007 0000001c")
    assert pull_ike_header(Buffer(data)) == header
    odd = data[:19] + b"\xff" + data[20:]  # all flag bits set: X bits kept apart from I, V, R
    parsed = pull_ike_header(Buffer(odd))
    assert (parsed.initiator, parsed.response, parsed.higher_version, parsed.reserved_flags) == (True, True, True, 0xC7)
    assert push_ike_header(parsed) == odd


def test_attribute_formats() -> None:
    assert push_transform_attribute(TransformAttribute(14, 256)) == H("800e0100")  # TV
    assert push_transform_attribute(TransformAttribute(20, b"\xaa\xbb\xcc")) == H("00140003aabbcc")  # TLV
    assert pull_transform_attribute(Buffer(H("00140003aabbcc"))) == TransformAttribute(20, b"\xaa\xbb\xcc")
    assert AES_GCM_256.key_length == 256
    assert Transform(TRANSFORM_PRF, PRF_HMAC_SHA2_256).key_length is None


def test_notify_delete_vendor_and_ipv6_selector_bytes() -> None:
    payloads = (
        NotifyPayload(INVALID_KE_PAYLOAD, (19).to_bytes(2, "big")),
        NotifyPayload(TS_UNACCEPTABLE, b"", PROTO_ESP, H("c0ffee01")),
        DeletePayload(PROTO_IKE),
        DeletePayload(PROTO_ESP, 4, (H("c0ffee01"), H("c0ffee02"))),
        VendorIdPayload(b"tcplab"),
        TsiPayload((TrafficSelector(TS_IPV6_ADDR_RANGE, "2001:db8::1", "2001:db8::ff", 6, 443, 443),)),
    )
    first, chain = push_payload_chain(payloads)
    assert first == 41
    assert chain == H(
        "2900000a 0000 0011 0013"
        "2a00000c 03 04 0026 c0ffee01"
        "2a000008 01 00 0000"
        "2b000010 03 04 0002 c0ffee01 c0ffee02"
        "2c00000a 7463706c6162"
        "00000030 01000000 08 06 0028 01bb 01bb 20010db8000000000000000000000001 20010db80000000000000000000000ff"
    )
    assert pull_payload_chain(Buffer(chain), first) == payloads


def test_unknown_payloads_keep_their_critical_bit() -> None:
    chain = H("ce800008 cafebabe00000006 0102")  # type 200 (critical) -> type 206 (not critical)
    payloads = pull_payload_chain(Buffer(chain), 200)
    assert payloads == (UnknownPayload(200, H("cafebabe"), critical=True), UnknownPayload(206, H("0102")))
    assert push_payload_chain(payloads) == (200, chain)


def test_critical_bit_on_a_known_payload_is_ignored() -> None:
    """RFC 7296 §3.2: "MUST be ignored by the recipient if the recipient understands the payload type"."""
    assert pull_payload_chain(Buffer(H("00800008 74657374")), 43) == (VendorIdPayload(b"test"),)


def test_unknown_traffic_selector_round_trips() -> None:
    ts = UnknownTrafficSelector(10, 0, H("00112233"))
    payload = TsrPayload((ts, TrafficSelector(TS_IPV4_ADDR_RANGE, "0.0.0.0", "255.255.255.255")))
    first, chain = push_payload_chain((payload,))
    assert chain[8:16] == H("0a000008 00112233")
    assert pull_payload_chain(Buffer(chain), first) == (payload,)


def test_non_esp_marker_helpers() -> None:
    framed = add_non_esp_marker(gold("msg1"))
    assert framed[:4] == bytes(4)
    assert classify_udp_4500(framed) == "ike"
    assert strip_non_esp_marker(framed) == gold("msg1")
    assert classify_udp_4500(H("c0ffee0100000001")) == "esp"
    assert classify_udp_4500(b"\xff") == "keepalive"
    with pytest.raises(DecodeError) as exc:
        strip_non_esp_marker(H("c0ffee0100000001"))
    assert exc.value.field == "non_esp_marker"
    with pytest.raises(DecodeError):
        classify_udp_4500(b"\x00\x00")


def test_encoding_refuses_what_cannot_be_sent() -> None:
    sk = EncryptedPayload(PAYLOAD_AUTH, bytes(25))
    with pytest.raises(ValueError, match="last payload"):
        push_payload_chain((sk, VendorIdPayload(b"x")))
    with pytest.raises(ValueError, match="spi_i"):
        encode_ike_message(IkeMessage(b"short", bytes(8), IKE_SA_INIT, 0))
    with pytest.raises(ValueError, match="reserved_flags"):
        encode_ike_message(IkeMessage(bytes(8), bytes(8), IKE_SA_INIT, 0, reserved_flags=0x08))
    with pytest.raises(ValueError, match="known"):
        push_payload_chain((UnknownPayload(PAYLOAD_SK, b""),))
    with pytest.raises(ValueError, match="spi"):
        push_payload_chain((DeletePayload(PROTO_ESP, 4, (b"\x01\x02",)),))
    with pytest.raises(ValueError, match="IPv4"):
        push_payload_chain((TsiPayload((TrafficSelector(TS_IPV4_ADDR_RANGE, "::1", "::1"),)),))
    with pytest.raises(ValueError, match="at least one proposal"):
        push_payload_chain((SaPayload(()),))


# --- malformed input ----------------------------------------------------------------------------------------

HDR = "0102030405060708 0000000000000000 {np} 20 22 08 00000000 {len}"


def message_bytes(next_payload: int, body: str, length: int | None = None) -> bytes:
    raw = H(body)
    total = 28 + len(raw) if length is None else length
    return H(HDR.format(np=f"{next_payload:02x}", len=f"{total:08x}")) + raw


MALFORMED = [
    pytest.param(gold("msg1")[:20], "message_id", 20, id="truncated-header"),
    pytest.param(message_bytes(0, "", 27), "length", 24, id="length-below-header"),
    pytest.param(message_bytes(0, "", 40), "length", 24, id="length-past-data"),
    pytest.param(message_bytes(0, "00", 28), "length", 24, id="trailing-bytes"),
    pytest.param(message_bytes(43, "00000003"), "payload_length", 30, id="payload-length-below-4"),
    pytest.param(message_bytes(43, "00000009 0102"), "payload_length", 30, id="payload-past-end"),
    pytest.param(message_bytes(43, "2b000005 01"), "next_payload", 33, id="chain-ends-early"),
    pytest.param(message_bytes(43, "00000005 01 ff"), "next_payload", 33, id="bytes-after-chain"),
    pytest.param(message_bytes(46, "2b000008 00000000 00000005 01"), "next_payload", 36, id="payload-after-sk"),
    pytest.param(message_bytes(34, "00000006 0013"), "reserved", 34, id="ke-too-short"),
    pytest.param(message_bytes(41, "00000009 00 04 4004 01"), "spi", 36, id="notify-spi-truncated"),
    pytest.param(message_bytes(42, "0000000c 03 04 0002 c0ffee01"), "spi", 40, id="delete-fewer-spis"),
    pytest.param(message_bytes(42, "00000009 01 00 0000 ff"), "num_spis", 36, id="delete-extra-bytes"),
    pytest.param(message_bytes(33, "0000000c 01000008 01010000"), "last_substruc", 32, id="proposal-more-but-none"),
    pytest.param(message_bytes(33, "0000000c 05000008 01010000"), "last_substruc", 32, id="proposal-bad-substruc"),
    pytest.param(message_bytes(33, "0000000c 00000007 01010000"), "proposal_length", 34, id="proposal-length-below-8"),
    pytest.param(message_bytes(33, "0000000c 00000010 01010000"), "proposal_length", 34, id="proposal-past-end"),
    pytest.param(
        message_bytes(33, "00000014 00000010 01010002 00000008 01000014"), "num_transforms", 39, id="num-transforms"
    ),
    pytest.param(
        message_bytes(33, "00000014 00000010 01010001 07000008 01000014"), "last_substruc", 40, id="transform-substruc"
    ),
    pytest.param(
        message_bytes(33, "00000014 00000010 01010001 00000009 01000014"), "transform_length", 42, id="transform-length"
    ),
    pytest.param(
        message_bytes(33, "00000016 00000012 01010001 0000000a 01000014 000e"), "attribute_length", 50, id="tlv-short"
    ),
    pytest.param(
        message_bytes(44, "00000018 02000000 07000010 0000ffff c0000201 c0000201"), "number_of_tss", 32, id="ts-count"
    ),
    pytest.param(
        message_bytes(44, "00000018 01000000 07000011 0000ffff c0000201 c0000201"), "selector_length", 38, id="ts-len"
    ),
    pytest.param(message_bytes(44, "00000005 00"), "reserved", 33, id="ts-header-short"),
]


@pytest.mark.parametrize(("data", "field", "offset"), MALFORMED)
def test_malformed_messages_name_the_field(data: bytes, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_ike_message(data)
    assert (exc.value.field, exc.value.offset) == (field, offset), str(exc.value)


def test_nested_encrypted_payload_is_refused_inside_sk() -> None:
    with pytest.raises(DecodeError) as exc:
        pull_payload_chain(Buffer(H("00000008 00000000"), base_offset=40), PAYLOAD_SK, allow_encrypted=False)
    assert (exc.value.field, exc.value.offset) == ("next_payload", 40)


# --- Hypothesis round trips -------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
small_bytes = st.binary(max_size=40)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))  # the text inet_ntop gives

attributes = st.builds(TransformAttribute, st.integers(0, 0x7FFF), st.one_of(u16, small_bytes))
transforms = st.builds(Transform, u8, u16, st.lists(attributes, max_size=3).map(tuple))
proposals = st.builds(
    Proposal, u8, u8, st.lists(transforms, max_size=4).map(tuple), st.sampled_from([b"", bytes(4), bytes(range(8))])
)
selectors = st.one_of(
    st.builds(TrafficSelector, st.just(TS_IPV4_ADDR_RANGE), ipv4, ipv4, u8, u16, u16),
    st.builds(TrafficSelector, st.just(TS_IPV6_ADDR_RANGE), ipv6, ipv6, u8, u16, u16),
    st.builds(UnknownTrafficSelector, u8.filter(lambda t: t not in (7, 8)), u8, small_bytes),
)
selector_lists = st.lists(selectors, max_size=3).map(tuple)


@st.composite
def deletes(draw: st.DrawFn) -> DeletePayload:
    spi_size = draw(st.sampled_from([0, 4, 8]))
    spis = draw(st.lists(st.binary(min_size=spi_size, max_size=spi_size), max_size=3 if spi_size else 0))
    return DeletePayload(draw(u8), spi_size, tuple(spis))


clear_payloads = st.one_of(
    st.builds(SaPayload, st.lists(proposals, min_size=1, max_size=3).map(tuple)),
    st.builds(KePayload, u16, small_bytes),
    st.builds(IdiPayload, u8, small_bytes),
    st.builds(IdrPayload, u8, small_bytes),
    st.builds(AuthPayload, u8, small_bytes),
    st.builds(NoncePayload, small_bytes),
    st.builds(NotifyPayload, u16, small_bytes, u8, st.sampled_from([b"", bytes(4), bytes(range(8))])),
    deletes(),
    st.builds(VendorIdPayload, small_bytes),
    st.builds(TsiPayload, selector_lists),
    st.builds(TsrPayload, selector_lists),
    st.builds(UnknownPayload, st.integers(1, 255).filter(lambda t: not 33 <= t <= 46), small_bytes, st.booleans()),
)
payload_lists = st.lists(clear_payloads, max_size=6)


@st.composite
def messages(draw: st.DrawFn) -> IkeMessage:
    payloads = draw(payload_lists)
    if draw(st.booleans()):
        payloads.append(EncryptedPayload(draw(u8), draw(small_bytes)))
    return IkeMessage(
        spi_i=draw(st.binary(min_size=8, max_size=8)),
        spi_r=draw(st.binary(min_size=8, max_size=8)),
        exchange_type=draw(u8),
        message_id=draw(u32),
        payloads=tuple(payloads),
        initiator=draw(st.booleans()),
        response=draw(st.booleans()),
        higher_version=draw(st.booleans()),
        major_version=draw(st.integers(0, 15)),
        minor_version=draw(st.integers(0, 15)),
        reserved_flags=draw(st.sampled_from([0, 0x01, 0x40, 0xC7])),
    )


@given(messages())
def test_message_round_trip(message: IkeMessage) -> None:
    data = encode_ike_message(message)
    assert decode_ike_message(data) == message
    assert int.from_bytes(data[24:28], "big") == len(data)


@given(payload_lists)
def test_payload_chain_round_trip(payloads: list) -> None:
    first, chain = push_payload_chain(payloads)
    assert pull_payload_chain(Buffer(chain), first, allow_encrypted=False) == tuple(payloads)


@given(attributes)
def test_attribute_round_trip(attr: TransformAttribute) -> None:
    assert pull_transform_attribute(Buffer(push_transform_attribute(attr))) == attr


@given(st.binary(max_size=120))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        message = decode_ike_message(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data)
    else:  # reserved bits are dropped, so compare what they carry, not the bytes
        assert decode_ike_message(encode_ike_message(message)) == message


@given(messages(), st.data())
def test_truncated_messages_raise_decode_error(message: IkeMessage, data: st.DataObject) -> None:
    encoded = encode_ike_message(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        decode_ike_message(encoded[:cut])


headers = st.builds(
    IkeHeader,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    u8,
    u8,
    u32,
    st.integers(28, 0xFFFF_FFFF),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 15),
    st.integers(0, 15),
    st.sampled_from([0, 0x01, 0x02, 0x04, 0x40, 0x80, 0xC7]),
)


@given(headers)
def test_header_round_trip(header: IkeHeader) -> None:
    data = push_ike_header(header)
    assert len(data) == 28
    assert pull_ike_header(Buffer(data)) == header
