"""The lab's small PKI: a root CA, optional intermediates, end-entity certificates, chain validation.

Scenarios authenticate IKE with certificates (RFC 7296 §2.15 with RFC 7427
signatures) instead of a PSK; this module makes the certificates and checks
a peer's chain. ECDSA scalars and serial numbers come from the run's
``random.Random`` (not a CSPRNG: fine for a lab, never for real keys) and
certificates are signed with deterministic schemes (RSA PKCS#1 v1.5 with
SHA-256, ECDSA with RFC 6979 nonces), so with ECDSA a seed gives the same
PKI every run. RSA keys come from OpenSSL (fast, different every run)
unless ``reproducible_rsa`` draws their primes from ``rng`` in pure Python
(about a second per 2048-bit key, several for 3072). Key types: RSA 2048 and 3072, ECDSA P-256 (and P-384).

End-entity certificates carry the name as a dNSName subjectAltName (the
IKE identity of ID type FQDN), digitalSignature key usage and the ipsecIKE
extended key usage (RFC 4945 §5.1.3.12). ``chain_payloads`` and
``certreq_payload`` make the CERT (one per certificate, end entity first,
RFC 7296 §3.6) and CERTREQ payloads. ``validate_chain`` builds the path
from the end entity through the intermediates the peer sent to one of our
trust anchors and checks every signature, validity period, basic
constraints, path length and key usage (RFC 5280 §6.1, simplified: no
policies, name constraints or revocation). It never reads a clock.
"""

from __future__ import annotations

import copyreg
import datetime as dt
import ipaddress
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from lab.errors import RemoteProtocolError
from lab.wire.ikev2 import ID_DER_ASN1_DN, ID_FQDN, ID_IPV4_ADDR, ID_IPV6_ADDR
from lab.wire.ikev2_cert import CERT_X509_SIGNATURE, CertPayload, CertreqPayload, ca_hash

KEY_TYPES = ("rsa-2048", "rsa-3072", "ecdsa-p256", "ecdsa-p384")
IPSEC_IKE_EKU = ObjectIdentifier("1.3.6.1.5.5.7.3.17")  # id-kp-ipsecIKE, RFC 4945 §5.1.3.12
RSA_PUBLIC_EXPONENT = 65537
MAX_CHAIN_DEPTH = 8
_SMALL_PRIMES = [p for p in range(3, 20000, 2) if all(p % d for d in range(3, math.isqrt(p) + 1, 2))]
_SIEVE = math.prod(_SMALL_PRIMES)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class CertificateError(RemoteProtocolError):
    """A peer's certificate chain did not validate: answer AUTHENTICATION_FAILED."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A certificate, its private key and the chain above it up to (not including) the root."""

    certificate: x509.Certificate
    private_key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def name(self) -> str:
        return self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@dataclass(frozen=True, slots=True)
class LabPki:
    root: Credential
    intermediates: tuple[Credential, ...]
    end_entities: dict[str, Credential] = field(default_factory=dict)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        return (self.root.certificate,)


# --- pickling (a scenario's settings travel to the Mininet hosts' endpoint processes) --------------------------


