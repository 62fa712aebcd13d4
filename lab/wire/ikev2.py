"""IKEv2 messages (RFC 7296 §3): the header, the payload chain and the payloads the lab uses.

An IKE message is a 28-byte header (§3.1) followed by a chain of payloads,
each starting with the generic payload header (§3.2): ``Next Payload (1) |
C bit + 7 reserved bits (1) | Payload Length (2)``. The header's Next Payload
names the first payload, each payload names the one after it, and 0 ends
the chain. The Encrypted payload SK (§3.14, RFC 5282 §3 for AEAD) is the
exception: it is always the last payload, and its Next Payload names the
first payload *inside* the ciphertext. This module keeps SK as header and
opaque body (:class:`EncryptedPayload`); ``lab.ike.keys`` decrypts it and
parses the plaintext with :func:`pull_payload_chain`.

Payload types this codec does not know stay raw in :class:`UnknownPayload`
with their critical bit exposed: §2.5 says a receiver rejects the whole
message (UNSUPPORTED_CRITICAL_PAYLOAD) when the bit is set and skips the
payload when it is clear. That decision belongs to the caller.

Reserved fields and bits are sent as zero and ignored on receipt (§3.2), so
re-encoding a decoded message reproduces its bytes whenever its reserved
bits were zero, as a conforming sender's are. The header's X flag bits are
the exception: they are kept in ``reserved_flags``. The critical bit of a
known payload is ignored on receipt and sent as 0 (§3.2).

SPIs are bytes (8 for IKE, 4 for ESP/AH, any size inside Notify/Delete/Proposal
substructures); numbers are ints; traffic-selector addresses are text, as in
``lab.wire.ip``. DecodeError offsets count from the first byte of the IKE
header unless the Buffer says otherwise.

Over UDP port 4500 (and inside an RFC 9329 TCP stream) an IKE message is
preceded by the 4-byte non-ESP marker, which is not part of the message
(§3.1); the ``*_non_esp_marker`` helpers add and check it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import ClassVar

from lab.errors import DecodeError
from lab.wire.buffer import Buffer, Writer, bits

# --- header (RFC 7296 §3.1) ----------------------------------------------------------------

IKE_HEADER_LEN = 28
IKE_SPI_LEN = 8
IKE_MAJOR_VERSION = 2  # "MUST set the major version to 2"
IKE_MINOR_VERSION = 0  # "MUST set the minor version to 0 ... MUST ignore" on receipt

IKE_SA_INIT = 34  # exchange types, §3.1
IKE_AUTH = 35
CREATE_CHILD_SA = 36
INFORMATIONAL = 37

FLAG_RESPONSE = 0x20  # R
FLAG_VERSION = 0x10  # V: "MUST clear this bit when sending and MUST ignore it"
FLAG_INITIATOR = 0x08  # I: sent by the original initiator of the IKE SA
FLAGS_RESERVED_MASK = 0xC7  # the X bits: cleared when sending, ignored on receipt

MAX_MESSAGE_ID = 0xFFFF_FFFF

# --- payload types (RFC 7296 §3.2) ----------------------------------------------------------

NO_NEXT_PAYLOAD = 0
PAYLOAD_SA = 33
PAYLOAD_KE = 34
PAYLOAD_IDI = 35
PAYLOAD_IDR = 36
PAYLOAD_CERT = 37
PAYLOAD_CERTREQ = 38
PAYLOAD_AUTH = 39
PAYLOAD_NONCE = 40  # Ni, Nr
PAYLOAD_NOTIFY = 41
PAYLOAD_DELETE = 42
PAYLOAD_VENDOR_ID = 43
PAYLOAD_TSI = 44
PAYLOAD_TSR = 45
PAYLOAD_SK = 46  # Encrypted and Authenticated
PAYLOAD_CP = 47
PAYLOAD_EAP = 48
PAYLOAD_SKF = 53  # Encrypted and Authenticated Fragment, RFC 7383 §2.5 (kept raw here)

GENERIC_HEADER_LEN = 4
CRITICAL_BIT = 0x80  # §3.2: "the critical bit applies to the current payload"
MAX_PAYLOAD_LEN = 0xFFFF

# --- SA payload (RFC 7296 §3.3) --------------------------------------------------------------

PROTO_IKE = 1  # Protocol ID, §3.3.1
PROTO_AH = 2
PROTO_ESP = 3

LAST_SUBSTRUCTURE = 0  # Last Substruc, §3.3.1 and §3.3.2
MORE_PROPOSALS = 2
MORE_TRANSFORMS = 3
PROPOSAL_HEADER_LEN = 8
TRANSFORM_HEADER_LEN = 8

TRANSFORM_ENCR = 1  # Transform Type, §3.3.2
TRANSFORM_PRF = 2
TRANSFORM_INTEG = 3
TRANSFORM_DH = 4
TRANSFORM_ESN = 5

ENCR_AES_CBC = 12  # RFC 7296 §3.3.2 (RFC 3602)
ENCR_AES_CTR = 13  # RFC 7296 §3.3.2 (RFC 3686)
ENCR_AES_GCM_8 = 18  # RFC 5282 §7.2 / RFC 4106 §8.3: 8-octet ICV
ENCR_AES_GCM_12 = 19  # 12-octet ICV
ENCR_AES_GCM_16 = 20  # 16-octet ICV
ENCR_CHACHA20_POLY1305 = 28  # RFC 7634 §6

PRF_HMAC_SHA1 = 2  # RFC 7296 §3.3.2
PRF_HMAC_SHA2_256 = 5  # RFC 4868 §4
PRF_HMAC_SHA2_384 = 6
PRF_HMAC_SHA2_512 = 7

INTEG_NONE = 0  # RFC 7296 §3.3.2; with AEAD no INTEG transform is proposed (RFC 5282 §8)
AUTH_HMAC_SHA1_96 = 2
AUTH_HMAC_SHA2_256_128 = 12  # RFC 4868 §4
AUTH_HMAC_SHA2_384_192 = 13
AUTH_HMAC_SHA2_512_256 = 14

DH_NONE = 0  # Transform Type 4 IDs, RFC 7296 §3.3.2
DH_MODP_2048 = 14  # RFC 3526 §3: "This group is assigned id 14"
DH_ECP_256 = 19  # RFC 5903 (IANA "256-bit random ECP group")
DH_ECP_384 = 20  # RFC 5903 (IANA "384-bit random ECP group")
DH_ECP_521 = 21  # RFC 5903 (IANA "521-bit random ECP group")
DH_CURVE25519 = 31  # RFC 8031 §3

ESN_NONE = 0  # RFC 7296 §3.3.2
ESN_EXTENDED = 1

ATTRIBUTE_FORMAT_TV = 0x8000  # the AF bit, §3.3.5: 1 = Type/Value (2-byte value), 0 = TLV
ATTRIBUTE_KEY_LENGTH = 14  # Key Length in bits, TV format (§3.3.5)

# --- other payloads ----------------------------------------------------------------------------

ID_IPV4_ADDR = 1  # ID Type, RFC 7296 §3.5
ID_FQDN = 2
ID_RFC822_ADDR = 3
ID_IPV6_ADDR = 5
ID_DER_ASN1_DN = 9
ID_DER_ASN1_GN = 10
ID_KEY_ID = 11

AUTH_RSA_SIGNATURE = 1  # Auth Method, RFC 7296 §3.8
AUTH_SHARED_KEY_MIC = 2  # "Shared Key Message Integrity Code" (PSK, §2.15)
AUTH_DSS_SIGNATURE = 3
AUTH_DIGITAL_SIGNATURE = 14  # RFC 7427 §3

# Notify Message Types, RFC 7296 §3.10.1: 0-16383 are errors, 16384-65535 status types
NOTIFY_ERROR_MAX = 16383
UNSUPPORTED_CRITICAL_PAYLOAD = 1  # data: the one-octet payload type (§2.5)
INVALID_IKE_SPI = 4
INVALID_MAJOR_VERSION = 5
INVALID_SYNTAX = 7
INVALID_MESSAGE_ID = 9
INVALID_SPI = 11
NO_PROPOSAL_CHOSEN = 14
INVALID_KE_PAYLOAD = 17  # data: the 2-octet DH group the responder wants (§1.2)
AUTHENTICATION_FAILED = 24
SINGLE_PAIR_REQUIRED = 34
NO_ADDITIONAL_SAS = 35
INTERNAL_ADDRESS_FAILURE = 36
FAILED_CP_REQUIRED = 37
TS_UNACCEPTABLE = 38
INVALID_SELECTORS = 39
TEMPORARY_FAILURE = 43
CHILD_SA_NOT_FOUND = 44
INITIAL_CONTACT = 16384
SET_WINDOW_SIZE = 16385
ADDITIONAL_TS_POSSIBLE = 16386
IPCOMP_SUPPORTED = 16387
NAT_DETECTION_SOURCE_IP = 16388  # data: SHA-1(SPIi | SPIr | IP | port), §2.23
NAT_DETECTION_DESTINATION_IP = 16389
COOKIE = 16390  # data: 1-64 octets (§2.6)
USE_TRANSPORT_MODE = 16391
HTTP_CERT_LOOKUP_SUPPORTED = 16392
REKEY_SA = 16393
ESP_TFC_PADDING_NOT_SUPPORTED = 16394
NON_FIRST_FRAGMENTS_ALSO = 16395
CHILDLESS_IKEV2_SUPPORTED = 16418  # RFC 6023 §4
IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383 §2.3

TS_IPV4_ADDR_RANGE = 7  # TS Type, RFC 7296 §3.13.1
TS_IPV6_ADDR_RANGE = 8
TS_HEADER_LEN = 4  # TS Type, IP Protocol ID, Selector Length
_TS_ADDRESS_LEN = {TS_IPV4_ADDR_RANGE: 4, TS_IPV6_ADDR_RANGE: 16}
_TS_FAMILY = {TS_IPV4_ADDR_RANGE: socket.AF_INET, TS_IPV6_ADDR_RANGE: socket.AF_INET6}

# --- UDP port 4500 (RFC 3948 §2, RFC 7296 §3.1) -----------------------------------------------

NON_ESP_MARKER = bytes(4)  # RFC 3948 §2.2: "4 zero-valued bytes aligning with the SPI field"
NAT_KEEPALIVE = b"\xff"  # RFC 3948 §2.3: a one-octet payload 0xFF


# --- the header ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """The fixed IKE header; ``length`` counts the whole message, header included."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange_type: int
    message_id: int
    length: int
    initiator: bool = False
    response: bool = False
    higher_version: bool = False
    major_version: int = IKE_MAJOR_VERSION
    minor_version: int = IKE_MINOR_VERSION
    reserved_flags: int = 0  # the X bits of the flags octet, as received


