"""MPTCP tokens, IDSNs, HMACs and DSS checksums against the known answers of spec/vectors.md §1-3."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest

from lab.mptcp.crypto import (
    add_addr_hmac,
    dss_checksum,
    dss_checksum_ok,
    key_idsn,
    key_token,
    mp_join_ack_hmac,
    mp_join_hmac,
    mp_join_synack_hmac,
    mptcp_hmac,
)
from lab.wire.mptcp import (
    AddAddr,
    Dss,
    MpCapableAckData,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    pull_mptcp_option,
    push_mptcp_option,
)


def h(text: str) -> int:
    return int(text, 16)


def option_data(hex_option: str) -> bytes:
    """The data bytes (after kind and length) of a whole option written as hex."""
    raw = bytes.fromhex(hex_option)
    assert raw[0] == 30 and raw[1] == len(raw)
    return raw[2:]


# --- §1.1 key -> token, IDSN (SHA-256), Linux 6.18 on the wire -----------------------------

V1_KEYS = [  # capture, role, key, token, IDSN, kernel MPTCP_INFO token (None: not read)
    ("join_prio_rmaddr_fastclose", "client", "c8d9a211a0ce4f1b", "26b52c2c", "673028e4d9813309", 0x26B52C2C),
    ("join_prio_rmaddr_fastclose", "server", "2601956e3097781e", "fe500976", "d8a04b3ed9106fa4", 0xFE500976),
    ("checksum_mpc_data", "client", "293adeaa07668bfd", "51a631fc", "bdcc8f2e011e9f4e", None),
    ("checksum_mpc_data", "server", "fea1649a0d90c21d", "baa351ab", "d56d2c4e7bb69d0c", 0xBAA351AB),
    ("addaddr_port", "client", "3675cd1e9a0940ce", "a9d5cb90", "6851a20b896e4a78", None),
    ("addaddr_port", "server", "302000432282f4d2", "98fa1645", "219a837b57e0d367", 0x98FA1645),
    ("ipv6_addaddr", "client", "22930682e2f4ae46", "b22b5f56", "b7bb3f88b810eafe", None),
    ("ipv6_addaddr", "server", "4d4a8216cbe70704", "317f96ce", "50a69b55cf22b343", 0x317F96CE),
    ("mpfail_infinite_mapping", "client", "6908c3e28c0c87f5", "92ec53c6", "a5c0586689d6fce0", None),
    ("mpfail_infinite_mapping", "server", "4a31f1f7a0d8d3d6", "708ff305", "a97994f0ff5705bc", 0x708FF305),
]


@pytest.mark.parametrize(("capture", "role", "key", "token", "idsn", "kernel_token"), V1_KEYS)
def test_v1_token_and_idsn(capture: str, role: str, key: str, token: str, idsn: str, kernel_token: int | None) -> None:
    assert key_token(h(key)) == h(token)
    assert key_idsn(h(key)) == h(idsn)
    assert key_token(h(key), version=1) == h(token)
    if kernel_token is not None:
        assert key_token(h(key)) == kernel_token


@pytest.mark.parametrize(
    ("key", "token", "idsn"),
    [  # the earlier run, as tshark and MPTCP_INFO printed them (decimal)
        (8801342109534243907, 1540622359, 7829087986283189471),
        (16176846320119825496, 851657804, 13900165465447652761),
    ],
)
def test_v1_token_and_idsn_decimal(key: int, token: int, idsn: int) -> None:
    assert key_token(key) == token
    assert key_idsn(key) == idsn


def test_first_data_sequence_number_is_idsn_plus_one() -> None:
    # the kernel's mptcpi_write_seq before the first send, and the DSN of the first mapping
    assert key_idsn(h("c8d9a211a0ce4f1b")) + 1 == 7435487948155466506 == h("673028e4d981330a")


# --- §1.2 MP_JOIN HMAC-SHA256 (A = joining client, B = server) -----------------------------

JOINS = [  # KeyA, KeyB, R_A, R_B, HMAC_B (SYN/ACK, by B), HMAC_A (third ACK, by A)
    (
        "c8d9a211a0ce4f1b",
        "2601956e3097781e",
        "5c762bd9",
        "41aa9f54",
        "20dc5722142e0880d5c82907fa2b5f8c79b263e5fd1fa98a0e85940b9d9bd329",
        "b42f2246d092afb6ed48537aa1a7ac0778aa691ad9078c01a472ff0a0d9e1262",
    ),
    (
        "c8d9a211a0ce4f1b",
        "2601956e3097781e",
        "5db54b20",
        "ec4fea1e",
        "272fa3310fd93f624dcaa86cbaa0ac2dc4aadefcb26275e58c9e8699437ad527",
        "c2baf6bdc3d726d2264e1ce27275e0dd17387403fea27a6ff61cc1cf6d0f659e",
    ),
    (
        "3675cd1e9a0940ce",
        "302000432282f4d2",
        "299e6e23",
        "73aec070",
        "8d0b3b27a148004f889afc7d0e1c5b16802fbb4f7e078b1ee2ef608b39f41a1d",
        "db66fb01e403d6ea1a1272eb12ea491bd8ee8e388e43efdd58c9686d0ee63c81",
    ),
    (
        "22930682e2f4ae46",
        "4d4a8216cbe70704",
        "91539d28",
        "7f63da0d",
        "f48c75ba71a1736008d2e0ed8480f533c6df7c978e6972f5730800f9222cae0a",
        "bb1ae7260808ab6d62017f3eee028e4f05b412fdce57fda263b010e7d67de0e1",
    ),
]


@pytest.mark.parametrize(("key_a", "key_b", "r_a", "r_b", "hmac_b", "hmac_a"), JOINS, ids=["J1", "J2", "J3", "J4"])
def test_mp_join_hmacs(key_a: str, key_b: str, r_a: str, r_b: str, hmac_b: str, hmac_a: str) -> None:
    ka, kb, ra, rb = h(key_a), h(key_b), h(r_a), h(r_b)
    assert mp_join_hmac(kb, ka, rb, ra) == bytes.fromhex(hmac_b)
    assert mp_join_hmac(ka, kb, ra, rb) == bytes.fromhex(hmac_a)
    assert mp_join_synack_hmac(kb, ka, rb, ra) == bytes.fromhex(hmac_b)[:8]  # leftmost 64 bits
    assert mp_join_ack_hmac(ka, kb, ra, rb) == bytes.fromhex(hmac_a)[:20]  # leftmost 160 bits
    # the order matters: swapping keys or nonces gives another MAC
    assert mp_join_hmac(ka, kb, rb, ra) != bytes.fromhex(hmac_a)
    assert mp_join_hmac(kb, ka, ra, rb) != bytes.fromhex(hmac_a)


def test_mp_join_j1_wire_bytes() -> None:
    ka, kb, ra, rb = h("c8d9a211a0ce4f1b"), h("2601956e3097781e"), h("5c762bd9"), h("41aa9f54")
    syn = pull_mptcp_option(option_data("1e0c1005fe5009765c762bd9"), syn=True, ack=False)
    assert syn == MpJoinSyn(address_id=5, token=key_token(kb), nonce=ra)  # the receiver's token
    synack = pull_mptcp_option(option_data("1e10100120dc5722142e088041aa9f54"), syn=True)
    assert synack == MpJoinSynAck(address_id=1, truncated_hmac=mp_join_synack_hmac(kb, ka, rb, ra), nonce=rb)
    ack = pull_mptcp_option(option_data("1e181000b42f2246d092afb6ed48537aa1a7ac0778aa691a"))
    assert ack == MpJoinAck(hmac=mp_join_ack_hmac(ka, kb, ra, rb))


# --- §1.3 ADD_ADDR HMAC-SHA256 (sender = server; rightmost 64 bits) ------------------------

ADD_ADDRS = [  # sender key, receiver key, id, address, port, full HMAC, option, echo
    (
        "2601956e3097781e",
        "c8d9a211a0ce4f1b",
        1,
        "198.51.100.2",
        None,
        "0ec399b192a2851739f1e42f8aef247d1581da8b2996bb4714bfac77d92edbd6",
        "1e103001c633640214bfac77d92edbd6",
        "1e083101c6336402",
    ),
    (
        "302000432282f4d2",
        "3675cd1e9a0940ce",
        1,
        "198.51.100.2",
        10100,
        "de6eb4d0844ef19e467f3e8ac685dfcbce28b963166dfca6cf00dafbc69276ed",
        "1e123001c63364022774cf00dafbc69276ed",
        "1e0a3101c63364022774",
    ),
    (
        "4d4a8216cbe70704",
        "22930682e2f4ae46",
        1,
        "2001:db8:2::2",
        None,
        "8536c231498da63eb2ab24a4ff79c03fa0d24276e909e94afc2d46dbc562d668",
        "1e1c300120010db8000200000000000000000002fc2d46dbc562d668",
        "1e14310120010db8000200000000000000000002",
    ),
]


@pytest.mark.parametrize(
    ("sender", "receiver", "address_id", "address", "port", "full", "option", "echo"), ADD_ADDRS, ids=["A1", "A2", "A3"]
)
def test_add_addr_hmac(
    sender: str, receiver: str, address_id: int, address: str, port: int | None, full: str, option: str, echo: str
) -> None:
    message = bytes([address_id]) + bytes.fromhex(option)[4:-8]  # id, address, port as on the wire
    if port is None:
        message += b"\x00\x00"  # absent port: two zero bytes in the message
    assert mptcp_hmac(h(sender), h(receiver), message) == bytes.fromhex(full)
    truncated = add_addr_hmac(h(sender), h(receiver), address_id, address, port)
    assert truncated == bytes.fromhex(full)[-8:]  # the rightmost 64 bits, unlike MP_JOIN
    announced = AddAddr(address_id=address_id, address=address, port=port, truncated_hmac=truncated)
    assert push_mptcp_option(announced) == option_data(option)
    assert pull_mptcp_option(option_data(option)) == announced
    echoed = AddAddr(address_id=address_id, address=address, port=port)
    assert echoed.echo and push_mptcp_option(echoed) == option_data(echo)
    assert pull_mptcp_option(option_data(echo)) == echoed


# --- §1.4 DSS checksum ------------------------------------------------------------------------

DSS_CHECKSUMS = [  # DSN (64 bits), SSN, Data-Level Length, payload, checksum
    ("bdcc8f2e011e9f4f", 1, 5, "4141414141", 0x4F0E),  # checksum_mpc_data f4: MP_CAPABLE + data
    ("d56d2c4e7bb69d0d", 1, 5, "4141414141", 0x21F7),
    ("bdcc8f2e011e9f54", 6, 5, "4141414141", 0x4F04),
    ("d56d2c4e7bb69d12", 6, 5, "4141414141", 0x21ED),
    ("bdcc8f2e011ea729", 0, 1, "", 0x0ABC),  # DATA_FIN alone
    ("d56d2c4e7bb6a4e7", 0, 1, "", 0xDDA4),
    ("a5c0586689d6fce1", 1, 5, "4141414141", 0xB797),  # mpfail f4: MP_CAPABLE + data
    ("a97994f0ff5705bd", 1, 5, "4141414141", 0xF8F7),
]


@pytest.mark.parametrize(("dsn", "ssn", "length", "payload", "checksum"), DSS_CHECKSUMS)
def test_dss_checksum(dsn: str, ssn: int, length: int, payload: str, checksum: int) -> None:
    data = bytes.fromhex(payload)
    assert dss_checksum(h(dsn), ssn, length, data) == checksum
    assert dss_checksum_ok(h(dsn), ssn, length, data, checksum)
    assert not dss_checksum_ok(h(dsn), ssn, length, data, checksum ^ 0x0100)
    if data:
        assert not dss_checksum_ok(h(dsn), ssn, length, b"B" + data[1:], checksum)  # a rewritten byte


def test_dss_checksum_uses_the_64_bit_dsn() -> None:
    # the mapping in f6 is sent with a 64-bit DSN; the low 32 bits alone give another sum
    assert dss_checksum(h("d56d2c4e7bb69d0d"), 1, 5, b"AAAAA") == 0x21F7
    assert dss_checksum(h("7bb69d0d"), 1, 5, b"AAAAA") != 0x21F7


@pytest.mark.parametrize(
    ("option", "payload"),
    [
        ("1e180181293adeaa07668bfdfea1649a0d90c21d00054f0e", "4141414141"),
        ("1e1c200fbdcc8f2e011e9f54d56d2c4e7bb69d0d00000001000521f7", "4141414141"),
        ("1e1c201fd56d2c4e7bb6a4e7bdcc8f2e011ea7290000000000010abc", ""),
    ],
    ids=["mp_capable_data", "dss", "data_fin"],
)
def test_dss_checksum_of_full_options(option: str, payload: str) -> None:
    opt = pull_mptcp_option(option_data(option))
    if isinstance(opt, MpCapableAckData):  # implicit mapping: DSN = client IDSN + 1, SSN 1
        data_seq, subflow_seq = key_idsn(opt.sender_key) + 1, 1
    else:
        assert isinstance(opt, Dss) and opt.data_seq_64
        data_seq, subflow_seq = opt.data_seq, opt.subflow_seq
    assert opt.checksum is not None
    assert dss_checksum(data_seq, subflow_seq, opt.data_level_length, bytes.fromhex(payload)) == opt.checksum


def test_infinite_mapping_carries_a_zero_checksum() -> None:
    # mpfail f13: DSN a5c0586689d704b6, SSN 2006, Data-Level Length 0, checksum 0 by rule
    opt = pull_mptcp_option(option_data("1e1c200fa97994f0ff570d92a5c0586689d704b6000007d600000000"))
    assert opt == Dss(
        data_ack=h("a97994f0ff570d92"),
        data_ack_64=True,
        data_seq=h("a5c0586689d704b6"),
        data_seq_64=True,
        subflow_seq=2006,
        data_level_length=0,
        checksum=0,
    )
    assert opt.is_infinite_mapping


# --- §2 v0 token (SHA-1), Wireshark via mptcpanalyzer ---------------------------------------

V0_KEYS = [  # key (decimal, hex), token (decimal, hex), IDSN (DERIVED)
    (10048458395084872514, "8b734babdb535b42", 2846245513, "a9a64289", "041c7f8516ac8c96"),
    (17227928701987094984, "ef15e5e081b281c8", 4093186044, "f3f90ffc", "96ac74e760b22d08"),
    (14803550490012999960, "cd70c6bcf3c8e118", 1015310287, "3c8467cf", "b89400a5cfc6f2c8"),
    (2708191410426849018, "25956dbd3a41a6fa", 3188734930, "be103bd2", "56ae471bb3e04029"),
]


@pytest.mark.parametrize(("key", "key_hex", "token", "token_hex", "idsn"), V0_KEYS)
def test_v0_token(key: int, key_hex: str, token: int, token_hex: str, idsn: str) -> None:
    assert key == h(key_hex) and token == h(token_hex)
    assert key_token(key, version=0) == token
    assert key_idsn(key, version=0) == h(idsn)  # DERIVED: SHA-1(key)[12:20]
    assert key_token(key, version=1) != token  # not a SHA-256 token: the hash follows the version


def test_v0_join_hmac_is_full_hmac_sha1() -> None:
    # DERIVED (no v0 peer here): HMAC-SHA1 with the same key and message order as v1
    ka, kb, ra, rb = h("8b734babdb535b42"), h("ef15e5e081b281c8"), 0x01020304, 0x05060708
    expected = hmac.new(bytes.fromhex("8b734babdb535b42ef15e5e081b281c8"), bytes.fromhex("0102030405060708"), "sha1")
    assert mp_join_hmac(ka, kb, ra, rb, version=0) == expected.digest()
    assert mp_join_ack_hmac(ka, kb, ra, rb, version=0) == expected.digest()  # 160 bits: all of it
    assert mp_join_synack_hmac(ka, kb, ra, rb, version=0) == expected.digest()[:8]


# --- §3 Linux KUnit net/mptcp/crypto_test.c (the trap: ASCII, not decoded hex) ---------------

KUNIT = [  # .key, .msg, .result exactly as the C strings
    ("0b0b0b0b0b0b0b0b", "48692054", "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa"),
    ("aaaaaaaaaaaaaaaa", "dddddddd", "2c5e219164ff1dca1c4a92318d847bb6b9d44492984e1eb71aff9022f71046e9"),
    ("0102030405060708", "cdcdcdcd", "e73b9ba9969969cefb04aa0d6df18ec2fcc075b6f23b4d8c4da736a5dbbc6e7d"),
]


@pytest.mark.parametrize(("key", "msg", "result"), KUNIT)
def test_kunit_vectors(key: str, msg: str, result: str) -> None:
    # the test reads key1/key2 and nonce1/nonce2 straight from the strings' ASCII bytes
    ascii_key, ascii_msg = key.encode(), msg.encode()
    key1, key2 = int.from_bytes(ascii_key[:8], "big"), int.from_bytes(ascii_key[8:], "big")
    nonce1, nonce2 = int.from_bytes(ascii_msg[:4], "big"), int.from_bytes(ascii_msg[4:], "big")
    assert mptcp_hmac(key1, key2, ascii_msg) == bytes.fromhex(result)
    assert mp_join_hmac(key1, key2, nonce1, nonce2) == bytes.fromhex(result)
    # the trap: decoding the hex strings first gives a different MAC
    decoded = bytes.fromhex(key)
    assert mptcp_hmac(int.from_bytes(decoded, "big"), 0, bytes.fromhex(msg)) != bytes.fromhex(result)
    assert hmac.new(decoded, bytes.fromhex(msg), hashlib.sha256).digest() != bytes.fromhex(result)


# --- arguments out of range ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: key_token(1, version=2),
        lambda: key_token(-1),
        lambda: key_idsn(1 << 64),
        lambda: mptcp_hmac(1, 1 << 64, b""),
        lambda: mp_join_hmac(1, 2, 1 << 32, 0),
        lambda: mp_join_hmac(1, 2, 3, 4, version=7),
        lambda: add_addr_hmac(1, 2, 256, "192.0.2.1", None),
        lambda: add_addr_hmac(1, 2, 1, "192.0.2.1", 70000),
        lambda: add_addr_hmac(1, 2, 1, "not an address", None),
        lambda: dss_checksum(1 << 64, 0, 0),
        lambda: dss_checksum(0, 0, 1 << 16),
    ],
)
def test_bad_arguments_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