def _certificate_from_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def _private_key_from_der(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    _make_picklable(key)
    return key  # type: ignore[return-value]


def _reduce_certificate(c: x509.Certificate) -> tuple:
    return (_certificate_from_der, (c.public_bytes(serialization.Encoding.DER),))


def _reduce_private_key(k: PrivateKey) -> tuple:
    der = k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return (_private_key_from_der, (der,))


_PICKLABLE: set[type] = set()


def _make_picklable(obj: object) -> None:
    """Let pickle carry ``obj``'s type (cryptography's certificates and keys have no pickle support of
    their own) as DER: a lab credential is test material, written only to the controller's own 0600 file."""
    kind = type(obj)
    if kind in _PICKLABLE:
        return
    if isinstance(obj, x509.Certificate):
        copyreg.pickle(kind, _reduce_certificate)
    elif isinstance(obj, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        copyreg.pickle(kind, _reduce_private_key)
    else:
        return
    _PICKLABLE.add(kind)


# --- keys from the run's rng ----------------------------------------------------------------------------------


def _probably_prime(n: int, rng: random.Random, rounds: int = 5) -> bool:
    """Miller-Rabin after trial division; 5 rounds suffice for random candidates of 1024+ bits (FIPS 186-5 B.3.1)."""
    if n < 2:
        return False
    if n <= _SMALL_PRIMES[-1]:
        return n == 2 or n in _SMALL_PRIMES
    if math.gcd(n, _SIEVE) != 1:
        return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (0b11 << (bits - 2)) | 1  # top two bits: p*q has exactly 2*bits bits
        if math.gcd(candidate - 1, RSA_PUBLIC_EXPONENT) == 1 and _probably_prime(candidate, rng):
            return candidate


def generate_rsa_key(bits: int, rng: random.Random | None = None) -> rsa.RSAPrivateKey:
    """An RSA key with e = 65537: primes drawn from ``rng`` (reproducible, seconds of pure Python) or, without it, OpenSSL's.

    Raises ValueError for a size other than 2048 or 3072.
    """
    if bits not in (2048, 3072):
        raise ValueError(f"RSA key of {bits} bits, expected 2048 or 3072")
    if rng is None:
        return rsa.generate_private_key(RSA_PUBLIC_EXPONENT, bits)
    while True:
        p, q = _random_prime(bits // 2, rng), _random_prime(bits // 2, rng)
        if p != q:
            break
    n = p * q
    d = pow(RSA_PUBLIC_EXPONENT, -1, math.lcm(p - 1, q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(RSA_PUBLIC_EXPONENT, n),
    )
    return numbers.private_key()


def generate_key(key_type: str, rng: random.Random, *, reproducible_rsa: bool = False) -> PrivateKey:
    """A private key of one of KEY_TYPES: ECDSA scalars always from ``rng``, RSA primes only with ``reproducible_rsa``.

    Raises ValueError for another type.
    """
    if key_type in ("rsa-2048", "rsa-3072"):
        return generate_rsa_key(int(key_type[4:]), rng if reproducible_rsa else None)
    curves = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1()}
    if key_type not in curves:
        raise ValueError(f"key type {key_type!r}, expected one of {', '.join(KEY_TYPES)}")
    curve = curves[key_type]
    return ec.derive_private_key(rng.randrange(1, _curve_order(curve)), curve)


def _curve_order(curve: ec.EllipticCurve) -> int:
    return {
        "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
        "secp384r1": int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
        ),
    }[curve.name]


# --- issuing ------------------------------------------------------------------------------------------------------


def _sign(builder: x509.CertificateBuilder, issuer_key: PrivateKey) -> x509.Certificate:
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        digest = hashes.SHA384() if issuer_key.curve.key_size > 256 else hashes.SHA256()
        return builder.sign(issuer_key, digest, ecdsa_deterministic=True)
    return builder.sign(issuer_key, hashes.SHA256())  # RSA PKCS#1 v1.5: deterministic


def issue_certificate(
    *,
    name: str,
    key: PrivateKey,
    issuer: Credential | None,
    rng: random.Random,
    not_before: dt.datetime,
    days: int = 365,
    ca: bool = False,
    path_length: int | None = None,
    addresses: Sequence[str] = (),
) -> Credential:
    """A certificate for ``key`` named ``name`` (CN and, for end entities, dNSName), signed by ``issuer`` (None: self-signed).

    ``addresses`` (end entities) go into the subjectAltName as iPAddress
    entries too. ``not_before`` must be timezone-aware. Raises ValueError for
    bad arguments.
    """
    if not_before.tzinfo is None:
        raise ValueError("not_before must be timezone-aware")
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tcplab"), x509.NameAttribute(NameOID.COMMON_NAME, name)]
    )
    issuer_name = issuer.certificate.subject if issuer else subject
    issuer_key = issuer.private_key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(rng.getrandbits(63) + 1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()), critical=False
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = (
            builder.add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(name), *(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses)]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [IPSEC_IKE_EKU, ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
    certificate = _sign(builder, issuer_key)
    chain = (
        ()
        if issuer is None or issuer.certificate.issuer == issuer.certificate.subject
        else (issuer.certificate, *issuer.chain)
    )
    _make_picklable(certificate)
    _make_picklable(key)
    return Credential(certificate, key, chain)


def make_lab_pki(
    rng: random.Random,
    *,
    not_before: dt.datetime,
    key_type: str = "ecdsa-p256",
    ca_key_type: str | None = None,
    intermediates: int = 0,
    names: Sequence[str] = ("initiator.lab", "responder.lab"),
    days: int = 365,
    reproducible_rsa: bool = False,
) -> LabPki:
    """A root CA, ``intermediates`` CAs below it in a line, and one end entity per name under the last CA.

    End entities get ``key_type`` keys, the CAs ``ca_key_type`` (default: the same).
    RSA keys come from OpenSSL unless ``reproducible_rsa`` (then from ``rng``,
    which takes seconds per key). Raises ValueError for an unknown key type.
    """
    ca_type = ca_key_type or key_type

    def generate(kind: str) -> PrivateKey:
        return generate_key(kind, rng, reproducible_rsa=reproducible_rsa)

    root = issue_certificate(
        name="tcplab Root CA",
        key=generate(ca_type),
        issuer=None,
        rng=rng,
        not_before=not_before,
        days=days * 10,
        ca=True,
    )
    chain = []
    parent = root
    for level in range(intermediates):
        parent = issue_certificate(
            name=f"tcplab Intermediate CA {level + 1}",
            key=generate(ca_type),
            issuer=parent,
            rng=rng,
            not_before=not_before,
            days=days * 5,
            ca=True,
            path_length=intermediates - level - 1,
        )
        chain.append(parent)
    entities = {
        name: issue_certificate(
            name=name, key=generate(key_type), issuer=parent, rng=rng, not_before=not_before, days=days
        )
        for name in names
    }
    return LabPki(root, tuple(chain), entities)


# --- payloads ---------------------------------------------------------------------------------------------------


def chain_payloads(credential: Credential) -> list[CertPayload]:
    """CERT payloads: the end entity first, then the intermediates (RFC 7296 §3.6: the first CERT holds the key)."""
    return [
        CertPayload(CERT_X509_SIGNATURE, c.public_bytes(serialization.Encoding.DER))
        for c in (credential.certificate, *credential.chain)
    ]


def certreq_payload(trust_anchors: Sequence[x509.Certificate]) -> CertreqPayload:
    """CERTREQ naming our trust anchors by SHA-1 of their SubjectPublicKeyInfo (§3.7)."""
    spkis = (
        a.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for a in trust_anchors
    )
    return CertreqPayload(CERT_X509_SIGNATURE, b"".join(ca_hash(s) for s in spkis))


def certificates_from_payloads(payloads: Sequence[object]) -> list[x509.Certificate]:
    """The X.509 certificates of the CERT payloads among ``payloads``, in order.

    Raises CertificateError for a CERT of encoding 4 that is not DER X.509.
    """
    certificates = []
    for p in payloads:
        if isinstance(p, CertPayload) and p.encoding == CERT_X509_SIGNATURE:
            try:
                certificates.append(x509.load_der_x509_certificate(p.data))
            except ValueError as exc:
                raise CertificateError(f"CERT payload is not a DER X.509 certificate: {exc}") from None
    return certificates


# --- validation -----------------------------------------------------------------------------------------------------


def _describe(c: x509.Certificate) -> str:
    return c.subject.rfc4514_string()


def _check_validity(c: x509.Certificate, now: dt.datetime) -> None:
    if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
        raise CertificateError(
            f"{_describe(c)} is valid from {c.not_valid_before_utc:%Y-%m-%d} to {c.not_valid_after_utc:%Y-%m-%d}, not at {now:%Y-%m-%d %H:%M}"
        )


def _check_issued_by(c: x509.Certificate, issuer: x509.Certificate) -> bool:
    if c.issuer != issuer.subject:
        return False
    try:
        c.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_ca(c: x509.Certificate, below: int) -> None:
    try:
        constraints = c.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"{_describe(c)} issued a certificate but has no basicConstraints") from None
    if not constraints.ca:
        raise CertificateError(f"{_describe(c)} issued a certificate but is not a CA")
    if constraints.path_length is not None and below > constraints.path_length:
        raise CertificateError(f"{_describe(c)} allows {constraints.path_length} CAs below it, the chain has {below}")
    try:
        usage = c.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise CertificateError(f"{_describe(c)} may not sign certificates (keyUsage)")


def validate_chain(
    end_entity: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    *,
    now: dt.datetime,
) -> list[x509.Certificate]:
    """The path from ``end_entity`` to a trust anchor (both included), or CertificateError saying why not.

    ``intermediates`` are the other certificates the peer sent, in any
    order. ``now`` (timezone-aware) is the time the validity periods are
    checked at.
    """
    _check_validity(end_entity, now)
    try:
        usage = end_entity.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise CertificateError(f"{_describe(end_entity)} may not sign (keyUsage lacks digitalSignature)")
    except x509.ExtensionNotFound:
        pass
    path = [end_entity]
    current = end_entity
    while True:
        anchor = next((a for a in trust_anchors if _check_issued_by(current, a)), None)
        if anchor is not None:
            _check_validity(anchor, now)
            _check_ca(anchor, below=len(path) - 1)
            path.append(anchor)
            return path
        if len(path) > MAX_CHAIN_DEPTH:
            raise CertificateError(f"no trust anchor within {MAX_CHAIN_DEPTH} certificates")
        issuer = next((c for c in intermediates if c not in path and _check_issued_by(current, c)), None)
        if issuer is None:
            raise CertificateError(
                f"no trusted issuer for {_describe(current)} (issuer {current.issuer.rfc4514_string()})"
            )
        _check_validity(issuer, now)
        _check_ca(issuer, below=len(path) - 1)
        path.append(issuer)
        current = issuer


def subject_alt_dns_names(certificate: x509.Certificate) -> list[str]:
    """The dNSName entries of the subjectAltName, to match an ID_FQDN identity against."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def identity_matches(certificate: x509.Certificate, id_type: int, id_data: bytes) -> bool:
    """Whether the peer's IDi/IDr names the holder of ``certificate`` (RFC 4945 §3.1, as far as the lab uses it).

    ID_FQDN must equal a dNSName of the subjectAltName (case-insensitive),
    ID_DER_ASN1_DN the DER subject, ID_IPV4_ADDR/ID_IPV6_ADDR an iPAddress
    of the subjectAltName (libreswan's default leftid is its address); other
    ID types never match.
    """
    if id_type == ID_FQDN:
        name = id_data.decode("ascii", "replace").lower()
        return any(name == dns.lower() for dns in subject_alt_dns_names(certificate))
    if id_type == ID_DER_ASN1_DN:
        return id_data == certificate.subject.public_bytes()
    if id_type in (ID_IPV4_ADDR, ID_IPV6_ADDR) and len(id_data) == (4 if id_type == ID_IPV4_ADDR else 16):
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        return ipaddress.ip_address(id_data) in san.get_values_for_type(x509.IPAddress)
    return False


def describe_identity(id_type: int, id_data: bytes) -> str:
    """An IDi/IDr for people: ``ID_FQDN 'east'``, ``ID_DER_ASN1_DN 'CN=east,O=tcplab'``, ``ID_IPV4_ADDR 10.89.2.1``."""
    try:
        if id_type == ID_FQDN:
            return f"ID_FQDN {id_data.decode('ascii')!r}"
        if id_type == ID_DER_ASN1_DN:
            return f"ID_DER_ASN1_DN {_dn(id_data)!r}"
        if id_type in (ID_IPV4_ADDR, ID_IPV6_ADDR):
            return f"{'ID_IPV4_ADDR' if id_type == ID_IPV4_ADDR else 'ID_IPV6_ADDR'} {ipaddress.ip_address(id_data)}"
    except ValueError:  # UnicodeDecodeError too
        pass
    return f"ID type {id_type} {id_data.hex()}"


def _tlvs(der: bytes) -> list[tuple[int, bytes]]:
    """The DER TLVs one after another in ``der`` (ValueError when they do not parse)."""
    out, i = [], 0
    while i < len(der):
        if i + 2 > len(der):
            raise ValueError("truncated DER")
        tag, length, i = der[i], der[i + 1], i + 2
        if length & 0x80:
            n = length & 0x7F
            if not 0 < n <= 3 or i + n > len(der):
                raise ValueError("bad DER length")
            length, i = int.from_bytes(der[i : i + n], "big"), i + n
        if i + length > len(der):
            raise ValueError("truncated DER")
        out.append((tag, der[i : i + length]))
        i += length
    return out


def _oid_string(body: bytes) -> str:
    arcs, value = [], 0
    for octet in body:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _dn(der: bytes) -> str:
    """The RFC 4514 string of a DER Name: SEQUENCE OF SET OF {type, value} (ValueError when it is not one)."""
    ((tag, body),) = _tlvs(der)
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    rdns = []
    for set_tag, set_body in _tlvs(body):
        if set_tag != 0x31:
            raise ValueError("not a SET")
        attributes = []
        for seq_tag, seq_body in _tlvs(set_body):
            (oid_tag, oid), (_, value) = _tlvs(seq_body)
            if seq_tag != 0x30 or oid_tag != 0x06:
                raise ValueError("not an AttributeTypeAndValue")
            text = value.decode("utf-8")
            attributes.append(x509.NameAttribute(ObjectIdentifier(_oid_string(oid)), text))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns).rfc4514_string()