def pull_ike_header(buf: Buffer) -> IkeHeader:
    """Read the 28-byte header; raises DecodeError on truncation or a Length below 28."""
    spi_i = buf.pull_bytes(IKE_SPI_LEN, "spi_i")
    spi_r = buf.pull_bytes(IKE_SPI_LEN, "spi_r")
    next_payload = buf.pull_u8("next_payload")
    version = buf.pull_u8("version")
    exchange_type = buf.pull_u8("exchange_type")
    flags = buf.pull_u8("flags")
    message_id = buf.pull_u32("message_id")
    length = buf.pull_u32("length")
    if length < IKE_HEADER_LEN:
        raise DecodeError(f"message length {length} is shorter than the header", field="length", offset=buf.tell() - 4)
    return IkeHeader(
        spi_i=spi_i,
        spi_r=spi_r,
        next_payload=next_payload,
        exchange_type=exchange_type,
        message_id=message_id,
        length=length,
        initiator=bool(flags & FLAG_INITIATOR),
        response=bool(flags & FLAG_RESPONSE),
        higher_version=bool(flags & FLAG_VERSION),
        major_version=version >> 4,
        minor_version=version & 0x0F,
        reserved_flags=flags & FLAGS_RESERVED_MASK,
    )


def push_ike_header(header: IkeHeader) -> bytes:
    """Raises ValueError when a field does not fit."""
    out = Writer()
    out.push_bytes(header.spi_i, IKE_SPI_LEN, "spi_i")
    out.push_bytes(header.spi_r, IKE_SPI_LEN, "spi_r")
    out.push_u8(header.next_payload, "next_payload")
    out.push_u8(
        _nibble(header.major_version, "major_version") << 4 | _nibble(header.minor_version, "minor_version"), "version"
    )
    out.push_u8(header.exchange_type, "exchange_type")
    out.push_u8(_flags(header.initiator, header.response, header.higher_version, header.reserved_flags), "flags")
    out.push_u32(header.message_id, "message_id")
    out.push_u32(header.length, "length")
    return out.data()


