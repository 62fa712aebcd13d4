"""The algorithms of default proposals: PRF/INTEG HMAC-SHA2 (RFC 4868), AES-CBC (RFC 3602), P-384/P-521 (RFC 5903).

Known answers come from the RFCs; the DH groups are checked against the
``cryptography`` package; the SK payload and ESP with AES-CBC round-trip and
refuse tampering; the responder's choice is checked on libreswan 4.10's own
default offer (as its log prints it); and two lab endpoints run whole
exchanges, rekeys included, with every combination, tshark decrypting ESP.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lab.errors import ConfigError, DecodeError, RemoteProtocolError
from lab.esp.sa import DROP_INTEGRITY, EspDropped, EspSa, aes_cbc_decrypt, aes_cbc_encrypt, hmac_icv
from lab.ike.config import IkeConfig
from lab.ike.events import ChildSaEstablished, IkeSaEstablished, IkeSaRekeyed, PacketReceived
from lab.ike.keylog import key_tables
from lab.ike.keys import (
    IkeIntegrityError,
    decrypt_message,
    derive_ike_sa_keys,
    dh_public_value,
    dh_shared_secret,
    encrypt_message,
    generate_dh_private_key,
    prf,
    prf_plus,
    rekey_skeyseed,
)
from lab.ike.proposals import (
    DH_IGNORED,
    DH_REQUIRED,
    InvalidKePayload,
    Suite,
    check_chosen,
    choose_proposal,
    offered_proposals,
)
from lab.pcap import PcapWriter
from lab.wire.checksum import pack_address
from lab.wire.esp import NEXT_HEADER_IPV4
from lab.wire.ikev2 import (
    ATTRIBUTE_KEY_LENGTH,
    AUTH_HMAC_SHA2_256_128,
    AUTH_HMAC_SHA2_384_192,
    AUTH_HMAC_SHA2_512_256,
    DH_CURVE25519,
    DH_ECP_256,
    DH_ECP_384,
    DH_ECP_521,
    DH_MODP_2048,
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    INFORMATIONAL,
    NON_ESP_MARKER,
    PRF_HMAC_SHA2_256,
    PRF_HMAC_SHA2_384,
    PRF_HMAC_SHA2_512,
    PROTO_ESP,
    PROTO_IKE,
    TRANSFORM_DH,
    TRANSFORM_ENCR,
    TRANSFORM_ESN,
    TRANSFORM_INTEG,
    TRANSFORM_PRF,
    DeletePayload,
    IkeMessage,
    NotifyPayload,
    Proposal,
    SaPayload,
    Transform,
    TransformAttribute,
)
from lab.wire.ip import Ipv4Packet, encode_ipv4
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, encode_datagram
from tests.ike.pair import I_ADDR, R_ADDR, Pair, configs

H = bytes.fromhex

# --- known answers --------------------------------------------------------------------------------------------

# RFC 4868 §2.7.1, Test Case PRF-1: Key = 0x0b repeated (32, 48, 64 bytes), Data = "Hi There"
PRF_1 = {
    PRF_HMAC_SHA2_256: (32, "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"),
    PRF_HMAC_SHA2_384: (
        48,
        "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee9737a959796489bddbc4c5df61d5b3297b4fb68dab9f1b582c2",
    ),
    PRF_HMAC_SHA2_512: (
        64,
        (
            "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"
            "ac2878ebd5803f6f0b61dbce5e251ff8789a4722c1be65aea45fd464e89f8f5b"
        ),
    ),
}


@pytest.mark.parametrize("prf_id", list(PRF_1))
def test_prf_hmac_sha2_rfc_4868_vectors(prf_id: int) -> None:
    key_len, expected = PRF_1[prf_id]
    assert prf(prf_id, b"\x0b" * key_len, b"Hi There") == H(expected)


@pytest.mark.parametrize(
    ("integ_id", "prf_id", "icv_len"),
    [
        (AUTH_HMAC_SHA2_256_128, PRF_HMAC_SHA2_256, 16),
        (AUTH_HMAC_SHA2_384_192, PRF_HMAC_SHA2_384, 24),
        (AUTH_HMAC_SHA2_512_256, PRF_HMAC_SHA2_512, 32),
    ],
)
def test_integrity_rfc_4868_vectors_are_the_truncated_prf(integ_id: int, prf_id: int, icv_len: int) -> None:
    """RFC 4868 §2.7.2.1: AUTH-1 uses PRF-1's key and data; the ICV is the leftmost half of the HMAC."""
    key_len, full = PRF_1[prf_id]
    assert hmac_icv(integ_id, b"\x0b" * key_len, b"Hi There") == H(full)[:icv_len]


