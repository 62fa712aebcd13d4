"""Certificate authentication (RFC 7296 §2.15 with RFC 7427 signatures) in the real exchanges, beside PSK.

The lab PKI (lab.ike.certs) issues a root, one intermediate and the two end
entities; each end sends its certificate and the intermediate in CERT
payloads, asks for the other's with CERTREQ, signs with RSA-PSS or ECDSA,
and checks the peer's chain and identity before its signature. Together
with ML-KEM and RFC 7383 this is the issue's target: hybrid PQ IKE SAs with
certificates over UDP with fragments and over TCP, ESP byte-exact, in the
simulator.
"""

from __future__ import annotations

import datetime as dt
import random
from functools import cache

import pytest

from lab.errors import ConfigError
from lab.ike.certs import LabPki, make_lab_pki
from lab.ike.config import IkeConfig
from lab.ike.events import IkeSaDeleted, IkeSaEstablished, PacketReceived
from lab.scenario import Scenario, run_scenario
from lab.scenario.ike import RESPONDER_ID, IkeSession
from lab.trace import MemoryTracer
from lab.wire.ikev2 import AUTHENTICATION_FAILED, decode_ike_message
from lab.wire.ikev2_cert import CertreqPayload
from tests.ike.pair import Pair, configs

NOT_BEFORE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHECKED_AT = NOT_BEFORE + dt.timedelta(days=30)
HYBRIDS = {"x25519+mlkem768": (31, 36), "p256+mlkem1024": (19, 37)}
SIGNATURES = {"ecdsa-p256": "ecdsa-sha256", "rsa-2048": "rsa-pss-sha256"}


@cache
def pki(key_type: str, names: tuple[str, ...] = ("west", "east"), seed: int = 11) -> LabPki:
    return make_lab_pki(random.Random(seed), not_before=NOT_BEFORE, key_type=key_type, intermediates=1, names=names)


def cert_settings(p: LabPki, *, i_name: str = "west", r_name: str = "east") -> dict[str, object]:
    return {
        "auth": "signature",
        "trust_anchors": p.trust_anchors,
        "validation_time": CHECKED_AT,
        "i_credential": p.end_entities[i_name],
        "r_credential": p.end_entities[r_name],
    }


def run_pair(**settings: object) -> Pair:
    pair = Pair(*configs(**settings))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    return pair


def auth_records(pair: Pair, node: str) -> list[dict]:
    return [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node=node)
        if r.data.get("exchange") == "IKE_AUTH" and "result" in r.data
    ]


@pytest.mark.parametrize(("transport", "mtu"), [("udp", 576), ("tcp", 576)])
@pytest.mark.parametrize("key_type", sorted(SIGNATURES))
@pytest.mark.parametrize("combo", sorted(HYBRIDS))
def test_hybrid_with_certificates_establishes(combo: str, key_type: str, transport: str, mtu: int) -> None:
    dh, kem = HYBRIDS[combo]
    pair = run_pair(
        transport=transport,
        dh_groups=(dh,),
        additional_key_exchanges=(kem,),
        fragmentation=True,
        path_mtu_bytes=mtu,
        **cert_settings(pki(key_type)),
    )
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == [transport]
    for node, peer in (("i", "east"), ("r", "west")):
        (ok,) = [d for d in auth_records(pair, node) if d["result"] == "ok"]
        assert ok["auth"] == "signature" and ok["peer_signature"] == SIGNATURES[key_type]
        chain = [name.split(",")[0] for name in ok["peer_chain"]]
        assert chain == [f"CN={peer}", "CN=tcplab Intermediate CA 1", "CN=tcplab Root CA"]
        assert ok["intermediate_exchanges"] == 1
    auth_sent = [
        r.data
        for r in pair.tracer.select(layer="ike", name="segment_sent")
        if r.data["exchange"] == "IKE_AUTH" and not r.data.get("resent")
    ]
    if transport == "udp":  # a chain of two certificates does not fit 576 octets (RFC 7383 §2.5.1): fragments
        assert all(d["length"] > 576 - 32 and d["fragments"] >= 2 for d in auth_sent)
    else:
        assert not any("fragments" in d for d in auth_sent)
    pair.i.send_packet(b"\x45signed and hybrid", now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"\x45signed and hybrid"]