# --- payloads --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransformAttribute:
    """One attribute (§3.3.5): an int ``value`` travels as TV (AF=1, 2 bytes), bytes as TLV (AF=0)."""

    attribute_type: int
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Transform:
    """A Transform substructure (§3.3.2)."""

    transform_type: int
    transform_id: int
    attributes: tuple[TransformAttribute, ...] = ()

    @property
    def key_length(self) -> int | None:
        """The Key Length attribute in bits, or None when absent."""
        for attr in self.attributes:
            if attr.attribute_type == ATTRIBUTE_KEY_LENGTH and isinstance(attr.value, int):
                return attr.value
        return None


@dataclass(frozen=True, slots=True)
class Proposal:
    """A Proposal substructure (§3.3.1); ``spi`` is empty in an initial IKE SA negotiation."""

    number: int
    protocol_id: int
    transforms: tuple[Transform, ...]
    spi: bytes = b""

    def transform(self, transform_type: int) -> Transform | None:
        """The first transform of ``transform_type``, or None."""
        for t in self.transforms:
            if t.transform_type == transform_type:
                return t
        return None


@dataclass(frozen=True, slots=True)
class SaPayload:
    """SA (§3.3): one or more proposals."""

    proposals: tuple[Proposal, ...]
    payload_type: ClassVar[int] = PAYLOAD_SA


@dataclass(frozen=True, slots=True)
class KePayload:
    """KE (§3.4): the DH group and the public value (ECP: x | y, RFC 5903 §7)."""

    dh_group: int
    key_data: bytes
    payload_type: ClassVar[int] = PAYLOAD_KE


@dataclass(frozen=True, slots=True)
class IdiPayload:
    """IDi (§3.5). Its body ``ID Type | RESERVED | data`` is RestOfInitIDPayload (§2.15)."""

    id_type: int
    data: bytes
    payload_type: ClassVar[int] = PAYLOAD_IDI


@dataclass(frozen=True, slots=True)
class IdrPayload:
    """IDr (§3.5). Its body is RestOfRespIDPayload (§2.15)."""

    id_type: int
    data: bytes
    payload_type: ClassVar[int] = PAYLOAD_IDR


@dataclass(frozen=True, slots=True)
class AuthPayload:
    """AUTH (§3.8)."""

    method: int
    data: bytes
    payload_type: ClassVar[int] = PAYLOAD_AUTH


@dataclass(frozen=True, slots=True)
class NoncePayload:
    """Ni / Nr (§3.9): 16-256 octets (checked by the IKE layer, not here)."""

    nonce: bytes
    payload_type: ClassVar[int] = PAYLOAD_NONCE


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """N (§3.10). ``protocol_id`` is 0 and ``spi`` empty unless the notify concerns a Child SA."""

    notify_type: int
    data: bytes = b""
    protocol_id: int = 0
    spi: bytes = b""
    payload_type: ClassVar[int] = PAYLOAD_NOTIFY

    @property
    def is_error(self) -> bool:
        """Types 0-16383 report errors (§3.10.1)."""
        return self.notify_type <= NOTIFY_ERROR_MAX


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """D (§3.11): protocol 1 (IKE) with SPI size 0 and no SPIs, or AH/ESP with 4-byte SPIs."""

    protocol_id: int
    spi_size: int = 0
    spis: tuple[bytes, ...] = ()
    payload_type: ClassVar[int] = PAYLOAD_DELETE


