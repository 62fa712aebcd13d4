"""CERT (RFC 7296 §3.6) and CERTREQ (§3.7) payloads, registered with lab.wire.ikev2's payload chain.

::

    CERT     | Cert Encoding (1) | Certificate Data ...           |
    CERTREQ  | Cert Encoding (1) | Certification Authority ...    |

For "X.509 Certificate - Signature" (encoding 4) the Certificate Data is
one DER certificate, and CERTREQ's Certification Authority field is the
concatenation of the SHA-1 hashes (20 octets each) of the SubjectPublicKeyInfo
of every CA the sender trusts (§3.7). Other encodings stay opaque bytes.

Importing this module adds both payloads to lab.wire.ikev2's tables, so
``decode_ike_message`` and ``pull_payload_chain`` return CertPayload and
CertreqPayload instead of UnknownPayload from then on (the registration is
idempotent). Payload types: CERT 37, CERTREQ 38 (RFC 7296 §3.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from lab.errors import DecodeError
from lab.wire import ikev2
from lab.wire.buffer import Buffer, Writer
from lab.wire.ikev2 import PAYLOAD_CERT, PAYLOAD_CERTREQ

CERT_PKCS7_X509 = 1  # Certificate Encoding, RFC 7296 §3.6
CERT_X509_SIGNATURE = 4  # "X.509 Certificate - Signature": one DER certificate
CERT_CRL = 7
CERT_HASH_AND_URL_X509 = 12
CERT_HASH_AND_URL_X509_BUNDLE = 13
CA_HASH_LEN = 20  # SHA-1 of the CA's SubjectPublicKeyInfo, §3.7


@dataclass(frozen=True, slots=True)
class CertPayload:
    """CERT (§3.6)."""

    encoding: int
    data: bytes
    payload_type: ClassVar[int] = PAYLOAD_CERT


@dataclass(frozen=True, slots=True)
class CertreqPayload:
    """CERTREQ (§3.7); for X.509 ``authority`` is SHA-1(SPKI) of each trusted CA, concatenated."""

    encoding: int
    authority: bytes = b""
    payload_type: ClassVar[int] = PAYLOAD_CERTREQ

    @property
    def ca_hashes(self) -> tuple[bytes, ...]:
        """The 20-octet hashes of an X.509 request (empty for other encodings)."""
        if self.encoding != CERT_X509_SIGNATURE:
            return ()
        return tuple(self.authority[i : i + CA_HASH_LEN] for i in range(0, len(self.authority), CA_HASH_LEN))


def ca_hash(subject_public_key_info_der: bytes) -> bytes:
    """SHA-1 of a DER SubjectPublicKeyInfo: one entry of CERTREQ's Certification Authority field."""
    return hashlib.sha1(subject_public_key_info_der).digest()


def pull_cert_payload(buf: Buffer) -> CertPayload:
    """Raises DecodeError naming ``cert_encoding`` for an empty body."""
    encoding = buf.pull_u8("cert_encoding")
    return CertPayload(encoding, buf.pull_rest())


def push_cert_payload(payload: CertPayload) -> bytes:
    out = Writer()
    out.push_u8(payload.encoding, "cert_encoding")
    out.push_raw(payload.data)
    return out.data()


def pull_certreq_payload(buf: Buffer) -> CertreqPayload:
    """Raises DecodeError naming ``certification_authority`` when an X.509 request is not whole 20-octet hashes."""
    encoding = buf.pull_u8("cert_encoding")
    start = buf.tell()
    authority = buf.pull_rest()
    if encoding == CERT_X509_SIGNATURE and len(authority) % CA_HASH_LEN:
        raise DecodeError(
            f"{len(authority)} octets of CA hashes, not a multiple of {CA_HASH_LEN}",
            field="certification_authority",
            offset=start,
        )
    return CertreqPayload(encoding, authority)


def push_certreq_payload(payload: CertreqPayload) -> bytes:
    """Raises ValueError when an X.509 request's authority field is not whole 20-octet hashes."""
    if payload.encoding == CERT_X509_SIGNATURE and len(payload.authority) % CA_HASH_LEN:
        raise ValueError(f"{len(payload.authority)} octets of CA hashes, not a multiple of {CA_HASH_LEN}")
    out = Writer()
    out.push_u8(payload.encoding, "cert_encoding")
    out.push_raw(payload.authority)
    return out.data()


def register() -> None:
    """Make lab.wire.ikev2 parse and emit CERT and CERTREQ (done on import; calling again changes nothing)."""
    ikev2._PULL[PAYLOAD_CERT] = pull_cert_payload
    ikev2._PULL[PAYLOAD_CERTREQ] = pull_certreq_payload
    ikev2._PUSH[CertPayload] = push_cert_payload
    ikev2._PUSH[CertreqPayload] = push_certreq_payload
    ikev2.KNOWN_PAYLOAD_TYPES = ikev2.KNOWN_PAYLOAD_TYPES | {PAYLOAD_CERT, PAYLOAD_CERTREQ}


register()