def test_certreq_goes_in_the_ike_sa_init_response_and_the_ike_auth_request() -> None:
    p = pki("ecdsa-p256")
    pair = run_pair(transport="tcp", **cert_settings(p))
    assert pair.of("i", IkeSaEstablished)
    init_response = pair.r.sas()[0]._init_response
    (certreq,) = [x for x in decode_ike_message(init_response).payloads if isinstance(x, CertreqPayload)]
    assert len(certreq.ca_hashes) == 1  # the one trust anchor, by SHA-1 of its SubjectPublicKeyInfo


def test_psk_still_works_beside_certificates() -> None:
    pair = run_pair(transport="udp", dh_groups=(31,), additional_key_exchanges=(36,))
    (ok,) = [d for d in auth_records(pair, "i") if d["result"] == "ok"]
    assert "auth" not in ok  # PSK: no certificate fields


def test_a_chain_from_another_ca_is_refused() -> None:
    ours, theirs = pki("ecdsa-p256"), pki("ecdsa-p256", seed=12)
    settings = cert_settings(ours)
    settings["i_credential"] = theirs.end_entities["west"]  # a valid chain, but not to the responder's root
    pair = run_pair(transport="udp", **settings)
    assert not pair.of("r", IkeSaEstablished)
    (failed,) = [d for d in auth_records(pair, "r") if d["result"] == "failed"]
    assert "no trusted issuer" in failed["reason"]
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.notify_type == AUTHENTICATION_FAILED


def test_a_certificate_for_another_identity_is_refused() -> None:
    p = pki("ecdsa-p256", names=("west", "east", "mallory"))
    settings = cert_settings(p, r_name="mallory")  # the responder says IDr "east" but holds mallory's certificate
    pair = run_pair(transport="udp", **settings)
    assert not pair.of("i", IkeSaEstablished)
    (failed,) = [d for d in auth_records(pair, "i") if d["result"] == "failed"]
    assert "the certificate does not name ID_FQDN 'east'" in failed["reason"]


@pytest.mark.parametrize("dn_side", ["i", "r"])
def test_an_end_named_by_its_certificates_dn(dn_side: str) -> None:
    """ID_DER_ASN1_DN (libreswan's leftid=%fromcert): the AUTH covers the ID payload with its own type (RFC 7296
    §2.15), so the peer must verify over ID type 9, not the ID_FQDN it sends itself."""
    p = pki("rsa-2048")
    other = "r" if dn_side == "i" else "i"
    subject = p.end_entities["west" if dn_side == "i" else "east"].certificate.subject.public_bytes()
    settings = cert_settings(p) | {f"{dn_side}_id_type": "dn", f"{other}_remote_id": subject}
    pair = run_pair(transport="udp", **settings)
    assert pair.of("i", IkeSaEstablished) and pair.of("r", IkeSaEstablished)
    sa = (pair.r if dn_side == "i" else pair.i).sas()[0]
    assert sa.peer_id == subject


def test_the_initiator_signs_with_a_hash_the_responder_listed() -> None:
    """The responder's IKE_SA_INIT answer lists SHA2-512 alone (as libreswan's authby=rsa-sha2_512 does; the
    same length as our list, rewritten on the way): the initiator signs RSA-PSS with SHA-512, and the
    responder verifies it. The initiator then refuses the responder's AUTH, signed over the answer as sent."""
    ours = (16431).to_bytes(2, "big") + bytes.fromhex("000200030004")

    def only_sha512(kind: str, from_i: bool, data: bytes) -> bytes:
        if kind == "udp" and not from_i and ours in data:
            return data.replace(ours, (16431).to_bytes(2, "big") + bytes.fromhex("000400040004"))
        return data

    settings = cert_settings(pki("rsa-2048"))
    pair = Pair(*configs(transport="udp", **settings), tamper=only_sha512)
    pair.i.connect(now=0.0)
    pair.run(5.0)
    (ok,) = [d for d in auth_records(pair, "r") if d["result"] == "ok"]
    assert ok["peer_signature"] == "rsa-pss-sha512"
    (failed,) = [d for d in auth_records(pair, "i") if d["result"] == "failed"]
    assert "does not verify" in failed["reason"]