RFC_3602_CASES = [  # RFC 3602 §4: Case #1 and Case #2 (AES-128-CBC)
    ("06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41", b"Single block msg".hex(),
     "e353779c1079aeb82708942dbe77181a"),
    ("c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58", bytes(range(32)).hex(),
     "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "iv", "plaintext", "ciphertext"), RFC_3602_CASES)
def test_aes_cbc_rfc_3602_vectors(key: str, iv: str, plaintext: str, ciphertext: str) -> None:
    assert aes_cbc_encrypt(H(key), H(iv), H(plaintext)) == H(ciphertext)
    assert aes_cbc_decrypt(H(key), H(iv), H(ciphertext)) == H(plaintext)
    with pytest.raises(ValueError, match="whole blocks"):
        aes_cbc_encrypt(H(key), H(iv), H(plaintext)[:-1])


def test_rekey_skeyseed_is_the_rfc_7296_section_2_18_formula() -> None:
    sk_d, g_ir, ni, nr = bytes(range(64)), bytes(range(100, 196)), b"\x01" * 32, b"\x02" * 32
    seed = rekey_skeyseed(PRF_HMAC_SHA2_512, old_sk_d=sk_d, shared_secret=g_ir, ni=ni, nr=nr)
    assert seed == hmac.new(sk_d, g_ir + ni + nr, hashlib.sha512).digest()
    spi_i, spi_r = b"\x11" * 8, b"\x22" * 8
    keys = derive_ike_sa_keys(
        prf_id=PRF_HMAC_SHA2_256,  # the new SA's PRF for prf+
        shared_secret=b"",
        ni=ni,
        nr=nr,
        spi_i=spi_i,
        spi_r=spi_r,
        encr_key_len=32,
        integ_key_len=32,
        seed=seed,
    )
    stream = prf_plus(PRF_HMAC_SHA2_256, seed, ni + nr + spi_i + spi_r, 32 * 7)
    assert keys.skeyseed == seed
    assert keys.sk_d + keys.sk_ai + keys.sk_ar + keys.sk_ei + keys.sk_er + keys.sk_pi + keys.sk_pr == stream


# --- DH groups 20 and 21 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "curve", "size"), [(DH_ECP_384, ec.SECP384R1, 48), (DH_ECP_521, ec.SECP521R1, 66)])
def test_ecp_384_and_521_agree_with_cryptography(group: int, curve: type, size: int) -> None:
    ours = generate_dh_private_key(group, random.Random(11))
    public = dh_public_value(group, ours)
    assert len(ours) == size and len(public) == 2 * size  # RFC 5903 §7: x | y, each padded to the field size
    peer = ec.generate_private_key(curve())
    numbers = peer.public_key().public_numbers()
    peer_value = numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")
    ours_key = ec.derive_private_key(int.from_bytes(ours, "big"), curve())
    assert dh_shared_secret(group, ours, peer_value) == peer.exchange(ec.ECDH(), ours_key.public_key())
    ours_numbers = ours_key.public_key().public_numbers()
    assert public == ours_numbers.x.to_bytes(size, "big") + ours_numbers.y.to_bytes(size, "big")
    with pytest.raises(RemoteProtocolError):
        dh_shared_secret(group, ours, bytes(2 * size))  # not on the curve
    with pytest.raises(RemoteProtocolError):
        dh_shared_secret(group, ours, peer_value[:-1])


# --- the SK payload and ESP with AES-CBC + HMAC ---------------------------------------------------------------------


@pytest.mark.parametrize("integ_id", [AUTH_HMAC_SHA2_256_128, AUTH_HMAC_SHA2_384_192, AUTH_HMAC_SHA2_512_256])
def test_sk_payload_with_aes_cbc_round_trips_and_refuses_tampering(integ_id: int) -> None:
    sk_e, sk_a = bytes(range(32)), bytes(range(64))[: {12: 32, 13: 48, 14: 64}[integ_id]]
    header = IkeMessage(b"\x01" * 8, b"\x02" * 8, INFORMATIONAL, 5, (), initiator=True)
    inner = [DeletePayload(PROTO_IKE), NotifyPayload(16384)]
    data = encrypt_message(header, inner, sk_e=sk_e, iv=bytes(16), encr_id=ENCR_AES_CBC, integ_id=integ_id, sk_a=sk_a)
    message, plain = decrypt_message(data, sk_e=sk_e, encr_id=ENCR_AES_CBC, integ_id=integ_id, sk_a=sk_a)
    assert list(plain) == inner and message.message_id == 5
    icv_len = {12: 16, 13: 24, 14: 32}[integ_id]
    assert hmac_icv(integ_id, sk_a, data[:-icv_len]) == data[-icv_len:]  # ICV over header .. ciphertext
    assert (len(data) - 28 - 4 - 16 - icv_len) % 16 == 0  # header, SK header, IV, whole blocks, ICV
    for at in (0, 30, len(data) - icv_len - 1, len(data) - 1):
        tampered = bytearray(data)
        tampered[at] ^= 0x01
        with pytest.raises((IkeIntegrityError, DecodeError)):
            decrypt_message(bytes(tampered), sk_e=sk_e, encr_id=ENCR_AES_CBC, integ_id=integ_id, sk_a=sk_a)
    with pytest.raises(IkeIntegrityError):
        decrypt_message(data, sk_e=sk_e, encr_id=ENCR_AES_CBC, integ_id=integ_id, sk_a=bytes(len(sk_a)))


@pytest.mark.parametrize("key_len", [16, 32])
@pytest.mark.parametrize("integ_id", [AUTH_HMAC_SHA2_256_128, AUTH_HMAC_SHA2_384_192, AUTH_HMAC_SHA2_512_256])
def test_esp_with_aes_cbc_and_hmac_sha2(key_len: int, integ_id: int) -> None:
    integ_key = bytes(range({12: 32, 13: 48, 14: 64}[integ_id]))
    sender = EspSa(spi=0x1234, keymat=bytes(key_len), encr_id=ENCR_AES_CBC, integ_id=integ_id, integ_key=integ_key)
    receiver = EspSa(spi=0x1234, keymat=bytes(key_len), encr_id=ENCR_AES_CBC, integ_id=integ_id, integ_key=integ_key)
    for size in (0, 1, 13, 14, 15, 16, 100):
        packet = sender.encrypt(bytes(size), next_header=NEXT_HEADER_IPV4)
        icv = receiver.icv_len
        assert (len(packet) - 8 - 16 - icv) % 16 == 0  # whole AES blocks after the 16-byte IV
        assert hmac_icv(integ_id, integ_key, packet[:-icv]) == packet[-icv:]
        assert receiver.decrypt(packet).data == bytes(size)
    ivs = {sender.encrypt(b"x", next_header=4)[8:24] for _ in range(5)}
    assert len(ivs) == 5  # a new IV each packet
    forged = bytearray(sender.encrypt(b"secret", next_header=NEXT_HEADER_IPV4))
    forged[30] ^= 0x80
    with pytest.raises(EspDropped) as dropped:
        receiver.decrypt(bytes(forged))
    assert dropped.value.reason == DROP_INTEGRITY


# --- proposals: libreswan 4.10's defaults, as its log prints them ---------------------------------------------------

PLUTO_DH = (DH_MODP_2048, 15, 16, 18, DH_ECP_256, DH_ECP_384, DH_ECP_521, DH_CURVE25519)


def _pluto_ike_offer() -> SaPayload:
    """1:AES_GCM_C_256-HMAC_SHA2_512+HMAC_SHA2_256-NONE-MODP2048+..., 2: _128, 3: AES_CBC_256-...-HMAC_SHA2_512_256+
    HMAC_SHA2_256_128-..., 4: AES_CBC_128 (pluto's "IKE SA proposals (connection add)" with no ike= line)."""
    proposals = []
    for number, (encr, bits) in enumerate(((20, 256), (20, 128), (12, 256), (12, 128)), 1):
        t = [Transform(TRANSFORM_ENCR, encr, (TransformAttribute(ATTRIBUTE_KEY_LENGTH, bits),))]
        t += [Transform(TRANSFORM_PRF, PRF_HMAC_SHA2_512), Transform(TRANSFORM_PRF, PRF_HMAC_SHA2_256)]
        if encr == ENCR_AES_CBC:
            t += [
                Transform(TRANSFORM_INTEG, AUTH_HMAC_SHA2_512_256),
                Transform(TRANSFORM_INTEG, AUTH_HMAC_SHA2_256_128),
            ]
        t += [Transform(TRANSFORM_DH, g) for g in PLUTO_DH]
        proposals.append(Proposal(number, PROTO_IKE, tuple(t)))
    return SaPayload(tuple(proposals))


def _pluto_esp_offer(*, gcm: bool = True) -> SaPayload:
    proposals = []
    ciphers = ((20, 256), (20, 128), (12, 256), (12, 128)) if gcm else ((12, 256), (12, 128))
    for number, (encr, bits) in enumerate(ciphers, 1):
        t = [Transform(TRANSFORM_ENCR, encr, (TransformAttribute(ATTRIBUTE_KEY_LENGTH, bits),))]
        if encr == ENCR_AES_CBC:
            t += [
                Transform(TRANSFORM_INTEG, AUTH_HMAC_SHA2_512_256),
                Transform(TRANSFORM_INTEG, AUTH_HMAC_SHA2_256_128),
            ]
        t += [Transform(TRANSFORM_ESN, 1), Transform(TRANSFORM_ESN, 0)]  # ENABLED+DISABLED
        proposals.append(Proposal(number, PROTO_ESP, tuple(t), b"\x00\x00\x12\x34"))
    return SaPayload(tuple(proposals))


def test_responder_takes_plutos_default_ike_offer() -> None:
    chosen = choose_proposal(
        IkeConfig(), _pluto_ike_offer(), PROTO_IKE, ke_group=DH_MODP_2048, dh=DH_REQUIRED, spi_len=0
    )
    assert chosen == Suite(PROTO_IKE, ENCR_AES_GCM_16, 256, 0, PRF_HMAC_SHA2_512, DH_MODP_2048, b"", 1)
    with pytest.raises(InvalidKePayload) as wrong:  # a KE in a group pluto offers but we do not take
        choose_proposal(
            IkeConfig(dh_groups=(DH_ECP_384,)), _pluto_ike_offer(), PROTO_IKE, ke_group=14, dh=DH_REQUIRED, spi_len=0
        )
    assert wrong.value.group == DH_ECP_384
    cbc_only = IkeConfig(encrs=(ENCR_AES_CBC,), encr_key_bits=(128,))
    chosen = choose_proposal(cbc_only, _pluto_ike_offer(), PROTO_IKE, ke_group=DH_ECP_521, dh=DH_REQUIRED, spi_len=0)
    assert (chosen.number, chosen.encr_id, chosen.key_bits, chosen.integ_id, chosen.prf_id, chosen.dh_group) == (
        4, ENCR_AES_CBC, 128, AUTH_HMAC_SHA2_512_256, PRF_HMAC_SHA2_512, DH_ECP_521,
    )  # fmt: skip
    answer = SaPayload((chosen.proposal(),))
    assert (
        check_chosen(cbc_only, answer, _pluto_ike_offer().proposals, PROTO_IKE, dh_group=DH_ECP_521, spi_len=0)
        == chosen
    )


def test_responder_takes_plutos_default_esp_offer() -> None:
    chosen = choose_proposal(IkeConfig(), _pluto_esp_offer(), PROTO_ESP, ke_group=None, dh=DH_IGNORED, spi_len=4)
    assert (chosen.encr_id, chosen.key_bits, chosen.integ_id) == (ENCR_AES_GCM_16, 256, 0)
    assert [t.transform_id for t in chosen.proposal().transforms if t.transform_type == TRANSFORM_ESN] == [0]
    chosen = choose_proposal(
        IkeConfig(), _pluto_esp_offer(gcm=False), PROTO_ESP, ke_group=None, dh=DH_IGNORED, spi_len=4
    )
    assert (chosen.encr_id, chosen.key_bits, chosen.integ_id) == (ENCR_AES_CBC, 256, AUTH_HMAC_SHA2_512_256)


def test_before_this_change_the_defaults_were_refused() -> None:
    """What failed before: a responder limited to AES-GCM with PRF_HMAC_SHA2_256 refuses a CBC/SHA2-512 offer."""
    old_style = IkeConfig(encrs=(ENCR_AES_GCM_16,), prfs=(PRF_HMAC_SHA2_256,))
    offer = SaPayload(tuple(p for p in _pluto_ike_offer().proposals if p.number >= 3))
    with pytest.raises(RemoteProtocolError):
        choose_proposal(old_style, offer, PROTO_IKE, ke_group=14, dh=DH_REQUIRED, spi_len=0)
    assert (
        choose_proposal(IkeConfig(), offer, PROTO_IKE, ke_group=14, dh=DH_REQUIRED, spi_len=0).encr_id == ENCR_AES_CBC
    )


@pytest.mark.parametrize(
    "bad", [{"encrs": (3,)}, {"encrs": ()}, {"prfs": (2,)}, {"integs": (0,)}, {"dh_groups": (22,)}]
)
def test_config_refuses_unsupported_algorithms(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        IkeConfig(**bad)


def test_initiator_offers_one_proposal_per_cipher_with_offer_all() -> None:
    assert len(offered_proposals(IkeConfig(), PROTO_IKE, dh_groups=(19,))) == 1
    proposals = offered_proposals(IkeConfig(offer_all=True), PROTO_IKE, dh_groups=(19, 20))
    assert [p.transform(TRANSFORM_ENCR).transform_id for p in proposals] == [ENCR_AES_GCM_16, ENCR_AES_CBC]
    assert proposals[0].transform(TRANSFORM_INTEG) is None  # AEAD: no integrity transform (RFC 5282 §8)
    assert [t.transform_id for t in proposals[1].transforms if t.transform_type == TRANSFORM_INTEG] == [12, 13, 14]
    assert [t.transform_id for t in proposals[1].transforms if t.transform_type == TRANSFORM_PRF] == [5, 6, 7]


# --- whole exchanges --------------------------------------------------------------------------------------------------

SUITES = [
    pytest.param(ENCR_AES_GCM_16, 256, PRF_HMAC_SHA2_384, 0, DH_ECP_384, id="gcm256-prf384-p384"),
    pytest.param(ENCR_AES_CBC, 128, PRF_HMAC_SHA2_256, AUTH_HMAC_SHA2_256_128, DH_ECP_521, id="cbc128-sha256-p521"),
    pytest.param(ENCR_AES_CBC, 256, PRF_HMAC_SHA2_384, AUTH_HMAC_SHA2_384_192, DH_MODP_2048, id="cbc256-sha384-modp"),
    pytest.param(ENCR_AES_CBC, 256, PRF_HMAC_SHA2_512, AUTH_HMAC_SHA2_512_256, DH_ECP_384, id="cbc256-sha512-p384"),
]


def _write_udp_capture(pair: Pair, path: Path) -> None:
    """Every datagram the pair sent, as IPv4/UDP: port 500 for IKE_SA_INIT, 4500 for the rest (RFC 7296 §2.23)."""
    with PcapWriter(path) as pcap:
        for n, (kind, from_i, data) in enumerate(pair.sent):
            if kind != "udp":
                continue
            port = (
                4500 if data.startswith(NON_ESP_MARKER) or len(data) < 28 or data[17] != 0x20 or data[18] != 34 else 500
            )
            src, dst = (I_ADDR, R_ADDR) if from_i else (R_ADDR, I_ADDR)
            udp = encode_datagram(UdpDatagram(port, port, data), pack_address(src), pack_address(dst))
            pcap.write(1.0 + n / 1000, encode_ipv4(Ipv4Packet(src, dst, UDP_PROTOCOL, udp)))


@pytest.mark.parametrize(("encr", "bits", "prf_id", "integ", "group"), SUITES)
def test_exchange_rekeys_and_esp_with_each_suite(
    encr: int, bits: int, prf_id: int, integ: int, group: int, tmp_path: Path
) -> None:
    overrides = {"encrs": (encr,), "encr_key_bits": (bits,), "prfs": (prf_id,), "dh_groups": (group,)}
    if integ:
        overrides["integs"] = (integ,)
    pair = Pair(*configs(transport="udp", **overrides))
    pair.i.connect(now=0.0)
    pair.run(2.0)
    assert len(pair.of("i", IkeSaEstablished)) == 1
    sa = pair.i.sa
    assert (sa.encr_id, sa.key_bits, sa.prf_id, sa.integ_id, sa.dh_group) == (encr, bits, prf_id, integ, group)
    assert pair.i.sa.child.suite.encr_id == encr and pair.i.sa.child.suite.integ_id == integ
    pair.i.rekey_child(now=pair.now)  # with PFS in the same group
    pair.run(pair.now + 2)
    pair.r.rekey_ike(now=pair.now)
    pair.run(pair.now + 2)
    assert len(pair.of("i", IkeSaRekeyed)) == 1
    assert len([e for e in pair.of("r", ChildSaEstablished) if e.rekeyed_spi_in]) == 1
    inner = [_inner_datagram(7001, b"to r"), _inner_datagram(7002, bytes(100))]
    pair.i.send_packet(inner[0], now=pair.now)
    pair.r.send_packet(inner[1], now=pair.now)
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("r", PacketReceived)] == [inner[0]]
    assert [e.data for e in pair.of("i", PacketReceived)] == [inner[1]]
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    capture = tmp_path / "pair.pcap"
    _write_udp_capture(pair, capture)
    tables = key_tables(pair.tracer.records)
    out = subprocess.run(
        [tshark, "-n", "-r", str(capture), *tables.tshark_options(), "-T", "fields", "-e", "esp.spi",
         "-e", "udp.dstport", "-e", "isakmp.exchangetype", "-e", "isakmp.typepayload"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    esp = [r for r in rows if r[0]]
    assert [r[1].split(",")[-1] for r in esp] == ["7001", "7002"]  # decrypted down to the inner UDP header
    rekey = [r for r in rows if r[2] == "36"]
    assert len(rekey) == 4 and all("33" in r[3].split(",") for r in rekey)  # both CREATE_CHILD_SA exchanges


def _inner_datagram(port: int, payload: bytes) -> bytes:
    udp = encode_datagram(UdpDatagram(5000, port, payload), pack_address("10.1.0.1"), pack_address("10.2.0.1"))
    return encode_ipv4(Ipv4Packet("10.1.0.1", "10.2.0.1", UDP_PROTOCOL, udp))