@dataclass(frozen=True, slots=True)
class VendorIdPayload:
    """V (§3.12)."""

    vendor_id: bytes
    payload_type: ClassVar[int] = PAYLOAD_VENDOR_ID


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """TS_IPV4_ADDR_RANGE / TS_IPV6_ADDR_RANGE (§3.13.1); "any port" is 0..65535."""

    ts_type: int
    start_address: str
    end_address: str
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 0xFFFF


@dataclass(frozen=True, slots=True)
class UnknownTrafficSelector:
    """A TS Type other than 7 and 8: its second octet and the bytes after the 4-byte selector header."""

    ts_type: int
    second_octet: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TsiPayload:
    """TSi (§3.13): selectors at the initiator's end."""

    selectors: tuple[TrafficSelector | UnknownTrafficSelector, ...]
    payload_type: ClassVar[int] = PAYLOAD_TSI


@dataclass(frozen=True, slots=True)
class TsrPayload:
    """TSr (§3.13): selectors at the responder's end."""

    selectors: tuple[TrafficSelector | UnknownTrafficSelector, ...]
    payload_type: ClassVar[int] = PAYLOAD_TSR


@dataclass(frozen=True, slots=True)
class EncryptedPayload:
    """SK (§3.14, RFC 5282 §3): ``first_payload`` is the type of the first payload inside.

    ``data`` is IV | ciphertext | ICV as on the wire; ``lab.ike.keys`` splits
    and decrypts it.
    """

    first_payload: int
    data: bytes
    payload_type: ClassVar[int] = PAYLOAD_SK


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload type this codec does not parse; the caller honours ``critical`` (§2.5)."""

    payload_type: int
    body: bytes
    critical: bool = False


Payload = (
    SaPayload
    | KePayload
    | IdiPayload
    | IdrPayload
    | AuthPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | TsiPayload
    | TsrPayload
    | EncryptedPayload
    | UnknownPayload
)


@dataclass(frozen=True, slots=True)
class IkeMessage:
    """A whole IKE message; its header's Next Payload and Length follow from ``payloads``."""

    spi_i: bytes
    spi_r: bytes
    exchange_type: int
    message_id: int
    payloads: tuple[Payload, ...] = ()
    initiator: bool = False
    response: bool = False
    higher_version: bool = False
    major_version: int = IKE_MAJOR_VERSION
    minor_version: int = IKE_MINOR_VERSION
    reserved_flags: int = 0

    def payload(self, cls: type[Payload]) -> Payload | None:
        """The first payload of class ``cls``, or None."""
        for p in self.payloads:
            if type(p) is cls:
                return p
        return None

    def notifies(self, notify_type: int | None = None) -> list[NotifyPayload]:
        """Every Notify payload, or those of ``notify_type``."""
        return [
            p
            for p in self.payloads
            if type(p) is NotifyPayload and (notify_type is None or p.notify_type == notify_type)
        ]


# --- SA payload body -----------------------------------------------------------------------------------


def pull_transform_attribute(buf: Buffer) -> TransformAttribute:
    first = buf.pull_u16("attribute_type")
    attribute_type = first & ~ATTRIBUTE_FORMAT_TV & 0xFFFF
    if first & ATTRIBUTE_FORMAT_TV:
        return TransformAttribute(attribute_type, buf.pull_u16("attribute_value"))
    length = buf.pull_u16("attribute_length")
    return TransformAttribute(attribute_type, buf.pull_bytes(length, "attribute_value"))


def push_transform_attribute(attr: TransformAttribute) -> bytes:
    out = Writer()
    bits(attr.attribute_type, 15, "attribute_type")
    if isinstance(attr.value, int):
        out.push_u16(ATTRIBUTE_FORMAT_TV | attr.attribute_type, "attribute_type")
        out.push_u16(attr.value, "attribute_value")
    else:
        out.push_u16(attr.attribute_type, "attribute_type")
        out.push_u16(len(attr.value), "attribute_length")
        out.push_raw(attr.value)
    return out.data()


def pull_transform(buf: Buffer) -> tuple[Transform, bool]:
    """One transform and whether more follow (Last Substruc 3)."""
    start = buf.tell()
    last = buf.pull_u8("last_substruc")
    if last not in (LAST_SUBSTRUCTURE, MORE_TRANSFORMS):
        raise DecodeError(f"transform Last Substruc {last}, expected 0 or 3", field="last_substruc", offset=start)
    buf.pull_u8("reserved")
    length = buf.pull_u16("transform_length")
    if length < TRANSFORM_HEADER_LEN:
        raise DecodeError(f"transform length {length} is below 8", field="transform_length", offset=start + 2)
    transform_type = buf.pull_u8("transform_type")
    buf.pull_u8("reserved")
    transform_id = buf.pull_u16("transform_id")
    inner = _sub_buffer(buf, length - TRANSFORM_HEADER_LEN, "transform_length", start + 2)
    attributes = []
    while not inner.eof():
        attributes.append(pull_transform_attribute(inner))
    return Transform(transform_type, transform_id, tuple(attributes)), last == MORE_TRANSFORMS