def test_dn_identities_need_certificates() -> None:
    with pytest.raises(ConfigError, match="id_type 'dn'"):
        IkeConfig(id_type="dn")
    with pytest.raises(ConfigError, match="id_type must be one of"):
        IkeConfig(id_type="email")


def test_an_expired_chain_is_refused() -> None:
    settings = cert_settings(pki("ecdsa-p256"))
    settings["validation_time"] = NOT_BEFORE + dt.timedelta(days=400)  # the end entities live 365 days
    pair = run_pair(transport="udp", **settings)
    assert not pair.of("r", IkeSaEstablished)
    (failed,) = [d for d in auth_records(pair, "r") if d["result"] == "failed"]
    assert "is valid from" in failed["reason"]


def test_signature_auth_needs_its_settings() -> None:
    with pytest.raises(ConfigError, match="credential and trust_anchors"):
        IkeConfig(auth="signature")
    with pytest.raises(ConfigError, match="timezone-aware validation_time"):
        IkeConfig(
            auth="signature",
            credential=pki("ecdsa-p256").end_entities["west"],
            trust_anchors=pki("ecdsa-p256").trust_anchors,
        )
    with pytest.raises(ConfigError, match="auth must be one of"):
        IkeConfig(auth="eap")


# --- the simulator ------------------------------------------------------------------------------------------


def session(name: str, combo: str, transport: str, p: LabPki) -> IkeSession:
    dh, kem = HYBRIDS[combo]
    common = {"auth": "signature", "trust_anchors": p.trust_anchors, "validation_time": CHECKED_AT}
    return IkeSession(
        name=name,
        initiator_config={
            **common,
            "credential": p.end_entities[f"{name}.initiator.lab"],
            "transport": transport,
            "dh_groups": (dh,),
            "additional_key_exchanges": (kem,),
            "fragmentation": True,
            "path_mtu_bytes": 1280,
        },
        responder_config={
            **common,
            "credential": p.end_entities[RESPONDER_ID.decode()],
            "dh_groups": (31, 19),
            "fragmentation": True,
            "path_mtu_bytes": 1280,
        },
        data_bytes=16 * 1024,  # two sessions' bursts at once must fit the link queue (UDP ESP has no retransmission)
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("key_type", sorted(SIGNATURES))
def test_both_hybrids_with_certificates_in_the_simulator(key_type: str, transport: str) -> None:
    p = pki(key_type, names=("x25519.initiator.lab", "p256.initiator.lab", "responder.lab"))
    scenario = Scenario(
        name=f"pq-certs-{transport}",
        description="hybrid PQ IKE with certificates in the simulator",
        topology="single-path",
        transfers=(session("x25519", "x25519+mlkem768", transport, p), session("p256", "p256+mlkem1024", transport, p)),
        time_limit_s=60.0,
    )
    result = run_scenario(scenario, seed=5, pcaps=False)
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {t.extra["transport"] for t in result.transfers} == {transport}
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    ok = [
        r
        for r in tracer.records
        if r.layer == "ike" and r.data.get("exchange") == "IKE_AUTH" and r.data.get("result") == "ok"
    ]
    assert len(ok) == 4 and all(r.data["peer_signature"] == SIGNATURES[key_type] for r in ok)
    fragments = [r for r in tracer.records if r.layer == "ike" and r.name == "segment_sent" and r.data.get("fragments")]
    udp_frames = [r for r in tracer.records if r.layer == "ike" and r.data.get("event") == "reassembled"]
    if transport == "udp":
        assert {r.data["exchange"] for r in fragments} >= {"IKE_AUTH"} and udp_frames
    else:
        assert not fragments and not udp_frames


def test_a_psk_initiator_meets_a_responder_that_wants_signatures() -> None:
    p = pki("ecdsa-p256")
    settings = cert_settings(p)
    settings["i_auth"] = "psk"
    pair = run_pair(transport="udp", **settings)
    (failed,) = [d for d in auth_records(pair, "r") if d["result"] == "failed"]
    assert "AUTH method 2, we expect a digital signature (14)" in failed["reason"]
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.notify_type == AUTHENTICATION_FAILED
