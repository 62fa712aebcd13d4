"""Multipath TCP options (TCP option kind 30): RFC 8684 (MPTCP v1) and RFC 6824 (v0).

``lab.wire.tcp`` keeps a kind-30 option as ``UnknownOption(kind=30, data=...)``;
``pull_mptcp_option`` turns its ``data`` (everything after the kind and length
bytes) into one frozen dataclass per option form, and ``push_mptcp_option``
turns the dataclass back into the same bytes. ``to_tcp_option`` and
``from_tcp_option`` wrap the two for use with ``TcpSegment.options``.

Which form a kind-30 option is follows from its subtype and its length, as the
RFCs lay them out:

* MP_CAPABLE: from its own version field and its length. Version 1 (RFC 8684
  §3.1): 4 = SYN, 12 = SYN/ACK, 20 = third ACK, 22/24 = ACK with data (with the
  checksum when 24). Version 0 (RFC 6824 §3.1): 12 = SYN or SYN/ACK (the same
  layout; the ``syn``/``ack`` flags of the segment pick the class), 20 = ACK.
* MP_JOIN (§3.2): 12 = SYN, 16 = SYN/ACK, 24 = third ACK.
* DSS (§3.3): the flags byte says which fields follow; the checksum is there
  exactly when two more bytes are.
* ADD_ADDR: v1 (RFC 8684 §3.4.1) by length: address family, port and HMAC
  (8/10/20/22 without HMAC, i.e. echoes; 16/18/28/30 with); the E flag must agree.
  v0 (RFC 6824 §3.4.1) has an IPVer nibble instead and never an HMAC.
* MP_PRIO: 3 bytes in v1 (RFC 8684 §3.3.8); 3 or 4 (optional Address ID) in v0.

The ``version`` argument is the MPTCP version of the connection: 0 selects the
RFC 6824 layouts of ADD_ADDR and MP_PRIO and makes subtype 0x8 (MP_TCPRST, v1
only) unknown; ``None`` (not yet negotiated) and 1 select RFC 8684. MP_CAPABLE
always follows its own version field.

Bits the RFCs reserve are kept in a ``reserved`` field, so that re-encoding a
decoded option reproduces its bytes exactly. Keys, tokens, nonces and sequence
numbers are integers; HMACs are bytes; addresses are text, as in ``lab.wire.ip``.
DecodeError offsets count from the option's kind byte (the numbering of the RFC
diagrams: length at 1, subtype at 2) unless ``base_offset`` moves them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from lab.errors import DecodeError
from lab.wire.buffer import Buffer, Writer, bits
from lab.wire.tcp import UnknownOption

_T = TypeVar("_T")

MPTCP_KIND = 30  # RFC 8684 §3 (IANA TCP option kind "Multipath TCP")
MAX_DATA_LEN = 38  # a TCP option is at most 40 bytes (RFC 9293 §3.1), 2 of them kind and length

# Subtypes: the high nibble of byte 2 (RFC 8684 §3, IANA "MPTCP Option Subtypes")
MP_CAPABLE = 0x0  # RFC 8684 §3.1, RFC 6824 §3.1
MP_JOIN = 0x1  # RFC 8684 §3.2
DSS = 0x2  # RFC 8684 §3.3
ADD_ADDR = 0x3  # RFC 8684 §3.4.1, RFC 6824 §3.4.1
REMOVE_ADDR = 0x4  # RFC 8684 §3.4.2
MP_PRIO = 0x5  # RFC 8684 §3.3.8, RFC 6824 §3.3.8
MP_FAIL = 0x6  # RFC 8684 §3.7
MP_FASTCLOSE = 0x7  # RFC 8684 §3.5
MP_TCPRST = 0x8  # RFC 8684 §3.6 (v1 only)
MP_EXPERIMENTAL = 0xF  # RFC 8684 IANA registry: reserved for private use

# MP_CAPABLE flags byte (RFC 8684 §3.1; A and B as in RFC 6824 §3.1)
MP_CAPABLE_CHECKSUM_REQUIRED = 0x80  # "A"
MP_CAPABLE_EXTENSIBILITY = 0x40  # "B"
MP_CAPABLE_NO_SUBFLOWS_TO_SOURCE = 0x20  # "C", v1: no new subflows to this subflow's source address/port
MP_CAPABLE_HMAC_SHA256 = 0x01  # "H" in v1 (RFC 8684 §3.1)
MP_CAPABLE_HMAC_SHA1 = 0x01  # "H" in v0 (RFC 6824 §3.1): the only crypto bit (C..H) it defines

# MP_CAPABLE lengths (whole option)
MP_CAPABLE_SYN_LEN = 4  # v1 SYN: no key (RFC 8684 §3.1)
MP_CAPABLE_KEY_LEN = 12  # v1 SYN/ACK; v0 SYN and SYN/ACK: sender's key
MP_CAPABLE_ACK_LEN = 20  # third ACK: sender's and receiver's keys
MP_CAPABLE_DATA_LEN = 22  # v1 ACK with data: keys + Data-Level Length
MP_CAPABLE_DATA_CSUM_LEN = 24  # ... + checksum

# MP_JOIN (RFC 8684 §3.2)
MP_JOIN_BACKUP = 0x01  # "B" in byte 2
MP_JOIN_SYN_LEN = 12
MP_JOIN_SYNACK_LEN = 16
MP_JOIN_ACK_LEN = 24
MP_JOIN_TRUNCATED_HMAC_LEN = 8  # SYN/ACK: leftmost 64 bits
MP_JOIN_HMAC_LEN = 20  # third ACK: 160 bits

# DSS flags byte (RFC 8684 §3.3)
DSS_DATA_ACK = 0x01  # "A": Data ACK present
DSS_DATA_ACK_64 = 0x02  # "a": Data ACK is 8 octets
DSS_MAPPING = 0x04  # "M": DSN, SSN, Data-Level Length (and checksum) present
DSS_DATA_SEQ_64 = 0x08  # "m": DSN is 8 octets
DSS_DATA_FIN = 0x10  # "F": DATA_FIN

# ADD_ADDR (RFC 8684 §3.4.1; v0: RFC 6824 §3.4.1)
ADD_ADDR_ECHO = 0x01  # "E" in byte 2
ADD_ADDR_TRUNCATED_HMAC_LEN = 8  # rightmost 64 bits of the HMAC
# v1 length -> (address bytes, port present, HMAC present)
ADD_ADDR_LENGTHS = {
    8: (4, False, False),
    10: (4, True, False),
    16: (4, False, True),
    18: (4, True, True),
    20: (16, False, False),
    22: (16, True, False),
    28: (16, False, True),
    30: (16, True, True),
}
# v0 length -> (IPVer, port present)
ADD_ADDR_V0_LENGTHS = {8: (4, False), 10: (4, True), 20: (6, False), 22: (6, True)}

# MP_PRIO (RFC 8684 §3.3.8; v0 RFC 6824 §3.3.8)
MP_PRIO_BACKUP = 0x01  # "B"
MP_PRIO_LEN = 3
MP_PRIO_V0_ADDRESS_LEN = 4  # v0 only: with an Address ID

MP_FAIL_LEN = 12  # RFC 8684 §3.7
MP_FASTCLOSE_LEN = 12  # RFC 8684 §3.5
REMOVE_ADDR_MIN_LEN = 4  # RFC 8684 §3.4.2: 3 + at least one Address ID

# MP_TCPRST (RFC 8684 §3.6)
MP_TCPRST_LEN = 4
MP_TCPRST_TRANSIENT = 0x01  # "T"; U, V, W (0x08, 0x04, 0x02) are reserved
MPTCP_RST_UNSPECIFIED = 0x00  # "Unspecified error"
MPTCP_RST_MPTCP_ERROR = 0x01  # "MPTCP-specific error"
MPTCP_RST_LACK_OF_RESOURCES = 0x02
MPTCP_RST_ADMINISTRATIVELY_PROHIBITED = 0x03
MPTCP_RST_TOO_MUCH_OUTSTANDING_DATA = 0x04
MPTCP_RST_UNACCEPTABLE_PERFORMANCE = 0x05
MPTCP_RST_MIDDLEBOX_INTERFERENCE = 0x06
MPTCP_RST_REASONS = {  # RFC 8684 §3.6 (IANA "MPTCP MP_TCPRST Reason Codes")
    MPTCP_RST_UNSPECIFIED: "unspecified error",
    MPTCP_RST_MPTCP_ERROR: "MPTCP-specific error",
    MPTCP_RST_LACK_OF_RESOURCES: "lack of resources",
    MPTCP_RST_ADMINISTRATIVELY_PROHIBITED: "administratively prohibited",
    MPTCP_RST_TOO_MUCH_OUTSTANDING_DATA: "too much outstanding data",
    MPTCP_RST_UNACCEPTABLE_PERFORMANCE: "unacceptable performance",
    MPTCP_RST_MIDDLEBOX_INTERFERENCE: "middlebox interference",
}


# --- the option forms ------------------------------------------------------------


class _MpCapableFlags:
    """Named views of an MP_CAPABLE flags byte."""

    __slots__ = ()
    flags: int

    @property
    def checksum_required(self) -> bool:
        return bool(self.flags & MP_CAPABLE_CHECKSUM_REQUIRED)

    @property
    def extensibility(self) -> bool:
        return bool(self.flags & MP_CAPABLE_EXTENSIBILITY)

    @property
    def no_subflows_to_source(self) -> bool:
        return bool(self.flags & MP_CAPABLE_NO_SUBFLOWS_TO_SOURCE)

    @property
    def hmac_flag(self) -> bool:
        """ "H": HMAC-SHA256 in v1, HMAC-SHA1 in v0."""
        return bool(self.flags & MP_CAPABLE_HMAC_SHA256)


@dataclass(frozen=True, slots=True)
class MpCapableSyn(_MpCapableFlags):
    """MP_CAPABLE on a SYN: no key in v1 (4 bytes), the sender's key in v0 (12 bytes)."""

    version: int = 1
    flags: int = MP_CAPABLE_HMAC_SHA256
    sender_key: int | None = None
    subtype = MP_CAPABLE


