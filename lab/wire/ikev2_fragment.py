"""The Encrypted and Authenticated Fragment payload SKF (RFC 7383 §2.5) and the message that carries it.

::

                         1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Next Payload  |C|  RESERVED   |         Payload Length        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Fragment Number        |        Total Fragments        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Initialization Vector                     |
    ~                    Encrypted content | Padding | Pad Length   ~
    |                   Integrity Checksum Data                     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Payload type 53. Next Payload is the type of the first inner payload in
fragment 1 and 0 in the others; Fragment Number counts from 1 and never
exceeds Total Fragments; neither is 0 (§2.5). SKF is the last payload. This
codec reads messages whose only payload is SKF (the lab's fragmented
messages carry no unprotected payloads); anything else is a DecodeError.
``data`` is IV | ciphertext | ICV, as EncryptedPayload's is; lab.ike.fragmentation
encrypts and decrypts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lab.errors import DecodeError
from lab.wire.buffer import Buffer, Writer
from lab.wire.ikev2 import (
    GENERIC_HEADER_LEN,
    IKE_HEADER_LEN,
    PAYLOAD_SKF,
    IkeHeader,
    pull_ike_header,
    push_ike_header,
)

SKF_FIXED_LEN = GENERIC_HEADER_LEN + 4  # generic header, Fragment Number, Total Fragments
MAX_FRAGMENTS = 0xFFFF  # Total Fragments is 16 bits


@dataclass(frozen=True, slots=True)
class EncryptedFragmentPayload:
    """SKF (RFC 7383 §2.5): ``first_payload`` is 0 except in fragment 1."""

    first_payload: int
    fragment_number: int
    total_fragments: int
    data: bytes
    payload_type: ClassVar[int] = PAYLOAD_SKF


@dataclass(frozen=True, slots=True)
class FragmentMessage:
    """One IKE message whose only payload is SKF."""

    header: IkeHeader
    fragment: EncryptedFragmentPayload


def pull_encrypted_fragment_payload(buf: Buffer, first_payload: int) -> EncryptedFragmentPayload:
    """The body after the generic header. Raises DecodeError naming ``fragment_number`` or ``total_fragments``."""
    start = buf.tell()
    number = buf.pull_u16("fragment_number")
    total = buf.pull_u16("total_fragments")
    if total == 0:
        raise DecodeError("Total Fragments is 0", field="total_fragments", offset=start + 2)
    if not 1 <= number <= total:
        raise DecodeError(f"Fragment Number {number} outside 1..{total}", field="fragment_number", offset=start)
    return EncryptedFragmentPayload(first_payload, number, total, buf.pull_rest())


def push_encrypted_fragment_payload(payload: EncryptedFragmentPayload) -> bytes:
    """The whole payload, generic header included, as the last payload. Raises ValueError when a field does not fit."""
    if not 1 <= payload.fragment_number <= payload.total_fragments:
        raise ValueError(f"Fragment Number {payload.fragment_number} outside 1..{payload.total_fragments}")
    out = Writer()
    out.push_u8(payload.first_payload, "next_payload")
    out.push_u8(0, "critical")
    out.push_u16(SKF_FIXED_LEN + len(payload.data), "payload_length")
    out.push_u16(payload.fragment_number, "fragment_number")
    out.push_u16(payload.total_fragments, "total_fragments")
    out.push_raw(payload.data)
    return out.data()


def encode_fragment_message(header: IkeHeader, payload: EncryptedFragmentPayload) -> bytes:
    """Header (Next Payload and Length recomputed) followed by SKF. Raises ValueError when a field does not fit."""
    body = push_encrypted_fragment_payload(payload)
    fixed = IkeHeader(
        spi_i=header.spi_i,
        spi_r=header.spi_r,
        next_payload=PAYLOAD_SKF,
        exchange_type=header.exchange_type,
        message_id=header.message_id,
        length=IKE_HEADER_LEN + len(body),
        initiator=header.initiator,
        response=header.response,
        higher_version=header.higher_version,
        major_version=header.major_version,
        minor_version=header.minor_version,
        reserved_flags=header.reserved_flags,
    )
    return push_ike_header(fixed) + body


def decode_fragment_message(data: bytes) -> FragmentMessage:
    """Decode a message whose only payload is SKF.

    Raises DecodeError when the header's Next Payload is not 53, the lengths
    disagree with the data, or Fragment Number / Total Fragments are invalid.
    """
    buf = Buffer(data)
    header = pull_ike_header(buf)
    if header.next_payload != PAYLOAD_SKF:
        raise DecodeError(
            f"first payload {header.next_payload} is not an Encrypted Fragment payload", field="next_payload", offset=16
        )
    if header.length != len(data):
        raise DecodeError(f"message length {header.length} but {len(data)} bytes", field="length", offset=24)
    first_payload = buf.pull_u8("next_payload")
    buf.pull_u8("critical")  # the C bit of a known payload is ignored (RFC 7296 §3.2)
    length = buf.pull_u16("payload_length")
    if length != len(data) - IKE_HEADER_LEN:
        raise DecodeError(
            f"Encrypted Fragment payload length {length}, {len(data) - IKE_HEADER_LEN} bytes follow the header",
            field="payload_length",
            offset=IKE_HEADER_LEN + 2,
        )
    if length < SKF_FIXED_LEN:
        raise DecodeError(f"payload length {length} is below {SKF_FIXED_LEN}", field="payload_length", offset=30)
    return FragmentMessage(header, pull_encrypted_fragment_payload(buf, first_payload))


def is_fragment_message(data: bytes) -> bool:
    """True when ``data`` looks like an IKE message whose first payload is SKF (for dispatching before decoding)."""
    return len(data) >= IKE_HEADER_LEN and data[16] == PAYLOAD_SKF


__all__ = [
    "MAX_FRAGMENTS",
    "SKF_FIXED_LEN",
    "EncryptedFragmentPayload",
    "FragmentMessage",
    "decode_fragment_message",
    "encode_fragment_message",
    "is_fragment_message",
    "pull_encrypted_fragment_payload",
    "push_encrypted_fragment_payload",
]