def push_transform(transform: Transform, *, last: bool) -> bytes:
    attributes = b"".join(push_transform_attribute(a) for a in transform.attributes)
    out = Writer()
    out.push_u8(LAST_SUBSTRUCTURE if last else MORE_TRANSFORMS, "last_substruc")
    out.push_u8(0, "reserved")
    out.push_u16(TRANSFORM_HEADER_LEN + len(attributes), "transform_length")
    out.push_u8(transform.transform_type, "transform_type")
    out.push_u8(0, "reserved")
    out.push_u16(transform.transform_id, "transform_id")
    out.push_raw(attributes)
    return out.data()


def pull_proposal(buf: Buffer) -> tuple[Proposal, bool]:
    """One proposal and whether more follow (Last Substruc 2)."""
    start = buf.tell()
    last = buf.pull_u8("last_substruc")
    if last not in (LAST_SUBSTRUCTURE, MORE_PROPOSALS):
        raise DecodeError(f"proposal Last Substruc {last}, expected 0 or 2", field="last_substruc", offset=start)
    buf.pull_u8("reserved")
    length = buf.pull_u16("proposal_length")
    if length < PROPOSAL_HEADER_LEN:
        raise DecodeError(f"proposal length {length} is below 8", field="proposal_length", offset=start + 2)
    number = buf.pull_u8("proposal_num")
    protocol_id = buf.pull_u8("protocol_id")
    spi_size = buf.pull_u8("spi_size")
    num_transforms = buf.pull_u8("num_transforms")
    inner = _sub_buffer(buf, length - PROPOSAL_HEADER_LEN, "proposal_length", start + 2)
    spi = inner.pull_bytes(spi_size, "spi")
    transforms = []
    more = not inner.eof()
    while more:
        transform, more = pull_transform(inner)
        transforms.append(transform)
        if more and inner.eof():
            raise DecodeError("Last Substruc says more transforms follow", field="last_substruc", offset=inner.tell())
    if not inner.eof():
        raise DecodeError("bytes after the last transform", field="proposal_length", offset=inner.tell())
    if len(transforms) != num_transforms:
        raise DecodeError(
            f"{len(transforms)} transforms, Num Transforms says {num_transforms}",
            field="num_transforms",
            offset=start + 7,
        )
    return Proposal(number, protocol_id, tuple(transforms), spi), last == MORE_PROPOSALS


def push_proposal(proposal: Proposal, *, last: bool) -> bytes:
    count = len(proposal.transforms)
    transforms = b"".join(push_transform(t, last=i == count - 1) for i, t in enumerate(proposal.transforms))
    out = Writer()
    out.push_u8(LAST_SUBSTRUCTURE if last else MORE_PROPOSALS, "last_substruc")
    out.push_u8(0, "reserved")
    out.push_u16(PROPOSAL_HEADER_LEN + len(proposal.spi) + len(transforms), "proposal_length")
    out.push_u8(proposal.number, "proposal_num")
    out.push_u8(proposal.protocol_id, "protocol_id")
    out.push_u8(len(proposal.spi), "spi_size")
    out.push_u8(count, "num_transforms")
    out.push_raw(proposal.spi)
    out.push_raw(transforms)
    return out.data()


def pull_sa_payload(buf: Buffer) -> SaPayload:
    proposals = []
    more = True
    while more:
        proposal, more = pull_proposal(buf)
        proposals.append(proposal)
        if more and buf.eof():
            raise DecodeError("Last Substruc says more proposals follow", field="last_substruc", offset=buf.tell())
    if not buf.eof():
        raise DecodeError("bytes after the last proposal", field="payload_length", offset=buf.tell())
    return SaPayload(tuple(proposals))


def push_sa_payload(payload: SaPayload) -> bytes:
    if not payload.proposals:
        raise ValueError("an SA payload carries at least one proposal")
    count = len(payload.proposals)
    return b"".join(push_proposal(p, last=i == count - 1) for i, p in enumerate(payload.proposals))


# --- the other payload bodies ----------------------------------------------------------------------------


def pull_ke_payload(buf: Buffer) -> KePayload:
    dh_group = buf.pull_u16("dh_group")
    buf.pull_u16("reserved")
    return KePayload(dh_group, buf.pull_rest())


def push_ke_payload(payload: KePayload) -> bytes:
    out = Writer()
    out.push_u16(payload.dh_group, "dh_group")
    out.push_u16(0, "reserved")
    out.push_raw(payload.key_data)
    return out.data()


def pull_idi_payload(buf: Buffer) -> IdiPayload:
    id_type = buf.pull_u8("id_type")
    buf.pull_bytes(3, "reserved")
    return IdiPayload(id_type, buf.pull_rest())


def push_idi_payload(payload: IdiPayload) -> bytes:
    return _push_id(payload.id_type, payload.data)


def pull_idr_payload(buf: Buffer) -> IdrPayload:
    id_type = buf.pull_u8("id_type")
    buf.pull_bytes(3, "reserved")
    return IdrPayload(id_type, buf.pull_rest())


def push_idr_payload(payload: IdrPayload) -> bytes:
    return _push_id(payload.id_type, payload.data)


def _push_id(id_type: int, data: bytes) -> bytes:
    out = Writer()
    out.push_u8(id_type, "id_type")
    out.push_raw(bytes(3))
    out.push_raw(data)
    return out.data()


def pull_auth_payload(buf: Buffer) -> AuthPayload:
    method = buf.pull_u8("auth_method")
    buf.pull_bytes(3, "reserved")
    return AuthPayload(method, buf.pull_rest())


def push_auth_payload(payload: AuthPayload) -> bytes:
    out = Writer()
    out.push_u8(payload.method, "auth_method")
    out.push_raw(bytes(3))
    out.push_raw(payload.data)
    return out.data()