@dataclass(frozen=True, slots=True)
class MpCapableSynAck(_MpCapableFlags):
    """MP_CAPABLE on a SYN/ACK (12 bytes): the sender's key."""

    sender_key: int
    version: int = 1
    flags: int = MP_CAPABLE_HMAC_SHA256
    subtype = MP_CAPABLE


@dataclass(frozen=True, slots=True)
class MpCapableAck(_MpCapableFlags):
    """MP_CAPABLE on the third ACK (20 bytes): the sender's key, then the receiver's."""

    sender_key: int
    receiver_key: int
    version: int = 1
    flags: int = MP_CAPABLE_HMAC_SHA256
    subtype = MP_CAPABLE


@dataclass(frozen=True, slots=True)
class MpCapableAckData(_MpCapableFlags):
    """MP_CAPABLE on the client's first data (v1 only, 22 or 24 bytes).

    Implies the mapping DSN = client IDSN + 1, SSN = 1, ``data_level_length``
    bytes; ``checksum`` is present when checksums were negotiated.
    """

    sender_key: int
    receiver_key: int
    data_level_length: int
    checksum: int | None = None
    version: int = 1
    flags: int = MP_CAPABLE_HMAC_SHA256
    subtype = MP_CAPABLE


@dataclass(frozen=True, slots=True)
class MpJoinSyn:
    """MP_JOIN on a SYN (12 bytes): the receiver's token and the sender's random number."""

    address_id: int
    token: int
    nonce: int
    backup: bool = False
    reserved: int = 0  # 3 bits
    subtype = MP_JOIN


