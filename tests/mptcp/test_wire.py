"""MPTCP options (kind 30): exact bytes, round trips, malformed input."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.mptcp import (
    MPTCP_KIND,
    MPTCP_RST_MIDDLEBOX_INTERFERENCE,
    AddAddr,
    AddAddrV0,
    Dss,
    MpCapableAck,
    MpCapableAckData,
    MpCapableSyn,
    MpCapableSynAck,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    MpTcpRst,
    RemoveAddr,
    UnknownMptcpOption,
    dss_length,
    from_tcp_option,
    pull_mptcp_option,
    push_mptcp_option,
    to_tcp_option,
)
from lab.wire.tcp import (
    ACK,
    SYN,
    NoOperation,
    TcpSegment,
    Timestamps,
    UnknownOption,
    decode_segment,
    encode_segment,
    pull_options,
    push_option,
)

CLIENT_KEY = 0xC8D9A211A0CE4F1B  # vectors.md §1.1, join_prio_rmaddr_fastclose
SERVER_KEY = 0x2601956E3097781E
SYN_ONLY = {"syn": True, "ack": False}
SYN_ACK = {"syn": True, "ack": True}
V0 = {"version": 0}

# (name, whole option as hex, the dataclass, how to decode it)
EXACT: list[tuple[str, str, MptcpOption, dict[str, Any]]] = [
    # vectors.md §1.5 and §1.2-1.4: what Linux 6.18 sent
    ("mp_capable_syn", "1e040101", MpCapableSyn(version=1, flags=0x01), SYN_ONLY),
    ("mp_capable_syn_checksum", "1e040181", MpCapableSyn(version=1, flags=0x81), SYN_ONLY),
    ("mp_capable_synack", "1e0c01012601956e3097781e", MpCapableSynAck(sender_key=SERVER_KEY), SYN_ACK),
    (
        "mp_capable_ack",
        "1e140101c8d9a211a0ce4f1b2601956e3097781e",
        MpCapableAck(sender_key=CLIENT_KEY, receiver_key=SERVER_KEY),
        {},
    ),
    (
        "mp_capable_ack_data_checksum",
        "1e180181293adeaa07668bfdfea1649a0d90c21d00054f0e",
        MpCapableAckData(
            sender_key=0x293ADEAA07668BFD,
            receiver_key=0xFEA1649A0D90C21D,
            data_level_length=5,
            checksum=0x4F0E,
            flags=0x81,
        ),
        {},
    ),
    ("mp_join_syn", "1e0c1005fe5009765c762bd9", MpJoinSyn(address_id=5, token=0xFE500976, nonce=0x5C762BD9), SYN_ONLY),
    (
        "mp_join_synack",
        "1e10100120dc5722142e088041aa9f54",
        MpJoinSynAck(address_id=1, truncated_hmac=bytes.fromhex("20dc5722142e0880"), nonce=0x41AA9F54),
        SYN_ACK,
    ),
    (
        "mp_join_synack_id0",
        "1e101000272fa3310fd93f62ec4fea1e",
        MpJoinSynAck(address_id=0, truncated_hmac=bytes.fromhex("272fa3310fd93f62"), nonce=0xEC4FEA1E),
        SYN_ACK,
    ),
    (
        "mp_join_ack",
        "1e181000b42f2246d092afb6ed48537aa1a7ac0778aa691a",
        MpJoinAck(hmac=bytes.fromhex("b42f2246d092afb6ed48537aa1a7ac0778aa691a")),
        {},
    ),
    ("dss_ack32", "1e082001d981330a", Dss(data_ack=0xD981330A), {}),
    ("dss_ack64", "1e0c2003673028e4d981330f", Dss(data_ack=0x673028E4D981330F, data_ack_64=True), {}),
    (
        "dss_ack32_map64",
        "1e16200dd9106fa5673028e4d981330a000000010005",
        Dss(data_ack=0xD9106FA5, data_seq=0x673028E4D981330A, data_seq_64=True, subflow_seq=1, data_level_length=5),
        {},
    ),
    (
        "dss_ack64_map64",
        "1e1a200f673028e4d981330fd8a04b3ed9106fa5000000010005",
        Dss(
            data_ack=0x673028E4D981330F,
            data_ack_64=True,
            data_seq=0xD8A04B3ED9106FA5,
            data_seq_64=True,
            subflow_seq=1,
            data_level_length=5,
        ),
        {},
    ),
    (
        "dss_data_fin",
        "1e1a201f219a837b57e0d3726851a20b896e4a83000000000001",
        Dss(
            data_ack=0x219A837B57E0D372,
            data_ack_64=True,
            data_seq=0x6851A20B896E4A83,
            data_seq_64=True,
            subflow_seq=0,
            data_level_length=1,
            data_fin=True,
        ),
        {},
    ),
    (
        "dss_checksum",
        "1e1c200fbdcc8f2e011e9f54d56d2c4e7bb69d0d00000001000521f7",
        Dss(
            data_ack=0xBDCC8F2E011E9F54,
            data_ack_64=True,
            data_seq=0xD56D2C4E7BB69D0D,
            data_seq_64=True,
            subflow_seq=1,
            data_level_length=5,
            checksum=0x21F7,
        ),
        {},
    ),
    (
        "dss_infinite_mapping",
        "1e1c200fa97994f0ff570d92a5c0586689d704b6000007d600000000",
        Dss(
            data_ack=0xA97994F0FF570D92,
            data_ack_64=True,
            data_seq=0xA5C0586689D704B6,
            data_seq_64=True,
            subflow_seq=2006,
            data_level_length=0,
            checksum=0,
        ),
        {},
    ),
    (
        "add_addr",
        "1e103001c633640214bfac77d92edbd6",
        AddAddr(address_id=1, address="198.51.100.2", truncated_hmac=bytes.fromhex("14bfac77d92edbd6")),
        {},
    ),
    ("add_addr_echo", "1e083101c6336402", AddAddr(address_id=1, address="198.51.100.2"), {}),
    (
        "add_addr_port",
        "1e123001c63364022774cf00dafbc69276ed",
        AddAddr(address_id=1, address="198.51.100.2", port=10100, truncated_hmac=bytes.fromhex("cf00dafbc69276ed")),
        {},
    ),
    ("add_addr_port_echo", "1e0a3101c63364022774", AddAddr(address_id=1, address="198.51.100.2", port=10100), {}),
    (
        "add_addr_ipv6",
        "1e1c300120010db8000200000000000000000002fc2d46dbc562d668",
        AddAddr(address_id=1, address="2001:db8:2::2", truncated_hmac=bytes.fromhex("fc2d46dbc562d668")),
        {},
    ),
    (
        "add_addr_ipv6_echo",
        "1e14310120010db8000200000000000000000002",
        AddAddr(address_id=1, address="2001:db8:2::2"),
        {},
    ),
    ("mp_prio_backup", "1e0351", MpPrio(backup=True), {}),
    ("remove_addr", "1e044001", RemoveAddr(address_ids=(1,)), {}),
    ("mp_fail", "1e0c6000a5c0586689d6fce6", MpFail(data_seq=0xA5C0586689D6FCE6), {}),
    ("mp_fastclose", "1e0c70002601956e3097781e", MpFastclose(receiver_key=SERVER_KEY), {}),
    ("mp_tcprst", "1e048000", MpTcpRst(), {}),
    # the digest's diagrams (mptcp.md §3-7), including the RFC 6824 (v0) forms
    (
        "mp_capable_v0_syn",
        "1e0c00818b734babdb535b42",
        MpCapableSyn(version=0, flags=0x81, sender_key=0x8B734BABDB535B42),
        SYN_ONLY,
    ),
    (
        "mp_capable_v0_synack",
        "1e0c0001ef15e5e081b281c8",
        MpCapableSynAck(version=0, sender_key=0xEF15E5E081B281C8),
        SYN_ACK,
    ),
    (
        "mp_capable_v0_ack",
        "1e1400018b734babdb535b42ef15e5e081b281c8",
        MpCapableAck(version=0, sender_key=0x8B734BABDB535B42, receiver_key=0xEF15E5E081B281C8),
        {},
    ),
    (
        "mp_capable_ack_data_no_checksum",
        "1e160101c8d9a211a0ce4f1b2601956e3097781e05dc",
        MpCapableAckData(sender_key=CLIENT_KEY, receiver_key=SERVER_KEY, data_level_length=1500),
        {},
    ),
    (
        "mp_join_syn_backup",
        "1e0c1102fe5009765c762bd9",
        MpJoinSyn(address_id=2, token=0xFE500976, nonce=0x5C762BD9, backup=True),
        SYN_ONLY,
    ),
    (
        "dss_map32_no_ack",
        "1e0e2004d981330a000000010005",
        Dss(data_seq=0xD981330A, subflow_seq=1, data_level_length=5),
        {},
    ),
    (
        "add_addr_ipv6_port",
        "1e1e300720010db80002000000000000000000021f900102030405060708",
        AddAddr(address_id=7, address="2001:db8:2::2", port=8080, truncated_hmac=bytes(range(1, 9))),
        {},
    ),
    (
        "add_addr_ipv6_port_echo",
        "1e16310720010db80002000000000000000000021f90",
        AddAddr(address_id=7, address="2001:db8:2::2", port=8080),
        {},
    ),
    ("add_addr_v0", "1e083402c0000201", AddAddrV0(address_id=2, address="192.0.2.1"), V0),
    ("add_addr_v0_port", "1e0a3402c00002011f90", AddAddrV0(address_id=2, address="192.0.2.1", port=8080), V0),
    (
        "add_addr_v0_ipv6",
        "1e14360320010db8000000000000000000000001",
        AddAddrV0(address_id=3, address="2001:db8::1"),
        V0,
    ),
    (
        "add_addr_v0_ipv6_port",
        "1e16360320010db80000000000000000000000011f90",
        AddAddrV0(address_id=3, address="2001:db8::1", port=8080),
        V0,
    ),
    ("remove_addr_three", "1e06400102ff", RemoveAddr(address_ids=(1, 2, 255)), {}),
    ("mp_prio_not_backup", "1e0350", MpPrio(backup=False), {}),
    ("mp_prio_v0_address", "1e045103", MpPrio(backup=True, address_id=3), V0),
    (
        "mp_tcprst_transient",
        "1e048106",
        MpTcpRst(reason=MPTCP_RST_MIDDLEBOX_INTERFERENCE, transient=True),
        {},
    ),
    ("experimental", "1e05f2abcd", UnknownMptcpOption(subtype=0xF, low_bits=2, body=b"\xab\xcd"), {}),
    ("tcprst_is_unknown_in_v0", "1e048000", UnknownMptcpOption(subtype=8, low_bits=0, body=b"\x00"), V0),
]


def option_data(hex_option: str) -> bytes:
    raw = bytes.fromhex(hex_option)
    assert raw[0] == MPTCP_KIND and raw[1] == len(raw), hex_option
    return raw[2:]


@pytest.mark.parametrize(("hex_option", "opt", "kwargs"), [e[1:] for e in EXACT], ids=[e[0] for e in EXACT])
def test_exact_bytes(hex_option: str, opt: MptcpOption, kwargs: dict[str, Any]) -> None:
    whole = bytes.fromhex(hex_option)
    data = option_data(hex_option)
    assert push_mptcp_option(opt) == data
    assert pull_mptcp_option(data, **kwargs) == opt
    assert to_tcp_option(opt) == UnknownOption(MPTCP_KIND, data)
    # through the TCP option codec, which keeps kind 30 raw
    assert push_option(to_tcp_option(opt)) == whole
    (raw,) = pull_options(whole)
    assert from_tcp_option(raw, **kwargs) == opt


def test_named_flags() -> None:
    syn = MpCapableSyn(flags=0x81)
    assert syn.checksum_required and syn.hmac_flag and not syn.extensibility and not syn.no_subflows_to_source
    assert MpCapableAck(sender_key=1, receiver_key=2, flags=0x21).no_subflows_to_source
    assert AddAddr(address_id=1, address="192.0.2.1").echo
    assert not AddAddr(address_id=1, address="192.0.2.1", truncated_hmac=bytes(8)).echo
    assert Dss(data_seq=1, data_level_length=0).is_infinite_mapping
    assert not Dss(data_seq=1, data_level_length=1).is_infinite_mapping
    assert not Dss(data_ack=1).is_infinite_mapping


def test_several_options_in_one_segment() -> None:
    # Linux sent DSS + MP_PRIO and DSS + REMOVE_ADDR in one segment; RST + MP_FASTCLOSE + MP_TCPRST
    src, dst = bytes((192, 0, 2, 1)), bytes((192, 0, 2, 2))
    dss = Dss(data_ack=0xD8A04B3ED9107B67, data_ack_64=True)
    seg = TcpSegment(
        src_port=50774,
        dst_port=5001,
        seq=1,
        ack=1,
        flags=ACK,
        window=83,
        options=(
            NoOperation(),
            NoOperation(),
            Timestamps(1, 2),
            to_tcp_option(dss),
            to_tcp_option(MpPrio(backup=True)),
        ),
    )
    decoded = decode_segment(encode_segment(seg, src, dst), src, dst)
    mptcp = [from_tcp_option(o) for o in decoded.options if isinstance(o, UnknownOption) and o.kind == MPTCP_KIND]
    assert mptcp == [dss, MpPrio(backup=True)]


def test_syn_segment_with_mp_capable() -> None:
    src, dst = bytes((192, 0, 2, 1)), bytes((192, 0, 2, 2))
    seg = TcpSegment(12345, 5001, 7, 0, SYN, 65535, options=(to_tcp_option(MpCapableSyn()),))
    decoded = decode_segment(encode_segment(seg, src, dst), src, dst)
    assert from_tcp_option(decoded.options[0], syn=True, ack=False) == MpCapableSyn()


# --- malformed input ------------------------------------------------------------------------

MALFORMED: list[tuple[str, str, dict[str, Any], str, int]] = [
    # name, data bytes (after kind/length) as hex, kwargs, field, offset (from the kind byte)
    ("empty", "", {}, "subtype", 2),
    ("too_long", "20" + "00" * 38, {}, "length", 1),
    ("mp_capable_v1_13", "0101" + "00" * 9, {}, "length", 1),
    ("mp_capable_v1_23", "0101" + "00" * 19, {}, "length", 1),
    ("mp_capable_v0_syn_without_key", "0081", SYN_ONLY, "length", 1),
    ("mp_capable_v0_with_data", "0081" + "00" * 18, {}, "length", 1),
    ("mp_join_13", "1000" + "00" * 9, {}, "length", 1),
    ("mp_join_20", "1000" + "00" * 16, {}, "length", 1),
    ("dss_flags_only", "20", {}, "flags", 3),
    ("dss_ack_missing", "2001", {}, "length", 1),
    ("dss_ack64_as_32", "2003d981330a", {}, "length", 1),
    ("dss_mapping_short", "2004" + "00" * 9, {}, "length", 1),
    ("dss_mapping_odd", "2004" + "00" * 11, {}, "length", 1),
    ("dss_mapping_two_extra", "2004" + "00" * 14, {}, "length", 1),
    ("add_addr_12", "3001" + "00" * 8, {}, "length", 1),
    ("add_addr_hmac_with_echo", "3101c633640214bfac77d92edbd6", {}, "echo", 2),
    ("add_addr_echo_without_e", "3001c6336402", {}, "echo", 2),
    ("add_addr_v0_ipver_5", "3501c6336402", V0, "ip_version", 2),
    ("add_addr_v0_ipv6_in_8", "3601c6336402", V0, "ip_version", 2),
    ("add_addr_v0_with_hmac", "3401c633640214bfac77d92edbd6", V0, "length", 1),
    ("remove_addr_empty", "40", {}, "length", 1),
    ("mp_prio_v1_with_address", "5103", {}, "length", 1),
    ("mp_prio_v0_5", "510300", V0, "length", 1),
    ("mp_fail_11", "6000" + "00" * 7, {}, "length", 1),
    ("mp_fastclose_13", "7000" + "00" * 9, {}, "length", 1),
    ("mp_tcprst_3", "80", {}, "length", 1),
    ("mp_tcprst_5", "800000", {}, "length", 1),
]


@pytest.mark.parametrize(
    ("data", "kwargs", "field", "offset"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_names_field_and_offset(data: str, kwargs: dict[str, Any], field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        pull_mptcp_option(bytes.fromhex(data), **kwargs)
    assert (info.value.field, info.value.offset) == (field, offset)


def test_offsets_follow_base_offset() -> None:
    # an option whose kind byte sits at byte 32 of the TCP header has its data at 34
    with pytest.raises(DecodeError) as info:
        pull_mptcp_option(bytes.fromhex("3101c633640214bfac77d92edbd6"), base_offset=34)
    assert (info.value.field, info.value.offset) == ("echo", 34)
    with pytest.raises(DecodeError) as info:
        pull_mptcp_option(bytes.fromhex("2001"), base_offset=34)
    assert (info.value.field, info.value.offset) == ("length", 33)


def test_malformed_mptcp_inside_a_valid_tcp_segment() -> None:
    # the TCP codec keeps the option raw; the MPTCP codec rejects it
    (raw,) = pull_options(bytes.fromhex("1e042001"))
    with pytest.raises(DecodeError) as info:
        from_tcp_option(raw)
    assert info.value.field == "length"


BAD_OBJECTS: list[tuple[str, Any, type[Exception]]] = [
    ("v1_syn_with_key", MpCapableSyn(version=1, sender_key=1), ValueError),
    ("v0_syn_without_key", MpCapableSyn(version=0), ValueError),
    ("v0_ack_data", MpCapableAckData(version=0, sender_key=1, receiver_key=2, data_level_length=3), ValueError),
    ("version_16", MpCapableSynAck(version=16, sender_key=1), ValueError),
    ("flags_256", MpCapableSynAck(flags=256, sender_key=1), ValueError),
    ("key_65_bits", MpCapableAck(sender_key=1 << 64, receiver_key=0), ValueError),
    ("join_short_hmac", MpJoinSynAck(address_id=0, truncated_hmac=bytes(7), nonce=0), ValueError),
    ("join_full_sha256", MpJoinAck(hmac=bytes(32)), ValueError),
    ("join_token_33_bits", MpJoinSyn(address_id=0, token=1 << 32, nonce=0), ValueError),
    ("join_reserved", MpJoinSyn(address_id=0, token=0, nonce=0, reserved=8), ValueError),
    ("dss_ack_needs_64", Dss(data_ack=1 << 32), ValueError),
    ("dss_seq_needs_64", Dss(data_seq=1 << 32), ValueError),
    ("dss_ssn_without_mapping", Dss(subflow_seq=1), ValueError),
    ("dss_checksum_without_mapping", Dss(checksum=1), ValueError),
    ("dss_reserved", Dss(reserved=128), ValueError),
    ("add_addr_bad_address", AddAddr(address_id=1, address="example.org"), ValueError),
    ("add_addr_port", AddAddr(address_id=1, address="192.0.2.1", port=1 << 16), ValueError),
    ("add_addr_hmac_len", AddAddr(address_id=1, address="192.0.2.1", truncated_hmac=bytes(32)), ValueError),
    ("add_addr_v0_id", AddAddrV0(address_id=256, address="192.0.2.1"), ValueError),
    ("remove_addr_none", RemoveAddr(address_ids=()), ValueError),
    ("remove_addr_too_many", RemoveAddr(address_ids=tuple(range(38))), ValueError),
    ("mp_prio_id", MpPrio(address_id=256), ValueError),
    ("mp_fail_65_bits", MpFail(data_seq=1 << 64), ValueError),
    ("mp_fastclose_reserved", MpFastclose(receiver_key=0, reserved=1 << 12), ValueError),
    ("tcprst_reason", MpTcpRst(reason=256), ValueError),
    ("unknown_subtype", UnknownMptcpOption(subtype=16, low_bits=0), ValueError),
    ("unknown_too_long", UnknownMptcpOption(subtype=15, low_bits=0, body=bytes(38)), ValueError),
    ("not_an_option", "MP_CAPABLE", TypeError),
]


@pytest.mark.parametrize(("opt", "error"), [b[1:] for b in BAD_OBJECTS], ids=[b[0] for b in BAD_OBJECTS])
def test_push_rejects_what_cannot_be_sent(opt: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        push_mptcp_option(opt)


def test_from_tcp_option_needs_kind_30() -> None:
    with pytest.raises(ValueError):
        from_tcp_option(UnknownOption(69, b"\x00"))


# --- round trips under Hypothesis -------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
reserved3 = st.integers(0, 7)
reserved12 = st.integers(0, 0xFFF)
v1_versions = st.integers(1, 15)
any_versions = st.integers(0, 15)
ipv4 = st.binary(min_size=4, max_size=4).map(lambda b: socket.inet_ntop(socket.AF_INET, b))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))
ports = st.none() | u16


@st.composite
def dss_options(draw: st.DrawFn) -> Dss:
    data_ack_64, data_seq_64 = draw(st.booleans()), draw(st.booleans())
    data_ack = draw(st.none() | (u64 if data_ack_64 else u32))
    data_seq = draw(st.none() | (u64 if data_seq_64 else u32))
    mapping = {}
    if data_seq is not None:
        mapping = {"subflow_seq": draw(u32), "data_level_length": draw(u16), "checksum": draw(st.none() | u16)}
    return Dss(
        data_ack=data_ack,
        data_seq=data_seq,
        data_fin=draw(st.booleans()),
        data_ack_64=data_ack_64,
        data_seq_64=data_seq_64,
        reserved=draw(st.integers(0, 0x7F)),
        **mapping,
    )


def decode_kwargs(opt: MptcpOption) -> dict[str, Any]:
    """How a receiver would decode ``opt``: the segment flags and connection version it comes with."""
    if isinstance(opt, MpCapableSyn):
        return SYN_ONLY
    if isinstance(opt, MpCapableSynAck | MpJoinSynAck):
        return SYN_ACK
    if isinstance(opt, AddAddrV0) or (isinstance(opt, MpPrio) and opt.address_id is not None):
        return V0
    return {}


mptcp_options: st.SearchStrategy[MptcpOption] = st.one_of(
    st.builds(MpCapableSyn, version=v1_versions, flags=u8, sender_key=st.none()),
    st.builds(MpCapableSyn, version=st.just(0), flags=u8, sender_key=u64),
    st.builds(MpCapableSynAck, version=any_versions, flags=u8, sender_key=u64),
    st.builds(MpCapableAck, version=any_versions, flags=u8, sender_key=u64, receiver_key=u64),
    st.builds(
        MpCapableAckData,
        version=v1_versions,
        flags=u8,
        sender_key=u64,
        receiver_key=u64,
        data_level_length=u16,
        checksum=st.none() | u16,
    ),
    st.builds(MpJoinSyn, address_id=u8, token=u32, nonce=u32, backup=st.booleans(), reserved=reserved3),
    st.builds(
        MpJoinSynAck,
        address_id=u8,
        truncated_hmac=st.binary(min_size=8, max_size=8),
        nonce=u32,
        backup=st.booleans(),
        reserved=reserved3,
    ),
    st.builds(MpJoinAck, hmac=st.binary(min_size=20, max_size=20), reserved=reserved12),
    dss_options(),
    st.builds(
        AddAddr,
        address_id=u8,
        address=ipv4 | ipv6,
        port=ports,
        truncated_hmac=st.none() | st.binary(min_size=8, max_size=8),
        reserved=reserved3,
    ),
    st.builds(AddAddrV0, address_id=u8, address=ipv4 | ipv6, port=ports),
    st.builds(RemoveAddr, address_ids=st.lists(u8, min_size=1, max_size=37).map(tuple), reserved=st.integers(0, 15)),
    st.builds(MpPrio, backup=st.booleans(), address_id=st.none() | u8, reserved=reserved3),
    st.builds(MpFail, data_seq=u64, reserved=reserved12),
    st.builds(MpFastclose, receiver_key=u64, reserved=reserved12),
    st.builds(MpTcpRst, reason=u8, transient=st.booleans(), reserved=reserved3),
    st.builds(UnknownMptcpOption, subtype=st.integers(9, 15), low_bits=st.integers(0, 15), body=st.binary(max_size=37)),
)


@settings(max_examples=400)
@given(mptcp_options)
def test_decode_encode_round_trip(opt: MptcpOption) -> None:
    data = push_mptcp_option(opt)
    assert 1 <= len(data) <= 38
    assert pull_mptcp_option(data, **decode_kwargs(opt)) == opt
    assert from_tcp_option(to_tcp_option(opt), **decode_kwargs(opt)) == opt


DECODE_CONTEXTS = [
    {"version": version, "syn": syn, "ack": ack}
    for version in (None, 0, 1)
    for syn, ack in ((False, True), (True, False), (True, True))
]


@st.composite
def option_shaped_data(draw: st.DrawFn) -> bytes:
    """Data bytes whose subtype and length are often those of a real form, the rest random."""
    first = draw(st.integers(0, 0x8F) | u8)  # mostly the subtypes this codec knows
    if first >> 4 == 2:  # DSS: a length that fits the flags most of the time
        flags = draw(u8)
        length = draw(st.sampled_from([dss_length(flags, checksum=False), dss_length(flags, checksum=True)]))
        length = draw(st.just(length) | st.integers(3, 40))
        return (
            bytes((first, flags)) + draw(st.binary(min_size=length - 4, max_size=length - 4))
            if length >= 4
            else bytes((first,))
        )
    length = draw(st.sampled_from([3, 4, 8, 10, 12, 16, 18, 20, 22, 24, 28, 30]) | st.integers(3, 40))
    return bytes((first,)) + draw(st.binary(min_size=length - 3, max_size=length - 3))


@settings(max_examples=600)
@given(option_shaped_data())
def test_whatever_decodes_encodes_to_the_same_bytes(data: bytes) -> None:
    for kwargs in DECODE_CONTEXTS:
        try:
            opt = pull_mptcp_option(data, **kwargs)
        except DecodeError as exc:
            assert exc.field and 1 <= exc.offset <= 2 + len(data)
            continue
        assert push_mptcp_option(opt) == data, (kwargs, opt)


@settings(max_examples=300)
@given(st.binary(max_size=45))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for kwargs in DECODE_CONTEXTS:
        try:
            pull_mptcp_option(data, **kwargs)
        except DecodeError:
            pass