def pull_nonce_payload(buf: Buffer) -> NoncePayload:
    return NoncePayload(buf.pull_rest())


def push_nonce_payload(payload: NoncePayload) -> bytes:
    return bytes(payload.nonce)


def pull_notify_payload(buf: Buffer) -> NotifyPayload:
    protocol_id = buf.pull_u8("protocol_id")
    spi_size = buf.pull_u8("spi_size")
    notify_type = buf.pull_u16("notify_type")
    spi = buf.pull_bytes(spi_size, "spi")
    return NotifyPayload(notify_type=notify_type, data=buf.pull_rest(), protocol_id=protocol_id, spi=spi)


def push_notify_payload(payload: NotifyPayload) -> bytes:
    out = Writer()
    out.push_u8(payload.protocol_id, "protocol_id")
    out.push_u8(len(payload.spi), "spi_size")
    out.push_u16(payload.notify_type, "notify_type")
    out.push_raw(payload.spi)
    out.push_raw(payload.data)
    return out.data()


def pull_delete_payload(buf: Buffer) -> DeletePayload:
    protocol_id = buf.pull_u8("protocol_id")
    spi_size = buf.pull_u8("spi_size")
    num_spis = buf.pull_u16("num_spis")
    spis = tuple(buf.pull_bytes(spi_size, "spi") for _ in range(num_spis))
    if not buf.eof():
        raise DecodeError(f"bytes after {num_spis} SPIs", field="num_spis", offset=buf.tell())
    return DeletePayload(protocol_id, spi_size, spis)


def push_delete_payload(payload: DeletePayload) -> bytes:
    out = Writer()
    out.push_u8(payload.protocol_id, "protocol_id")
    out.push_u8(payload.spi_size, "spi_size")
    out.push_u16(len(payload.spis), "num_spis")
    for spi in payload.spis:
        out.push_bytes(spi, payload.spi_size, "spi")
    return out.data()


def pull_vendor_id_payload(buf: Buffer) -> VendorIdPayload:
    return VendorIdPayload(buf.pull_rest())


def push_vendor_id_payload(payload: VendorIdPayload) -> bytes:
    return bytes(payload.vendor_id)


def pull_traffic_selector(buf: Buffer) -> TrafficSelector | UnknownTrafficSelector:
    start = buf.tell()
    ts_type = buf.pull_u8("ts_type")
    second = buf.pull_u8("ip_protocol")
    length = buf.pull_u16("selector_length")
    if length < TS_HEADER_LEN:
        raise DecodeError(f"selector length {length} is below 4", field="selector_length", offset=start + 2)
    inner = _sub_buffer(buf, length - TS_HEADER_LEN, "selector_length", start + 2)
    if ts_type not in _TS_ADDRESS_LEN:
        return UnknownTrafficSelector(ts_type, second, inner.pull_rest())
    size = _TS_ADDRESS_LEN[ts_type]
    if length != TS_HEADER_LEN + 4 + 2 * size:
        raise DecodeError(
            f"selector length {length} for TS type {ts_type}, expected {TS_HEADER_LEN + 4 + 2 * size}",
            field="selector_length",
            offset=start + 2,
        )
    start_port = inner.pull_u16("start_port")
    end_port = inner.pull_u16("end_port")
    family = _TS_FAMILY[ts_type]
    start_address = socket.inet_ntop(family, inner.pull_bytes(size, "start_address"))
    end_address = socket.inet_ntop(family, inner.pull_bytes(size, "end_address"))
    return TrafficSelector(ts_type, start_address, end_address, second, start_port, end_port)


def push_traffic_selector(ts: TrafficSelector | UnknownTrafficSelector) -> bytes:
    out = Writer()
    out.push_u8(ts.ts_type, "ts_type")
    if isinstance(ts, UnknownTrafficSelector):
        out.push_u8(ts.second_octet, "ip_protocol")
        out.push_u16(TS_HEADER_LEN + len(ts.data), "selector_length")
        out.push_raw(ts.data)
        return out.data()
    if ts.ts_type not in _TS_ADDRESS_LEN:
        raise ValueError(f"TS type {ts.ts_type} has no address layout; use UnknownTrafficSelector")
    family = _TS_FAMILY[ts.ts_type]
    out.push_u8(ts.ip_protocol, "ip_protocol")
    out.push_u16(TS_HEADER_LEN + 4 + 2 * _TS_ADDRESS_LEN[ts.ts_type], "selector_length")
    out.push_u16(ts.start_port, "start_port")
    out.push_u16(ts.end_port, "end_port")
    out.push_raw(_pack_address(family, ts.start_address))
    out.push_raw(_pack_address(family, ts.end_address))
    return out.data()


def _pull_selectors(buf: Buffer) -> tuple[TrafficSelector | UnknownTrafficSelector, ...]:
    start = buf.tell()
    count = buf.pull_u8("number_of_tss")
    buf.pull_bytes(3, "reserved")
    selectors = []
    while not buf.eof():
        selectors.append(pull_traffic_selector(buf))
    if len(selectors) != count:
        raise DecodeError(
            f"{len(selectors)} selectors, Number of TSs says {count}", field="number_of_tss", offset=start
        )
    return tuple(selectors)