@dataclass(frozen=True, slots=True)
class MpJoinSynAck:
    """MP_JOIN on a SYN/ACK (16 bytes): the leftmost 64 bits of the sender's HMAC, its random number."""

    address_id: int
    truncated_hmac: bytes
    nonce: int
    backup: bool = False
    reserved: int = 0  # 3 bits
    subtype = MP_JOIN


@dataclass(frozen=True, slots=True)
class MpJoinAck:
    """MP_JOIN on the third ACK (24 bytes): 160 bits of the sender's HMAC."""

    hmac: bytes
    reserved: int = 0  # 12 bits
    subtype = MP_JOIN


@dataclass(frozen=True, slots=True)
class Dss:
    """Data Sequence Signal: an optional Data ACK and an optional mapping.

    ``data_ack``/``data_seq`` hold the value as sent: the low 32 bits unless
    ``data_ack_64``/``data_seq_64`` (the "a"/"m" flags) are set. Without a
    mapping (``data_seq is None``) ``subflow_seq``, ``data_level_length`` and
    ``checksum`` stay at their defaults. ``subflow_seq`` is relative to the
    subflow's initial sequence number; a ``data_level_length`` of 0 is the
    infinite mapping.
    """

    data_ack: int | None = None
    data_seq: int | None = None
    subflow_seq: int = 0
    data_level_length: int = 0
    checksum: int | None = None
    data_fin: bool = False
    data_ack_64: bool = False
    data_seq_64: bool = False
    reserved: int = 0  # 7 bits: the low nibble of byte 2, the top 3 bits of byte 3
    subtype = DSS

    @property
    def is_infinite_mapping(self) -> bool:
        return self.data_seq is not None and self.data_level_length == 0


@dataclass(frozen=True, slots=True)
class AddAddr:
    """ADD_ADDR, v1: with the rightmost 64 bits of the sender's HMAC, or without it as an echo."""

    address_id: int
    address: str
    port: int | None = None
    truncated_hmac: bytes | None = None
    reserved: int = 0  # 3 bits
    subtype = ADD_ADDR

    @property
    def echo(self) -> bool:
        """The E flag: set exactly when there is no HMAC."""
        return self.truncated_hmac is None


@dataclass(frozen=True, slots=True)
class AddAddrV0:
    """ADD_ADDR, v0 (RFC 6824): IPVer in the low nibble of byte 2, no HMAC, no echo."""

    address_id: int
    address: str
    port: int | None = None
    subtype = ADD_ADDR


@dataclass(frozen=True, slots=True)
class RemoveAddr:
    address_ids: tuple[int, ...]
    reserved: int = 0  # 4 bits
    subtype = REMOVE_ADDR


@dataclass(frozen=True, slots=True)
class MpPrio:
    """MP_PRIO: ``backup`` for the subflow it is sent on; v0 may name an ``address_id`` instead."""

    backup: bool = False
    address_id: int | None = None
    reserved: int = 0  # 3 bits
    subtype = MP_PRIO


@dataclass(frozen=True, slots=True)
class MpFail:
    """MP_FAIL: the 64-bit DSN where the failed mapping starts."""

    data_seq: int
    reserved: int = 0  # 12 bits
    subtype = MP_FAIL


@dataclass(frozen=True, slots=True)
class MpFastclose:
    """MP_FASTCLOSE: the key of the host that *receives* the option."""

    receiver_key: int
    reserved: int = 0  # 12 bits
    subtype = MP_FASTCLOSE


@dataclass(frozen=True, slots=True)
class MpTcpRst:
    """MP_TCPRST (v1): a reason code and the T ("transient") flag."""

    reason: int = MPTCP_RST_UNSPECIFIED
    transient: bool = False
    reserved: int = 0  # the U, V, W flags (3 bits), reserved by RFC 8684
    subtype = MP_TCPRST


@dataclass(frozen=True, slots=True)
class UnknownMptcpOption:
    """A subtype this codec does not know (0x9..0xf, or 0x8 in v0), kept byte for byte."""

    subtype: int
    low_bits: int  # the low nibble of byte 2
    body: bytes = b""


MpCapableOption = MpCapableSyn | MpCapableSynAck | MpCapableAck | MpCapableAckData
MpJoinOption = MpJoinSyn | MpJoinSynAck | MpJoinAck
MptcpOption = (
    MpCapableOption
    | MpJoinOption
    | Dss
    | AddAddr
    | AddAddrV0
    | RemoveAddr
    | MpPrio
    | MpFail
    | MpFastclose
    | MpTcpRst
    | UnknownMptcpOption
)


# --- encoding helpers ----------------------------------------------------------------


