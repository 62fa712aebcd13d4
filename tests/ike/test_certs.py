"""lab.ike.certs, lab.ike.signature_auth and lab.wire.ikev2_cert: the lab PKI, RFC 7427 AUTH, CERT/CERTREQ."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import random
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from lab.errors import DecodeError
from lab.ike.certs import (
    CertificateError,
    LabPki,
    certificates_from_payloads,
    certreq_payload,
    chain_payloads,
    describe_identity,
    generate_rsa_key,
    identity_matches,
    issue_certificate,
    make_lab_pki,
    subject_alt_dns_names,
    validate_chain,
)
from lab.ike.keys import signed_octets
from lab.ike.signature_auth import (
    ECDSA_SHA256,
    ECDSA_SHA384,
    ECDSA_SHA512,
    RSA_PKCS1_SHA256,
    RSA_PSS_SHA256,
    RSA_PSS_SHA384,
    RSA_PSS_SHA512,
    SIGNATURE_ALGORITHMS,
    SignatureAuthError,
    choose_algorithm,
    parse_signature_hash_algorithms,
    sign_auth,
    signature_hash_algorithms_notify,
    verify_auth,
)
from lab.wire.ikev2 import (
    IKE_AUTH,
    PRF_HMAC_SHA2_256,
    AuthPayload,
    IkeMessage,
    decode_ike_message,
    encode_ike_message,
)
from lab.wire.ikev2_cert import CertPayload, CertreqPayload

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@cache
def pki(key_type: str, intermediates: int = 1) -> LabPki:
    return make_lab_pki(random.Random(11), not_before=START, key_type=key_type, intermediates=intermediates)


# --- DER built by hand, to check the RFC 7427 blobs independently ---------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((tag, len(body))) + body


def _oid(*arcs: int) -> bytes:
    out = bytes((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, out)


NULL = b"\x05\x00"
SHA256_ID = _tlv(0x30, _oid(2, 16, 840, 1, 101, 3, 4, 2, 1) + NULL)


def test_rfc7427_blobs_are_the_der_of_their_algorithms() -> None:
    pss_params = _tlv(
        0x30,
        _tlv(0xA0, SHA256_ID)
        + _tlv(0xA1, _tlv(0x30, _oid(1, 2, 840, 113549, 1, 1, 8) + SHA256_ID))
        + _tlv(0xA2, _tlv(0x02, b"\x20")),
    )
    assert RSA_PSS_SHA256 == _tlv(0x30, _oid(1, 2, 840, 113549, 1, 1, 10) + pss_params)
    assert len(RSA_PSS_SHA256) == 67
    assert ECDSA_SHA256 == _tlv(0x30, _oid(1, 2, 840, 10045, 4, 3, 2))
    assert ECDSA_SHA384 == _tlv(0x30, _oid(1, 2, 840, 10045, 4, 3, 3))
    assert RSA_PKCS1_SHA256 == _tlv(0x30, _oid(1, 2, 840, 113549, 1, 1, 11) + NULL)


@pytest.mark.parametrize(("blob", "hash_arc", "salt"), [(RSA_PSS_SHA384, 2, 48), (RSA_PSS_SHA512, 3, 64)])
def test_rsa_pss_blobs_with_longer_hashes_are_their_der(blob: bytes, hash_arc: int, salt: int) -> None:
    hash_id = _tlv(0x30, _oid(2, 16, 840, 1, 101, 3, 4, 2, hash_arc) + NULL)
    params = _tlv(
        0x30,
        _tlv(0xA0, hash_id)
        + _tlv(0xA1, _tlv(0x30, _oid(1, 2, 840, 113549, 1, 1, 8) + hash_id))
        + _tlv(0xA2, _tlv(0x02, bytes((salt,)))),
    )
    assert blob == _tlv(0x30, _oid(1, 2, 840, 113549, 1, 1, 10) + params)
    assert ECDSA_SHA512 == _tlv(0x30, _oid(1, 2, 840, 10045, 4, 3, 4))


# what libreswan 4.10 sends when the peer announces SHA2-512 (captured from pluto's IKE_AUTH)
PLUTO_RSA_PSS_SHA512 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402030500"
    "a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140"
)
PLUTO_ECDSA_SHA512 = bytes.fromhex("300a06082a8648ce3d040304")


@pytest.mark.parametrize("key_type", ["rsa-2048", "ecdsa-p256"])
def test_signatures_with_every_hash_we_announce_verify(key_type: str) -> None:
    """pluto signs with the strongest hash of our SIGNATURE_HASH_ALGORITHMS: SHA-512 (RSA-PSS salt 64, and ECDSA
    SHA-512 with a P-256 key). Signed here with cryptography alone, not with sign_auth."""
    ee = pki(key_type).end_entities["initiator.lab"]
    octets = b"signed octets of the responder"
    if key_type.startswith("rsa"):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
        auth = (
            bytes((len(PLUTO_RSA_PSS_SHA512),))
            + PLUTO_RSA_PSS_SHA512
            + ee.private_key.sign(octets, pss, hashes.SHA512())
        )
    else:
        auth = (
            bytes((len(PLUTO_ECDSA_SHA512),))
            + PLUTO_ECDSA_SHA512
            + ee.private_key.sign(octets, ec.ECDSA(hashes.SHA512()))
        )
    assert verify_auth(ee.certificate.public_key(), auth, octets).name.endswith("sha512")
    announced = parse_signature_hash_algorithms(signature_hash_algorithms_notify())
    kind = "rsa" if key_type.startswith("rsa") else "ecdsa"
    verifiable = {a.hash_id for a in SIGNATURE_ALGORITHMS.values() if a.key_kind == kind}
    assert set(announced) <= verifiable


@pytest.mark.parametrize(
    ("key_type", "peer_hashes", "chosen"),
    [
        ("rsa-2048", (), "rsa-pss-sha256"),  # no SIGNATURE_HASH_ALGORITHMS: our default
        ("rsa-2048", (2, 3, 4), "rsa-pss-sha256"),
        ("rsa-2048", (3,), "rsa-pss-sha384"),  # libreswan authby=rsa-sha2_384
        ("rsa-2048", (4,), "rsa-pss-sha512"),  # authby=rsa-sha2_512
        ("rsa-2048", (4, 3), "rsa-pss-sha384"),  # our preference order, not the peer's
        ("rsa-2048", (1,), "rsa-pss-sha256"),  # SHA-1 only: nothing we sign with; the default, to be refused
        ("ecdsa-p256", (4,), "ecdsa-sha512"),
        ("ecdsa-p384", (2, 3), "ecdsa-sha384"),
        ("ecdsa-p384", (2,), "ecdsa-sha256"),
    ],
)
def test_the_signing_hash_follows_the_peers_list(key_type: str, peer_hashes: tuple[int, ...], chosen: str) -> None:
    assert choose_algorithm(pki(key_type).end_entities["initiator.lab"].private_key, peer_hashes).name == chosen


def test_rfc7427_blobs_match_what_cryptography_writes_into_certificates() -> None:
    rsa_ca = pki("rsa-2048", 0).root
    builder = (
        x509.CertificateBuilder()
        .subject_name(rsa_ca.certificate.subject)
        .issuer_name(rsa_ca.certificate.subject)
        .public_key(rsa_ca.private_key.public_key())
        .serial_number(1)
        .not_valid_before(START)
        .not_valid_after(NOW)
    )
    pss = builder.sign(
        rsa_ca.private_key, hashes.SHA256(), rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), salt_length=32)
    )
    der = pss.public_bytes(serialization.Encoding.DER)
    assert der.count(RSA_PSS_SHA256) == 2  # in TBSCertificate and in the outer signatureAlgorithm
    assert rsa_ca.certificate.public_bytes(serialization.Encoding.DER).count(RSA_PKCS1_SHA256) == 2
    assert pki("ecdsa-p256").root.certificate.public_bytes(serialization.Encoding.DER).count(ECDSA_SHA256) == 2


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-2048", "rsa-3072"])
def test_lab_pki_chains_validate(key_type: str) -> None:
    lab = pki(key_type)
    for name in ("initiator.lab", "responder.lab"):
        ee = lab.end_entities[name]
        path = validate_chain(ee.certificate, ee.chain, lab.trust_anchors, now=NOW)
        assert [c.subject.rfc4514_string() for c in path] == [
            f"CN={name},O=tcplab",
            "CN=tcplab Intermediate CA 1,O=tcplab",
            "CN=tcplab Root CA,O=tcplab",
        ]
        assert subject_alt_dns_names(ee.certificate) == [name]
        assert ee.certificate.public_key().key_size == {"ecdsa-p256": 256, "rsa-2048": 2048, "rsa-3072": 3072}[key_type]


def test_ecdsa_pki_is_reproducible_from_the_seed() -> None:
    a = make_lab_pki(random.Random(5), not_before=START)
    b = make_lab_pki(random.Random(5), not_before=START)
    c = make_lab_pki(random.Random(6), not_before=START)
    assert a.end_entities["initiator.lab"].certificate == b.end_entities["initiator.lab"].certificate
    assert a.root.certificate != c.root.certificate


def test_reproducible_rsa_keys_follow_the_seed() -> None:
    a, b = generate_rsa_key(2048, random.Random(3)), generate_rsa_key(2048, random.Random(3))
    assert a.private_numbers() == b.private_numbers()
    assert a.key_size == 2048 and a.public_key().public_numbers().e == 65537
    message = b"signed"
    a.public_key().verify(
        a.sign(message, padding.PKCS1v15(), hashes.SHA256()), message, padding.PKCS1v15(), hashes.SHA256()
    )


def test_chain_validation_refuses_with_a_reason() -> None:
    lab = pki("ecdsa-p256")
    other = make_lab_pki(random.Random(99), not_before=START)
    ee = lab.end_entities["initiator.lab"]
    with pytest.raises(CertificateError, match="no trusted issuer"):
        validate_chain(ee.certificate, ee.chain, other.trust_anchors, now=NOW)
    with pytest.raises(CertificateError, match="no trusted issuer"):
        validate_chain(ee.certificate, (), lab.trust_anchors, now=NOW)  # intermediate not sent
    with pytest.raises(CertificateError, match="valid from"):
        validate_chain(ee.certificate, ee.chain, lab.trust_anchors, now=START + dt.timedelta(days=400))
    # an end entity that signs another certificate is not a CA
    rogue = issue_certificate(
        name="rogue.lab",
        key=other.end_entities["responder.lab"].private_key,
        issuer=ee,
        rng=random.Random(1),
        not_before=START,
    )
    with pytest.raises(CertificateError, match="not a CA"):
        validate_chain(rogue.certificate, (ee.certificate, *ee.chain), lab.trust_anchors, now=NOW)


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [
        ("ecdsa-p256", "ecdsa-sha256"),
        ("ecdsa-p256", "ecdsa-sha384"),
        ("ecdsa-p256", "ecdsa-sha512"),
        ("rsa-2048", "rsa-pss-sha256"),
        ("rsa-2048", "rsa-pss-sha384"),
        ("rsa-2048", "rsa-pss-sha512"),
        ("rsa-3072", "rsa-pss-sha256"),
    ],
)
def test_sign_and_verify_the_signed_octets(key_type: str, algorithm: str) -> None:
    ee = pki(key_type).end_entities["initiator.lab"]
    octets = signed_octets(
        prf_id=PRF_HMAC_SHA2_256,
        real_message=b"IKE_SA_INIT request",
        peer_nonce=b"N" * 32,
        sk_p=b"p" * 32,
        id_body=b"\x02\x00\x00\x00initiator.lab",
    )
    auth = sign_auth(ee.private_key, octets, SIGNATURE_ALGORITHMS[algorithm])
    blob = SIGNATURE_ALGORITHMS[algorithm].blob
    assert auth[0] == len(blob) and auth[1 : 1 + len(blob)] == blob
    public = ee.certificate.public_key()
    assert verify_auth(public, auth, octets).name == algorithm
    with pytest.raises(SignatureAuthError, match="does not verify"):
        verify_auth(public, auth, octets + b"x")
    with pytest.raises(SignatureAuthError, match="not accepted"):
        verify_auth(public, auth, octets, accepted=frozenset({"rsa-pkcs1-sha256"}))
    with pytest.raises(SignatureAuthError, match="too short"):
        verify_auth(public, auth[: len(blob)], octets)
    other_kind = pki("rsa-2048" if key_type.startswith("ecdsa") else "ecdsa-p256").end_entities["initiator.lab"]
    with pytest.raises(SignatureAuthError, match="does not fit"):
        verify_auth(other_kind.certificate.public_key(), auth, octets)
    with pytest.raises(ValueError):
        sign_auth(other_kind.private_key, octets, SIGNATURE_ALGORITHMS[algorithm])


def test_signature_hash_algorithms_notify() -> None:
    notify = signature_hash_algorithms_notify()
    assert (notify.notify_type, notify.data) == (16431, bytes.fromhex("000200030004"))
    assert parse_signature_hash_algorithms(notify) == (2, 3, 4)


def test_cert_and_certreq_payloads_on_the_wire() -> None:
    lab = pki("rsa-2048")
    ee = lab.end_entities["responder.lab"]
    certs = chain_payloads(ee)
    assert [p.encoding for p in certs] == [4, 4]
    request = certreq_payload(lab.trust_anchors)
    spki = lab.root.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert request.ca_hashes == (hashlib.sha1(spki).digest(),)
    auth = AuthPayload(14, sign_auth(ee.private_key, b"octets"))
    message = IkeMessage(b"\x01" * 8, b"\x02" * 8, IKE_AUTH, 1, (*certs, request, auth), response=True)
    wire = encode_ike_message(message)
    assert (wire[16], wire[28]) == (37, 37)  # the header names CERT first, the first CERT names the second
    decoded = decode_ike_message(wire)
    assert decoded == message
    assert certificates_from_payloads(decoded.payloads) == [ee.certificate, *ee.chain]
    assert len(wire) > 2 * 800  # an RSA chain alone outgrows a 576-octet path
    # exact bytes of a small CERTREQ: generic header | encoding 4 | one hash
    small = encode_ike_message(IkeMessage(bytes(8), bytes(8), IKE_AUTH, 1, (CertreqPayload(4, b"\xab" * 20),)))
    assert small[28:] == bytes.fromhex("00000019") + b"\x04" + b"\xab" * 20
    with pytest.raises(DecodeError) as exc:
        decode_ike_message(small[:24] + (len(small) - 1).to_bytes(4, "big") + small[28:30] + b"\x00\x18" + small[32:-1])
    assert exc.value.field == "certification_authority"


def test_a_cert_payload_that_is_not_a_certificate_is_refused() -> None:
    with pytest.raises(CertificateError, match="not a DER"):
        certificates_from_payloads([CertPayload(4, b"\x30\x03\x02\x01\x01")])


def test_identity_matches_the_certificate() -> None:
    ee = pki("ecdsa-p256").end_entities["responder.lab"]
    assert identity_matches(ee.certificate, 2, b"Responder.lab")  # ID_FQDN
    assert not identity_matches(ee.certificate, 2, b"initiator.lab")
    assert identity_matches(ee.certificate, 9, ee.certificate.subject.public_bytes())  # ID_DER_ASN1_DN
    assert not identity_matches(ee.certificate, 1, bytes(4))  # ID_IPV4_ADDR


def test_an_address_identity_matches_an_ipaddress_san() -> None:
    """libreswan names itself by its address unless leftid= says otherwise: ID_IPV4_ADDR/ID_IPV6_ADDR match
    iPAddress entries of the subjectAltName (RFC 4945 §5.1.3.2), never the dNSName or the subject."""
    ca = pki("ecdsa-p256").intermediates[0]
    key = ca.private_key  # any key will do for the subject's public key here
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "10.89.2.1")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(START)
        .not_valid_after(NOW)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("10.89.2.1")), x509.IPAddress(ipaddress.ip_address("2001:db8::1"))]
            ),
            critical=False,
        )
    )
    certificate = builder.sign(ca.private_key, hashes.SHA256())
    assert identity_matches(certificate, 1, bytes([10, 89, 2, 1]))
    assert not identity_matches(certificate, 1, bytes([10, 89, 2, 2]))
    assert identity_matches(certificate, 5, ipaddress.ip_address("2001:db8::1").packed)
    assert not identity_matches(certificate, 1, b"\x0a\x59\x02")  # not 4 octets
    assert not identity_matches(certificate, 2, b"10.89.2.1")  # the FQDN type never matches an address


def test_identities_are_described_for_people() -> None:
    ee = pki("ecdsa-p256").end_entities["responder.lab"]
    assert describe_identity(2, b"east") == "ID_FQDN 'east'"
    assert (
        describe_identity(9, ee.certificate.subject.public_bytes())
        == f"ID_DER_ASN1_DN '{ee.certificate.subject.rfc4514_string()}'"
    )
    assert describe_identity(1, bytes([10, 89, 2, 1])) == "ID_IPV4_ADDR 10.89.2.1"
    assert describe_identity(5, bytes(16)) == "ID_IPV6_ADDR ::"
    assert describe_identity(9, b"\x30\x05junk") == "ID type 9 30056a756e6b"  # not a DER Name
    assert describe_identity(2, b"\xff") == "ID type 2 ff"
    assert describe_identity(11, b"key") == "ID type 11 6b6579"


def test_a_credential_survives_pickling_as_a_scenario_sent_to_mininet_hosts() -> None:
    """Scenario settings travel to the Mininet hosts' endpoint processes by pickle; cryptography's own
    certificate and key objects refuse it, the lab's credentials go as DER and come back equal."""
    import pickle

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from lab.ike.certs import make_lab_pki

    pki = make_lab_pki(random.Random(3), not_before=START, key_type="ecdsa-p256", intermediates=1)
    back = pickle.loads(pickle.dumps((pki.end_entities["initiator.lab"], pki.trust_anchors)))
    credential, anchors = back
    original = pki.end_entities["initiator.lab"]
    assert credential.certificate == original.certificate and credential.chain == original.chain
    assert anchors == pki.trust_anchors
    signature = credential.private_key.sign(b"signed octets", ec.ECDSA(hashes.SHA256()))
    original.certificate.public_key().verify(signature, b"signed octets", ec.ECDSA(hashes.SHA256()))