def _push_selectors(selectors: tuple[TrafficSelector | UnknownTrafficSelector, ...]) -> bytes:
    out = Writer()
    out.push_u8(len(selectors), "number_of_tss")
    out.push_raw(bytes(3))
    for ts in selectors:
        out.push_raw(push_traffic_selector(ts))
    return out.data()


def pull_tsi_payload(buf: Buffer) -> TsiPayload:
    return TsiPayload(_pull_selectors(buf))


def push_tsi_payload(payload: TsiPayload) -> bytes:
    return _push_selectors(payload.selectors)


def pull_tsr_payload(buf: Buffer) -> TsrPayload:
    return TsrPayload(_pull_selectors(buf))


def push_tsr_payload(payload: TsrPayload) -> bytes:
    return _push_selectors(payload.selectors)


_PULL = {
    PAYLOAD_SA: pull_sa_payload,
    PAYLOAD_KE: pull_ke_payload,
    PAYLOAD_IDI: pull_idi_payload,
    PAYLOAD_IDR: pull_idr_payload,
    PAYLOAD_AUTH: pull_auth_payload,
    PAYLOAD_NONCE: pull_nonce_payload,
    PAYLOAD_NOTIFY: pull_notify_payload,
    PAYLOAD_DELETE: pull_delete_payload,
    PAYLOAD_VENDOR_ID: pull_vendor_id_payload,
    PAYLOAD_TSI: pull_tsi_payload,
    PAYLOAD_TSR: pull_tsr_payload,
}
_PUSH = {
    SaPayload: push_sa_payload,
    KePayload: push_ke_payload,
    IdiPayload: push_idi_payload,
    IdrPayload: push_idr_payload,
    AuthPayload: push_auth_payload,
    NoncePayload: push_nonce_payload,
    NotifyPayload: push_notify_payload,
    DeletePayload: push_delete_payload,
    VendorIdPayload: push_vendor_id_payload,
    TsiPayload: push_tsi_payload,
    TsrPayload: push_tsr_payload,
}
KNOWN_PAYLOAD_TYPES = frozenset(_PULL) | {PAYLOAD_SK}


def push_payload_body(payload: Payload) -> bytes:
    """The bytes after a payload's generic header. Raises ValueError when a field does not fit."""
    if isinstance(payload, EncryptedPayload):
        return bytes(payload.data)
    if isinstance(payload, UnknownPayload):
        if payload.payload_type in KNOWN_PAYLOAD_TYPES or not 0 < payload.payload_type <= 0xFF:
            raise ValueError(f"payload type {payload.payload_type} is known or not a payload type; use its own class")
        return bytes(payload.body)
    return _PUSH[type(payload)](payload)


# --- the payload chain -----------------------------------------------------------------------------------


def pull_payload_chain(buf: Buffer, first_payload: int, *, allow_encrypted: bool = True) -> tuple[Payload, ...]:
    """Read payloads from ``first_payload`` until Next Payload 0; the chain must fill ``buf``.

    An Encrypted payload ends the chain (its Next Payload names the first
    inner payload). ``allow_encrypted=False`` (inside SK: "MUST NOT contain
    another Encrypted payload", §3.1) makes one a DecodeError, as are a
    Payload Length below 4 or past the end, a chain that ends early or
    leaves bytes over, and a known payload whose body does not parse.
    """
    payloads: list[Payload] = []
    next_type = first_payload
    while next_type != NO_NEXT_PAYLOAD:
        start = buf.tell()
        this_type = next_type
        next_type = buf.pull_u8("next_payload")
        critical = bool(buf.pull_u8("critical") & CRITICAL_BIT)
        length = buf.pull_u16("payload_length")
        if length < GENERIC_HEADER_LEN:
            raise DecodeError(f"payload length {length} is below 4", field="payload_length", offset=start + 2)
        body = _sub_buffer(buf, length - GENERIC_HEADER_LEN, "payload_length", start + 2)
        if this_type == PAYLOAD_SK:
            if not allow_encrypted:
                raise DecodeError(
                    "an Encrypted payload inside an Encrypted payload", field="next_payload", offset=start
                )
            payloads.append(EncryptedPayload(next_type, body.pull_rest()))
            if not buf.eof():
                raise DecodeError("payloads after the Encrypted payload", field="next_payload", offset=buf.tell())
            return tuple(payloads)
        pull = _PULL.get(this_type)
        if pull is None:
            payloads.append(UnknownPayload(this_type, body.pull_rest(), critical))
            continue
        payload = pull(body)
        if not body.eof():  # every pull_* above consumes its whole body or raises
            raise DecodeError("bytes left in the payload", field="payload_length", offset=body.tell())
        payloads.append(payload)
    if not buf.eof():
        raise DecodeError(f"{buf.remaining()} bytes after the last payload", field="next_payload", offset=buf.tell())
    return tuple(payloads)


def push_payload_chain(payloads: tuple[Payload, ...] | list[Payload]) -> tuple[int, bytes]:
    """(type of the first payload, encoded chain). Raises ValueError if SK is not last or a payload is too long."""
    parts = []
    for i, payload in enumerate(payloads):
        last = i == len(payloads) - 1
        if isinstance(payload, EncryptedPayload):
            if not last:
                raise ValueError("the Encrypted payload must be the last payload (RFC 7296 §3.14)")
            next_type = payload.first_payload
        else:
            next_type = NO_NEXT_PAYLOAD if last else payloads[i + 1].payload_type
        critical = isinstance(payload, UnknownPayload) and payload.critical
        body = push_payload_body(payload)
        out = Writer()
        out.push_u8(next_type, "next_payload")
        out.push_u8(CRITICAL_BIT if critical else 0, "critical")
        out.push_u16(GENERIC_HEADER_LEN + len(body), "payload_length")
        out.push_raw(body)
        parts.append(out.data())
    first = payloads[0].payload_type if payloads else NO_NEXT_PAYLOAD
    return first, b"".join(parts)