def _pack_address(address: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except (OSError, TypeError):
        raise ValueError(f"address {address!r} is neither IPv4 nor IPv6") from None


def _unpack_address(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def _length_error(what: str, length: int, expected: str, buf: Buffer) -> DecodeError:
    return DecodeError(f"{what} length {length}, expected {expected}", field="length", offset=buf.tell() - 1)


# --- MP_CAPABLE (RFC 8684 §3.1, RFC 6824 §3.1) ------------------------------------------


def pull_mp_capable_syn(buf: Buffer) -> MpCapableSyn:
    first = buf.pull_u8("subtype")
    flags = buf.pull_u8("flags")
    sender_key = buf.pull_u64("sender_key") if not buf.eof() else None
    return MpCapableSyn(version=first & 0x0F, flags=flags, sender_key=sender_key)


def push_mp_capable_syn(opt: MpCapableSyn) -> bytes:
    if (opt.sender_key is None) != (opt.version != 0):
        raise ValueError("an MP_CAPABLE SYN carries the sender's key in v0 (RFC 6824) and no key in v1 (RFC 8684)")
    out = Writer()
    out.push_u8(MP_CAPABLE << 4 | _version(opt.version), "version")
    out.push_u8(opt.flags, "flags")
    if opt.sender_key is not None:
        out.push_u64(opt.sender_key, "sender_key")
    return out.data()


def pull_mp_capable_synack(buf: Buffer) -> MpCapableSynAck:
    first = buf.pull_u8("subtype")
    flags = buf.pull_u8("flags")
    sender_key = buf.pull_u64("sender_key")
    return MpCapableSynAck(version=first & 0x0F, flags=flags, sender_key=sender_key)


def push_mp_capable_synack(opt: MpCapableSynAck) -> bytes:
    out = Writer()
    out.push_u8(MP_CAPABLE << 4 | _version(opt.version), "version")
    out.push_u8(opt.flags, "flags")
    out.push_u64(opt.sender_key, "sender_key")
    return out.data()


def pull_mp_capable_ack(buf: Buffer) -> MpCapableAck:
    first = buf.pull_u8("subtype")
    flags = buf.pull_u8("flags")
    sender_key = buf.pull_u64("sender_key")
    receiver_key = buf.pull_u64("receiver_key")
    return MpCapableAck(version=first & 0x0F, flags=flags, sender_key=sender_key, receiver_key=receiver_key)


def push_mp_capable_ack(opt: MpCapableAck) -> bytes:
    out = Writer()
    out.push_u8(MP_CAPABLE << 4 | _version(opt.version), "version")
    out.push_u8(opt.flags, "flags")
    out.push_u64(opt.sender_key, "sender_key")
    out.push_u64(opt.receiver_key, "receiver_key")
    return out.data()


def pull_mp_capable_ack_data(buf: Buffer) -> MpCapableAckData:
    first = buf.pull_u8("subtype")
    flags = buf.pull_u8("flags")
    sender_key = buf.pull_u64("sender_key")
    receiver_key = buf.pull_u64("receiver_key")
    data_level_length = buf.pull_u16("data_level_length")
    checksum = buf.pull_u16("checksum") if not buf.eof() else None
    return MpCapableAckData(
        version=first & 0x0F,
        flags=flags,
        sender_key=sender_key,
        receiver_key=receiver_key,
        data_level_length=data_level_length,
        checksum=checksum,
    )


def push_mp_capable_ack_data(opt: MpCapableAckData) -> bytes:
    if opt.version == 0:
        raise ValueError("MP_CAPABLE with data exists in v1 (RFC 8684) only")
    out = Writer()
    out.push_u8(MP_CAPABLE << 4 | _version(opt.version), "version")
    out.push_u8(opt.flags, "flags")
    out.push_u64(opt.sender_key, "sender_key")
    out.push_u64(opt.receiver_key, "receiver_key")
    out.push_u16(opt.data_level_length, "data_level_length")
    if opt.checksum is not None:
        out.push_u16(opt.checksum, "checksum")
    return out.data()


def _version(version: int) -> int:
    return bits(version, 4, "version")


def _pull_mp_capable(buf: Buffer, first: int, length: int, *, syn: bool, ack: bool) -> MpCapableOption:
    version = first & 0x0F
    if version == 0:  # RFC 6824 §3.1: the key on SYN and SYN/ACK, both keys on the ACK
        if length == MP_CAPABLE_KEY_LEN:
            return pull_mp_capable_syn(buf) if syn and not ack else pull_mp_capable_synack(buf)
        if length == MP_CAPABLE_ACK_LEN:
            return pull_mp_capable_ack(buf)
        raise _length_error("MP_CAPABLE v0", length, "12 or 20", buf)
    # RFC 8684 §3.1; a higher version is laid out as v1 (a v1 host reads its SYN to answer with v1)
    if length == MP_CAPABLE_SYN_LEN:
        return pull_mp_capable_syn(buf)
    if length == MP_CAPABLE_KEY_LEN:
        return pull_mp_capable_synack(buf)
    if length == MP_CAPABLE_ACK_LEN:
        return pull_mp_capable_ack(buf)
    if length in (MP_CAPABLE_DATA_LEN, MP_CAPABLE_DATA_CSUM_LEN):
        return pull_mp_capable_ack_data(buf)
    raise _length_error(f"MP_CAPABLE v{version}", length, "4, 12, 20, 22 or 24", buf)


# --- MP_JOIN (RFC 8684 §3.2) ---------------------------------------------------------------


def pull_mp_join_syn(buf: Buffer) -> MpJoinSyn:
    first = buf.pull_u8("subtype")
    address_id = buf.pull_u8("address_id")
    token = buf.pull_u32("token")
    nonce = buf.pull_u32("nonce")
    return MpJoinSyn(
        address_id=address_id, token=token, nonce=nonce, backup=bool(first & MP_JOIN_BACKUP), reserved=first >> 1 & 0x7
    )


def push_mp_join_syn(opt: MpJoinSyn) -> bytes:
    out = Writer()
    out.push_u8(MP_JOIN << 4 | bits(opt.reserved, 3, "reserved") << 1 | bool(opt.backup), "subtype")
    out.push_u8(opt.address_id, "address_id")
    out.push_u32(opt.token, "token")
    out.push_u32(opt.nonce, "nonce")
    return out.data()


def pull_mp_join_synack(buf: Buffer) -> MpJoinSynAck:
    first = buf.pull_u8("subtype")
    address_id = buf.pull_u8("address_id")
    truncated_hmac = buf.pull_bytes(MP_JOIN_TRUNCATED_HMAC_LEN, "truncated_hmac")
    nonce = buf.pull_u32("nonce")
    return MpJoinSynAck(
        address_id=address_id,
        truncated_hmac=truncated_hmac,
        nonce=nonce,
        backup=bool(first & MP_JOIN_BACKUP),
        reserved=first >> 1 & 0x7,
    )


def push_mp_join_synack(opt: MpJoinSynAck) -> bytes:
    out = Writer()
    out.push_u8(MP_JOIN << 4 | bits(opt.reserved, 3, "reserved") << 1 | bool(opt.backup), "subtype")
    out.push_u8(opt.address_id, "address_id")
    out.push_bytes(opt.truncated_hmac, MP_JOIN_TRUNCATED_HMAC_LEN, "truncated_hmac")
    out.push_u32(opt.nonce, "nonce")
    return out.data()


def pull_mp_join_ack(buf: Buffer) -> MpJoinAck:
    first = buf.pull_u8("subtype")
    second = buf.pull_u8("reserved")
    hmac = buf.pull_bytes(MP_JOIN_HMAC_LEN, "hmac")
    return MpJoinAck(hmac=hmac, reserved=(first & 0x0F) << 8 | second)


def push_mp_join_ack(opt: MpJoinAck) -> bytes:
    out = Writer()
    out.push_u8(MP_JOIN << 4 | bits(opt.reserved, 12, "reserved") >> 8, "subtype")
    out.push_u8(opt.reserved & 0xFF, "reserved")
    out.push_bytes(opt.hmac, MP_JOIN_HMAC_LEN, "hmac")
    return out.data()


def _pull_mp_join(buf: Buffer, length: int) -> MpJoinOption:
    if length == MP_JOIN_SYN_LEN:
        return pull_mp_join_syn(buf)
    if length == MP_JOIN_SYNACK_LEN:
        return pull_mp_join_synack(buf)
    if length == MP_JOIN_ACK_LEN:
        return pull_mp_join_ack(buf)
    raise _length_error("MP_JOIN", length, "12 (SYN), 16 (SYN/ACK) or 24 (ACK)", buf)


# --- DSS (RFC 8684 §3.3) ------------------------------------------------------------------


def dss_length(flags: int, *, checksum: bool) -> int:
    """The whole-option length a DSS with these flags has (RFC 8684 §3.3)."""
    length = 4
    if flags & DSS_DATA_ACK:
        length += 8 if flags & DSS_DATA_ACK_64 else 4
    if flags & DSS_MAPPING:
        length += (8 if flags & DSS_DATA_SEQ_64 else 4) + 4 + 2 + (2 if checksum else 0)
    return length


def pull_dss(buf: Buffer) -> Dss:
    length = 2 + buf.remaining()
    first = buf.pull_u8("subtype")
    flags = buf.pull_u8("flags")
    if length not in (dss_length(flags, checksum=False), dss_length(flags, checksum=True)):
        raise DecodeError(
            f"DSS length {length} does not match flags 0x{flags:02x} (expected {dss_length(flags, checksum=False)}"
            + (f" or {dss_length(flags, checksum=True)})" if flags & DSS_MAPPING else ")"),
            field="length",
            offset=buf.tell() - 3,
        )
    data_ack = data_seq = checksum = None
    subflow_seq = data_level_length = 0
    if flags & DSS_DATA_ACK:
        data_ack = buf.pull_u64("data_ack") if flags & DSS_DATA_ACK_64 else buf.pull_u32("data_ack")
    if flags & DSS_MAPPING:
        data_seq = buf.pull_u64("data_seq") if flags & DSS_DATA_SEQ_64 else buf.pull_u32("data_seq")
        subflow_seq = buf.pull_u32("subflow_seq")
        data_level_length = buf.pull_u16("data_level_length")
        checksum = buf.pull_u16("checksum") if not buf.eof() else None
    return Dss(
        data_ack=data_ack,
        data_seq=data_seq,
        subflow_seq=subflow_seq,
        data_level_length=data_level_length,
        checksum=checksum,
        data_fin=bool(flags & DSS_DATA_FIN),
        data_ack_64=bool(flags & DSS_DATA_ACK_64),
        data_seq_64=bool(flags & DSS_DATA_SEQ_64),
        reserved=(first & 0x0F) << 3 | flags >> 5,
    )


def _dss_struct(flags: int, checksum: bool) -> struct.Struct:
    """The layout of a DSS with these flags: subtype byte, flags byte, then the fields present."""
    fmt = "!BB"
    if flags & DSS_DATA_ACK:
        fmt += "Q" if flags & DSS_DATA_ACK_64 else "I"
    if flags & DSS_MAPPING:
        fmt += ("Q" if flags & DSS_DATA_SEQ_64 else "I") + "IH" + ("H" if checksum else "")
    return struct.Struct(fmt)


# every well-formed DSS layout, by (low flag bits, checksum present) and by (low flag bits, length)
_DSS_PUSH = {(f, c): _dss_struct(f, c) for f in range(16) for c in (False, True)}
_DSS_PULL = {
    (f, dss_length(f, checksum=c)): _DSS_PUSH[f, c]
    for f in range(16)
    for c in ((False, True) if f & DSS_MAPPING else (False,))
}


def _dss_from(fields: tuple[int, ...]) -> Dss:
    """A Dss from the values of its _DSS_PULL layout (reserved bits zero), as pull_dss reads it."""
    flags = fields[1]
    i = 2
    data_ack = data_seq = checksum = None
    subflow_seq = data_level_length = 0
    if flags & DSS_DATA_ACK:
        data_ack = fields[2]
        i = 3
    if flags & DSS_MAPPING:
        data_seq = fields[i]
        subflow_seq = fields[i + 1]
        data_level_length = fields[i + 2]
        if len(fields) > i + 3:
            checksum = fields[i + 3]
    return Dss(
        data_ack,
        data_seq,
        subflow_seq,
        data_level_length,
        checksum,
        bool(flags & DSS_DATA_FIN),
        bool(flags & DSS_DATA_ACK_64),
        bool(flags & DSS_DATA_SEQ_64),
        flags >> 5,
    )


def push_dss(opt: Dss) -> bytes:
    data_ack = opt.data_ack
    data_seq = opt.data_seq
    checksum = opt.checksum
    if not opt.reserved and (
        data_seq is not None or not (opt.subflow_seq or opt.data_level_length or checksum is not None)
    ):
        # the common case in one struct.pack; the same bytes as the field-by-field path below
        flags = (
            (DSS_DATA_FIN if opt.data_fin else 0)
            | (DSS_DATA_SEQ_64 if opt.data_seq_64 else 0)
            | (DSS_MAPPING if data_seq is not None else 0)
            | (DSS_DATA_ACK_64 if opt.data_ack_64 else 0)
            | (DSS_DATA_ACK if data_ack is not None else 0)
        )
        fields = [DSS << 4, flags]
        if data_ack is not None:
            fields.append(data_ack)
        if data_seq is not None:
            fields += (data_seq, opt.subflow_seq, opt.data_level_length)
            if checksum is not None:
                fields.append(checksum)
        try:
            return _DSS_PUSH[flags & 0x0F, checksum is not None].pack(*fields)
        except struct.error:
            pass  # a field out of range: the path below names it
    out = Writer()
    reserved = bits(opt.reserved, 7, "reserved")
    flags = (
        (reserved & 0x7) << 5
        | (DSS_DATA_FIN if opt.data_fin else 0)
        | (DSS_DATA_SEQ_64 if opt.data_seq_64 else 0)
        | (DSS_MAPPING if opt.data_seq is not None else 0)
        | (DSS_DATA_ACK_64 if opt.data_ack_64 else 0)
        | (DSS_DATA_ACK if opt.data_ack is not None else 0)
    )
    out.push_u8(DSS << 4 | reserved >> 3, "subtype")
    out.push_u8(flags, "flags")
    if opt.data_ack is not None:
        if opt.data_ack_64:
            out.push_u64(opt.data_ack, "data_ack")
        else:
            out.push_u32(opt.data_ack, "data_ack")
    if opt.data_seq is not None:
        if opt.data_seq_64:
            out.push_u64(opt.data_seq, "data_seq")
        else:
            out.push_u32(opt.data_seq, "data_seq")
        out.push_u32(opt.subflow_seq, "subflow_seq")
        out.push_u16(opt.data_level_length, "data_level_length")
        if opt.checksum is not None:
            out.push_u16(opt.checksum, "checksum")
    elif opt.subflow_seq or opt.data_level_length or opt.checksum is not None:
        raise ValueError("a DSS without a mapping (data_seq None) has no subflow_seq, data_level_length or checksum")
    return out.data()


# --- ADD_ADDR (RFC 8684 §3.4.1; v0: RFC 6824 §3.4.1) -----------------------------------------


def pull_add_addr(buf: Buffer) -> AddAddr:
    length = 2 + buf.remaining()
    if length not in ADD_ADDR_LENGTHS:
        raise _length_error("ADD_ADDR", length, "8, 10, 16, 18, 20, 22, 28 or 30", buf)
    address_len, has_port, has_hmac = ADD_ADDR_LENGTHS[length]
    first = buf.pull_u8("subtype")
    if bool(first & ADD_ADDR_ECHO) == has_hmac:
        raise DecodeError(
            f"ADD_ADDR of length {length} {'carries' if has_hmac else 'lacks'} an HMAC but E is "
            f"{first & ADD_ADDR_ECHO}",
            field="echo",
            offset=buf.tell() - 1,
        )
    address_id = buf.pull_u8("address_id")
    address = _unpack_address(buf.pull_bytes(address_len, "address"))
    port = buf.pull_u16("port") if has_port else None
    truncated_hmac = buf.pull_bytes(ADD_ADDR_TRUNCATED_HMAC_LEN, "truncated_hmac") if has_hmac else None
    return AddAddr(
        address_id=address_id, address=address, port=port, truncated_hmac=truncated_hmac, reserved=first >> 1 & 0x7
    )


def push_add_addr(opt: AddAddr) -> bytes:
    out = Writer()
    out.push_u8(ADD_ADDR << 4 | bits(opt.reserved, 3, "reserved") << 1 | opt.echo, "subtype")
    out.push_u8(opt.address_id, "address_id")
    packed = _pack_address(opt.address)
    out.push_bytes(packed, len(packed), "address")
    if opt.port is not None:
        out.push_u16(opt.port, "port")
    if opt.truncated_hmac is not None:
        out.push_bytes(opt.truncated_hmac, ADD_ADDR_TRUNCATED_HMAC_LEN, "truncated_hmac")
    return out.data()


def pull_add_addr_v0(buf: Buffer) -> AddAddrV0:
    length = 2 + buf.remaining()
    if length not in ADD_ADDR_V0_LENGTHS:
        raise _length_error("ADD_ADDR v0", length, "8, 10, 20 or 22", buf)
    ip_version, has_port = ADD_ADDR_V0_LENGTHS[length]
    first = buf.pull_u8("subtype")
    if first & 0x0F != ip_version:
        raise DecodeError(
            f"ADD_ADDR v0 IPVer {first & 0x0F} does not match length {length} (IPv{ip_version})",
            field="ip_version",
            offset=buf.tell() - 1,
        )
    address_id = buf.pull_u8("address_id")
    address = _unpack_address(buf.pull_bytes(4 if ip_version == 4 else 16, "address"))
    port = buf.pull_u16("port") if has_port else None
    return AddAddrV0(address_id=address_id, address=address, port=port)


def push_add_addr_v0(opt: AddAddrV0) -> bytes:
    out = Writer()
    packed = _pack_address(opt.address)
    out.push_u8(ADD_ADDR << 4 | (4 if len(packed) == 4 else 6), "subtype")
    out.push_u8(opt.address_id, "address_id")
    out.push_bytes(packed, len(packed), "address")
    if opt.port is not None:
        out.push_u16(opt.port, "port")
    return out.data()


# --- REMOVE_ADDR (RFC 8684 §3.4.2) ---------------------------------------------------------


def pull_remove_addr(buf: Buffer) -> RemoveAddr:
    first = buf.pull_u8("subtype")
    address_ids = tuple(buf.pull_u8("address_ids") for _ in range(buf.remaining()))
    return RemoveAddr(address_ids=address_ids, reserved=first & 0x0F)


def push_remove_addr(opt: RemoveAddr) -> bytes:
    out = Writer()
    out.push_u8(REMOVE_ADDR << 4 | bits(opt.reserved, 4, "reserved"), "subtype")
    if not opt.address_ids:
        raise ValueError("REMOVE_ADDR names at least one address ID")
    for address_id in opt.address_ids:
        out.push_u8(address_id, "address_ids")
    return out.data()


# --- MP_PRIO (RFC 8684 §3.3.8; v0: RFC 6824 §3.3.8) -------------------------------------------


def pull_mp_prio(buf: Buffer) -> MpPrio:
    first = buf.pull_u8("subtype")
    address_id = buf.pull_u8("address_id") if not buf.eof() else None
    return MpPrio(backup=bool(first & MP_PRIO_BACKUP), address_id=address_id, reserved=first >> 1 & 0x7)


def push_mp_prio(opt: MpPrio) -> bytes:
    out = Writer()
    out.push_u8(MP_PRIO << 4 | bits(opt.reserved, 3, "reserved") << 1 | bool(opt.backup), "subtype")
    if opt.address_id is not None:
        out.push_u8(opt.address_id, "address_id")
    return out.data()


def _pull_mp_prio(buf: Buffer, length: int, version: int | None) -> MpPrio:
    if length == MP_PRIO_LEN or (version == 0 and length == MP_PRIO_V0_ADDRESS_LEN):
        return pull_mp_prio(buf)
    raise _length_error("MP_PRIO", length, "3 or 4 (v0)" if version == 0 else "3", buf)


# --- MP_FAIL (RFC 8684 §3.7), MP_FASTCLOSE (§3.5), MP_TCPRST (§3.6) ------------------------------


def pull_mp_fail(buf: Buffer) -> MpFail:
    first = buf.pull_u8("subtype")
    second = buf.pull_u8("reserved")
    data_seq = buf.pull_u64("data_seq")
    return MpFail(data_seq=data_seq, reserved=(first & 0x0F) << 8 | second)


def push_mp_fail(opt: MpFail) -> bytes:
    out = Writer()
    out.push_u8(MP_FAIL << 4 | bits(opt.reserved, 12, "reserved") >> 8, "subtype")
    out.push_u8(opt.reserved & 0xFF, "reserved")
    out.push_u64(opt.data_seq, "data_seq")
    return out.data()


def pull_mp_fastclose(buf: Buffer) -> MpFastclose:
    first = buf.pull_u8("subtype")
    second = buf.pull_u8("reserved")
    receiver_key = buf.pull_u64("receiver_key")
    return MpFastclose(receiver_key=receiver_key, reserved=(first & 0x0F) << 8 | second)


def push_mp_fastclose(opt: MpFastclose) -> bytes:
    out = Writer()
    out.push_u8(MP_FASTCLOSE << 4 | bits(opt.reserved, 12, "reserved") >> 8, "subtype")
    out.push_u8(opt.reserved & 0xFF, "reserved")
    out.push_u64(opt.receiver_key, "receiver_key")
    return out.data()


def pull_mp_tcprst(buf: Buffer) -> MpTcpRst:
    first = buf.pull_u8("subtype")
    reason = buf.pull_u8("reason")
    return MpTcpRst(reason=reason, transient=bool(first & MP_TCPRST_TRANSIENT), reserved=first >> 1 & 0x7)


def push_mp_tcprst(opt: MpTcpRst) -> bytes:
    out = Writer()
    out.push_u8(MP_TCPRST << 4 | bits(opt.reserved, 3, "reserved") << 1 | bool(opt.transient), "subtype")
    out.push_u8(opt.reason, "reason")
    return out.data()


def _pull_fixed(buf: Buffer, length: int, expected: int, name: str, pull: Callable[[Buffer], _T]) -> _T:
    if length != expected:
        raise _length_error(name, length, str(expected), buf)
    return pull(buf)


# --- unknown subtypes ----------------------------------------------------------------------


def pull_unknown(buf: Buffer) -> UnknownMptcpOption:
    first = buf.pull_u8("subtype")
    body = buf.pull_rest()
    return UnknownMptcpOption(subtype=first >> 4, low_bits=first & 0x0F, body=body)


def push_unknown(opt: UnknownMptcpOption) -> bytes:
    out = Writer()
    out.push_u8(bits(opt.subtype, 4, "subtype") << 4 | bits(opt.low_bits, 4, "low_bits"), "subtype")
    out.push_bytes(opt.body, len(opt.body), "body")
    return out.data()


# --- the whole option ------------------------------------------------------------------------


def pull_mptcp_option(
    data: bytes, *, version: int | None = None, syn: bool = False, ack: bool = True, base_offset: int = 2
) -> MptcpOption:
    """Decode the data bytes of a kind-30 option (after kind and length).

    ``version`` is the connection's MPTCP version (None: not negotiated yet,
    read as v1); ``syn``/``ack`` are the segment's flags, needed only to tell a
    v0 MP_CAPABLE SYN from a SYN/ACK. Unknown subtypes decode to
    :class:`UnknownMptcpOption`.

    Raises DecodeError naming the field and its offset (from the kind byte
    plus ``base_offset - 2``) when the length does not fit the subtype, the
    ADD_ADDR E flag contradicts the length, or a v0 IPVer is not 4 or 6.
    """
    length = 2 + len(data)
    if length > 3 and data[0] == DSS << 4:
        layout = _DSS_PULL.get((data[1] & 0x0F, length))
        if layout is not None:  # a well-formed DSS, reserved bits zero: one struct.unpack
            return _dss_from(layout.unpack(data))
    buf = Buffer(data, base_offset=base_offset)
    if not data:
        raise DecodeError("MPTCP option has no subtype byte", field="subtype", offset=base_offset)
    if length > 2 + MAX_DATA_LEN:
        raise DecodeError(f"MPTCP option length {length} exceeds 40", field="length", offset=base_offset - 1)
    first = data[0]
    subtype = first >> 4
    opt: MptcpOption
    if subtype == MP_CAPABLE:
        opt = _pull_mp_capable(buf, first, length, syn=syn, ack=ack)
    elif subtype == MP_JOIN:
        opt = _pull_mp_join(buf, length)
    elif subtype == DSS:
        opt = pull_dss(buf)
    elif subtype == ADD_ADDR:
        opt = pull_add_addr_v0(buf) if version == 0 else pull_add_addr(buf)
    elif subtype == REMOVE_ADDR:
        if length < REMOVE_ADDR_MIN_LEN:
            raise _length_error("REMOVE_ADDR", length, "3 + at least one address ID", buf)
        opt = pull_remove_addr(buf)
    elif subtype == MP_PRIO:
        opt = _pull_mp_prio(buf, length, version)
    elif subtype == MP_FAIL:
        opt = _pull_fixed(buf, length, MP_FAIL_LEN, "MP_FAIL", pull_mp_fail)
    elif subtype == MP_FASTCLOSE:
        opt = _pull_fixed(buf, length, MP_FASTCLOSE_LEN, "MP_FASTCLOSE", pull_mp_fastclose)
    elif subtype == MP_TCPRST and version != 0:
        opt = _pull_fixed(buf, length, MP_TCPRST_LEN, "MP_TCPRST", pull_mp_tcprst)
    else:
        opt = pull_unknown(buf)
    if not buf.eof():  # the selection above matches every form's length; this guards against a slip
        raise DecodeError(f"{buf.remaining()} bytes left over", field="length", offset=base_offset - 1)
    return opt


_PUSH = {
    MpCapableSyn: push_mp_capable_syn,
    MpCapableSynAck: push_mp_capable_synack,
    MpCapableAck: push_mp_capable_ack,
    MpCapableAckData: push_mp_capable_ack_data,
    MpJoinSyn: push_mp_join_syn,
    MpJoinSynAck: push_mp_join_synack,
    MpJoinAck: push_mp_join_ack,
    Dss: push_dss,
    AddAddr: push_add_addr,
    AddAddrV0: push_add_addr_v0,
    RemoveAddr: push_remove_addr,
    MpPrio: push_mp_prio,
    MpFail: push_mp_fail,
    MpFastclose: push_mp_fastclose,
    MpTcpRst: push_mp_tcprst,
    UnknownMptcpOption: push_unknown,
}


def push_mptcp_option(opt: MptcpOption) -> bytes:
    """Encode ``opt`` to the data bytes of a kind-30 option (after kind and length).

    Raises ValueError when a field does not fit its width, an HMAC has the
    wrong length, the form does not exist in ``opt.version`` or the option
    would exceed 40 bytes; TypeError when ``opt`` is not an MPTCP option.
    """
    push = _PUSH.get(type(opt))
    if push is None:
        raise TypeError(f"not an MPTCP option: {opt!r}")
    data = push(opt)
    if len(data) > MAX_DATA_LEN:
        raise ValueError(f"MPTCP option would take {2 + len(data)} bytes, more than 40")
    return data


def to_tcp_option(opt: MptcpOption) -> UnknownOption:
    """``opt`` as the kind-30 option ``lab.wire.tcp`` carries. Raises as push_mptcp_option."""
    return UnknownOption(MPTCP_KIND, push_mptcp_option(opt))


def from_tcp_option(
    opt: UnknownOption, *, version: int | None = None, syn: bool = False, ack: bool = True
) -> MptcpOption:
    """Decode a kind-30 ``UnknownOption``; arguments and DecodeError as pull_mptcp_option.

    Raises ValueError when ``opt`` is not of kind 30.
    """
    if opt.kind != MPTCP_KIND:
        raise ValueError(f"option kind {opt.kind} is not MPTCP ({MPTCP_KIND})")
    return pull_mptcp_option(opt.data, version=version, syn=syn, ack=ack)