# --- the message ----------------------------------------------------------------------------------------


def pull_ike_message(buf: Buffer) -> IkeMessage:
    """Read one message (exactly header Length bytes).

    Raises DecodeError when the data is shorter than Length or the payloads
    do not fill it exactly. The major version is not checked (an IKEv2
    endpoint answers INVALID_MAJOR_VERSION itself, §2.5).
    """
    start = buf.tell()
    header = pull_ike_header(buf)
    body = _sub_buffer(buf, header.length - IKE_HEADER_LEN, "length", start + 24)
    payloads = pull_payload_chain(body, header.next_payload)
    return IkeMessage(
        spi_i=header.spi_i,
        spi_r=header.spi_r,
        exchange_type=header.exchange_type,
        message_id=header.message_id,
        payloads=payloads,
        initiator=header.initiator,
        response=header.response,
        higher_version=header.higher_version,
        major_version=header.major_version,
        minor_version=header.minor_version,
        reserved_flags=header.reserved_flags,
    )


def push_ike_message(message: IkeMessage) -> bytes:
    """Raises ValueError when a field does not fit or SK is not the last payload."""
    first, chain = push_payload_chain(message.payloads)
    header = IkeHeader(
        spi_i=message.spi_i,
        spi_r=message.spi_r,
        next_payload=first,
        exchange_type=message.exchange_type,
        message_id=message.message_id,
        length=IKE_HEADER_LEN + len(chain),
        initiator=message.initiator,
        response=message.response,
        higher_version=message.higher_version,
        major_version=message.major_version,
        minor_version=message.minor_version,
        reserved_flags=message.reserved_flags,
    )
    return push_ike_header(header) + chain


def decode_ike_message(data: bytes) -> IkeMessage:
    """Decode ``data`` as exactly one message; trailing bytes are a DecodeError naming ``length``."""
    buf = Buffer(data)
    message = pull_ike_message(buf)
    if not buf.eof():
        raise DecodeError(f"{buf.remaining()} bytes after the message's Length", field="length", offset=24)
    return message


def encode_ike_message(message: IkeMessage) -> bytes:
    return push_ike_message(message)


# --- UDP port 4500 (RFC 3948) ---------------------------------------------------------------------------


def add_non_esp_marker(message: bytes) -> bytes:
    """An IKE message as the payload of a UDP datagram on port 4500."""
    return NON_ESP_MARKER + message


def strip_non_esp_marker(payload: bytes) -> bytes:
    """The IKE message in a port-4500 UDP payload; DecodeError naming ``non_esp_marker`` if it is ESP or short."""
    if len(payload) < len(NON_ESP_MARKER) or payload[:4] != NON_ESP_MARKER:
        raise DecodeError("no non-ESP marker", field="non_esp_marker", offset=0)
    return payload[4:]


def classify_udp_4500(payload: bytes) -> str:
    """``"ike"`` (non-ESP marker), ``"esp"`` (non-zero SPI) or ``"keepalive"`` (0xFF), RFC 3948 §2.

    Raises DecodeError naming ``non_esp_marker`` when the payload is none of them
    (shorter than 4 bytes and not the keepalive).
    """
    if payload == NAT_KEEPALIVE:
        return "keepalive"
    if len(payload) < 4:
        raise DecodeError(f"{len(payload)}-byte payload is neither IKE nor ESP", field="non_esp_marker", offset=0)
    return "ike" if payload[:4] == NON_ESP_MARKER else "esp"


# --- helpers --------------------------------------------------------------------------------------------


def _nibble(value: int, field: str) -> int:
    return bits(value, 4, field)


def _flags(initiator: bool, response: bool, higher_version: bool, reserved: int) -> int:
    if reserved & ~FLAGS_RESERVED_MASK & 0xFF or not 0 <= reserved <= 0xFF:
        raise ValueError(f"reserved_flags 0x{reserved:02x} overlaps the I, V or R bits")
    return (
        (FLAG_INITIATOR if initiator else 0)
        | (FLAG_RESPONSE if response else 0)
        | (FLAG_VERSION if higher_version else 0)
        | reserved
    )


def _sub_buffer(buf: Buffer, n: int, field: str, field_offset: int) -> Buffer:
    """The next ``n`` bytes as their own Buffer (offsets kept); DecodeError naming ``field`` if they run out."""
    if n > buf.remaining():
        raise DecodeError(f"{field} needs {n} more bytes, have {buf.remaining()}", field=field, offset=field_offset)
    start = buf.tell()
    return Buffer(buf.pull_bytes(n, field), base_offset=start)


def _pack_address(family: int, address: str) -> bytes:
    try:
        return socket.inet_pton(family, address)
    except (OSError, TypeError):
        kind = "IPv4" if family == socket.AF_INET else "IPv6"
        raise ValueError(f"address {address!r} is not {kind}") from None

# CERT and CERTREQ (RFC 7296 §3.6, §3.7) live in their own module, which adds them to the tables
# above; imported here so that the codec is the same whoever imported what
from lab.wire import ikev2_cert  # noqa: E402, F401
