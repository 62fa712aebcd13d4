"""Certificate authentication (RFC 7427) and IKE fragmentation (RFC 7383) against pluto 4.10 (needs root).

The set-up is ``test_interop_libreswan``'s (namespaces, pluto with the espintcp
shim, childless since this kernel has no ESP), with certificates instead of
the PSK. The lab PKI (lab.ike.certs.make_lab_pki) issues a root, intermediates
and the end entities ``west`` (ours) and ``east`` (pluto's). pluto's NSS db
gets the minimum: the root as a trusted CA (``certutil -A -t CT,,``) and
east's key, certificate and intermediates as one PKCS#12 file (``pk12util``).
pluto names itself by its certificate's subject DN (``leftid=%fromcert``,
ID_DER_ASN1_DN) and expects us by the subjectAltName dNSName ``@west``
(ID_FQDN) or by our DN (``rightid="O=tcplab, CN=west"``, our ``--id-type dn``);
we check its DN against its certificate. pluto signs with the strongest hash
we announce (SHA2-512); we sign with SHA2-256.

pluto's ``fragmentation=yes`` (the default): once both ends sent
IKEV2_FRAGMENTATION_SUPPORTED, pluto 4.10 sends an IKEv2 message that does not
fit a 576-octet datagram as SKF fragments at once, its first transmission
included (``ipsec.conf(5)`` says "on the first re-transmit": that is IKEv1's
behaviour). The router in the fragmentation tests drops IP fragments (as many
firewalls and carrier NATs do), so only RFC 7383 gets the chain through.

Without RFC 7383 on pluto's side the same chain cannot cross that router over
UDP; the last tests show our initiator getting to TCP (RFC 9329) at once
(``--oversize-udp tcp``) or only after the response timeout (``send``).

Figures (sizes, fragment counts, round trips, time to the IKE SA) are printed;
``-s`` shows them. No Child SA: pluto cannot install one without kernel ESP
(CONFIG_INET_ESP is off here: ``ip xfrm state add ... proto esp`` fails with
"Requested type not found"), so no ESP traffic flows with pluto; tshark
decrypts the IKE messages with the keys we export.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from lab.ike.certs import LabPki, issue_certificate, make_lab_pki
from lab.ike.keylog import key_tables
from lab.ike.pcap import iketcp_to_udp
from lab.trace import TraceRecord, read_jsonl
from tests.ike.test_interop_libreswan import (
    OURS,
    PLUTO_ADDR,
    REPO,
    Lab,
    pytestmark,  # noqa: F401  (root only, kernel mark)
    sh,
)
from tests.ike.test_interop_libreswan_rekey import capture

if not Path("/usr/libexec/ipsec/pluto").exists() or shutil.which("pk12util") is None:
    pytest.skip("needs libreswan's pluto and NSS's pk12util (apt-get install libreswan)", allow_module_level=True)

CERT, AUTH, SKF = "37", "39", "53"  # payload types as tshark prints them
IKE_AUTH = "35"
P12_PASSWORD = "lab-p12-not-secret"


@cache
def lab_pki(key_type: str, intermediates: int) -> LabPki:
    """Valid from yesterday: pluto checks validity against the wall clock."""
    yesterday = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    return make_lab_pki(
        random.Random(19), not_before=yesterday, key_type=key_type, intermediates=intermediates, names=("west", "east")
    )


def pem(*certificates: object) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)  # type: ignore[attr-defined]


def write_ours(pki: LabPki, directory: Path) -> list[str]:
    """Our credential files; the ike_live arguments that use them."""
    west = pki.end_entities["west"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "west.pem").write_bytes(pem(west.certificate, *west.chain))
    (directory / "west.key").write_bytes(
        west.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / "root.pem").write_bytes(pem(pki.root.certificate))
    return ["--cert", str(directory / "west.pem"), "--key", str(directory / "west.key"), "--ca", str(directory / "root.pem")]  # fmt: skip


def nss_setup_for(pki: LabPki, directory: Path) -> Callable[[Path], None]:
    """pluto's NSS db: the root trusted as a CA, east's key with its certificate and intermediates."""

    def setup(nss: Path) -> None:
        east = pki.end_entities["east"]
        root_pem, p12 = directory / "root-for-nss.pem", directory / "east.p12"
        root_pem.write_bytes(pem(pki.root.certificate))
        p12.write_bytes(
            pkcs12.serialize_key_and_certificates(
                b"east",
                east.private_key,
                east.certificate,
                list(east.chain),
                serialization.BestAvailableEncryption(P12_PASSWORD.encode()),
            )
        )
        sh("certutil", "-A", "-d", f"sql:{nss}", "-n", "tcplab-root", "-t", "CT,,", "-i", str(root_pem))
        sh("pk12util", "-i", str(p12), "-d", f"sql:{nss}", "-W", P12_PASSWORD)

    return setup


# pluto: its subject DN as ID, its chain (intermediates too) always sent; rightid= names us by dNSName or DN
CONN_CERTS = "\tleftcert=east\n\tleftid=%fromcert\n\tleftsendcert=always\n\tsendca=all\n"


def up(lab: Lab, pki: LabPki, *, transport: str, rightid: str = "@west", extra_conn: str = "") -> None:
    """pluto 4.10 signs by authby=, not by its key: the default rsasig,ecdsa has it sign RSA-PSS with an
    ECDSA key (NSS refuses: SEC_ERROR_INVALID_KEY, and the AUTH goes out broken), so ECDSA keys get authby=ecdsa."""
    ecdsa = not isinstance(pki.end_entities["east"].private_key, rsa.RSAPrivateKey)
    lab.up(
        enable_tcp={"udp": "no", "tcp": "yes", "fallback": "fallback"}[transport],
        conn_auth=CONN_CERTS + f"\trightid={rightid}\n" + ("\tauthby=ecdsa\n" if ecdsa else "") + extra_conn,
        nss_setup=nss_setup_for(pki, lab.tmp),
    )


def drop_ip_fragments(lab: Lab) -> None:
    """The router drops every IP fragment after the first, as many firewalls and carrier NATs do."""
    sh(*lab.at(lab.router), "iptables", "-A", "FORWARD", "-f", "-j", "DROP")


def run_ours(lab: Lab, args: list[str], *, timeout: float = 40) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stderr[-2000:]


def initiator(creds: list[str], transport: str, trace: Path, *extra: str) -> list[str]:
    return ["initiate", "--local", OURS, "--remote", PLUTO_ADDR, "--local-id", "west", *creds,
            "--transport", transport, "--childless", "--timeout", "25", "--trace", str(trace), *extra]  # fmt: skip


def respond_to_pluto(lab: Lab, args: list[str], transport: str) -> tuple[int, list[dict], str, str]:
    """Our responder up and listening, then ``whack --initiate``; (rc, events, stderr, whack output)."""
    responder = subprocess.Popen(
        [*lab.at(lab.ours), sys.executable, "-m", "lab.scenario.ike_live", "respond", "--local", OURS,
         "--local-id", "west", "--timeout", "25", "--linger", "0.5", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30.0
        flags = "-Hlun" if transport == "udp" else "-Hltn"
        while not sh(*lab.at(lab.ours), "ss", flags, "sport = :4500", check=False).stdout.strip():
            assert responder.poll() is None, responder.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "our responder did not listen within 30 s"
            time.sleep(0.02)
        whack = lab.whack_initiate()
        out, err = responder.communicate(timeout=40)
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait(timeout=5)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return responder.returncode, events, err[-2000:], whack


def tshark_rows(pcap: Path, records: list[TraceRecord]) -> list[dict[str, str]]:
    """Per frame, decrypted with the exported keys: source, UDP/TCP length, exchange, payload types, fragment fields."""
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    fields = ["ip.src", "frame.len", "isakmp.exchangetype", "isakmp.typepayload", "isakmp.frag.number",
              "isakmp.frag.total", "isakmp.length", "isakmp.id.type", "frame.time_relative", "isakmp.fragment.count"]  # fmt: skip
    out = sh(
        tshark, "-n", "-r", str(pcap), *key_tables(records).tshark_options(), "-T", "fields",
        "-E", "occurrence=a", *(a for f in fields for a in ("-e", f)),
    ).stdout  # fmt: skip
    rows = []
    for line in out.splitlines():
        values = line.split("\t")
        if len(values) == len(fields) and values[2]:
            rows.append(dict(zip(fields, values, strict=True)))
    return rows


def payload_types(row: dict[str, str]) -> set[str]:
    return set(row["isakmp.typepayload"].split(","))


def auth_ok(records: list[TraceRecord]) -> dict:
    (ok,) = [
        r for r in records if r.layer == "ike" and r.name == "state_updated" and r.data.get("exchange") == "IKE_AUTH"
        and r.data.get("result") == "ok"
    ]  # fmt: skip
    return {"t": ok.t, **ok.data}


def figures(name: str, records: list[TraceRecord], rows: list[dict[str, str]]) -> dict:
    """What the test prints: per side, IKE_AUTH's IKE octets on the wire and its datagrams/frames (SKF fragments
    when more than one), the whole message's length where we know it; the time from the first IKE_SA_INIT
    sent or received to the IKE SA (our clock), and what we saw of pluto's chain and signature."""
    messages = [r for r in records if r.layer == "ike" and r.name in ("segment_sent", "segment_received")]
    first = min(r.t for r in messages)
    ok = auth_ok(records)

    def side(source: str) -> dict[str, int]:
        auth = [w for w in rows if w["ip.src"] == source and w["isakmp.exchangetype"] == IKE_AUTH]
        return {
            "wire_octets": sum(int(w["isakmp.length"].split(",")[0]) for w in auth),
            "frames": len(auth),
            "skf_fragments": sum(1 for w in auth if SKF in payload_types(w)),
        }

    ours_whole = [r.data["length"] for r in messages if r.name == "segment_sent" and r.data["exchange"] == "IKE_AUTH"]
    out = {
        "test": name,
        "time_to_sa_ms": round((ok["t"] - first) * 1000, 1),
        "on_wire_ms": round(  # the capture: from the first IKE_SA_INIT to the last IKE_AUTH frame
            1000
            * (
                max(float(w["frame.time_relative"]) for w in rows if w["isakmp.exchangetype"] == IKE_AUTH)
                - min(float(w["frame.time_relative"]) for w in rows)
            ),
            1,
        ),
        "round_trips": sum(  # our requests (or answers) up to the SA; an INVALID_KE_PAYLOAD costs one
            1
            for r in messages
            if r.name == "segment_sent" and r.t <= ok["t"] and not ({"retransmission", "resent"} & r.data.keys())
        ),
        "ike_auth_ours": {"message_octets": max(ours_whole), **side(OURS)},
        "ike_auth_pluto": side(PLUTO_ADDR),
        "peer_chain": [name.split(",")[0] for name in ok.get("peer_chain", [])],
        "peer_signature": ok.get("peer_signature"),
    }
    print("\nFIGURES " + json.dumps(out))
    return out


@pytest.fixture(name="lab")
def lab_fixture(tmp_path: Path) -> Iterator[Lab]:
    setup = Lab(tmp_path)
    try:
        yield setup
    finally:
        setup.close()


BPF = {"udp": "udp port 500 or udp port 4500 or icmp or (ip[6:2] & 0x1fff != 0)", "tcp": "tcp port 4500 or icmp"}


def decrypted(lab: Lab, pcap: Path, transport: str, records: list[TraceRecord], tmp_path: Path) -> list[dict]:
    if transport == "tcp":
        udp = tmp_path / "ours_udp.pcap"
        assert not iketcp_to_udp(pcap, udp).broken
        pcap = udp
    return tshark_rows(pcap, records)


def check_cert_auth_rows(rows: list[dict[str, str]]) -> None:
    """Both IKE_AUTH messages decrypt to CERT and AUTH payloads, whole or reassembled."""
    auth = [w for w in rows if w["isakmp.exchangetype"] == IKE_AUTH and {CERT, AUTH} <= payload_types(w)]
    assert {w["ip.src"] for w in auth} == {OURS, PLUTO_ADDR}, rows


# --- certificate authentication, both ways, UDP and TCP ---------------------------------------------------------


ID_TYPES = {"san": ("1", "2", "'@west'"), "dn": ("1", "9", "'O=tcplab, CN=west'")}  # ID_FQDN 2, ID_DER_ASN1_DN 9
RIGHTID = {"san": "@west", "dn": '"O=tcplab, CN=west"'}


def pluto_says(key_type: str, our_id: str) -> str:
    """What pluto logs about our authentication (we sign with SHA-256)."""
    kind = "P-256 ECDSA with SHA2_256" if key_type.startswith("ecdsa") else "2048-bit RSASSA-PSS with SHA2_256"
    return f"authenticated peer '{kind}' digital signature using peer certificate {ID_TYPES[our_id][2]}"


def check_ids(rows: list[dict[str, str]], our_id: str, *, pluto_initiates: bool) -> None:
    """tshark's view of the decrypted IDs: pluto names itself by DN (9); we by dNSName (2) or DN (9). pluto's
    IKE_AUTH request also carries the IDr it wants (its rightid=)."""
    ids = {
        w["ip.src"]: w["isakmp.id.type"].split(",")
        for w in rows
        if w["isakmp.exchangetype"] == IKE_AUTH and w["isakmp.id.type"]
    }
    ours = ID_TYPES[our_id][1]
    assert ids == {PLUTO_ADDR: ["9", ours] if pluto_initiates else ["9"], OURS: [ours]}, rows


@pytest.mark.parametrize(
    ("transport", "key_type", "our_id"),
    [("udp", "ecdsa-p256", "san"), ("tcp", "rsa-2048", "dn")],
    ids=["udp-ecdsa-san", "tcp-rsa-pss-dn"],
)
def test_we_initiate_with_certificates(lab: Lab, tmp_path: Path, transport: str, key_type: str, our_id: str) -> None:
    pki = lab_pki(key_type, 1)
    up(lab, pki, transport=transport, rightid=RIGHTID[our_id])
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    creds = [*write_ours(pki, tmp_path / "creds"), "--id-type", "fqdn" if our_id == "san" else "dn"]
    with capture(lab, pcap, BPF[transport]):
        rc, events, err = run_ours(lab, initiator(creds, transport, trace, "--keys", str(tmp_path / "keys")))
    assert rc == 0, (events, err, lab.log()[-4000:])
    assert [e["event"] for e in events] == ["IkeSaEstablished", "LivenessChecked", "IkeSaDeleted"]
    assert events[0]["transport"] == transport
    log = lab.log_with("responder established IKE SA")
    assert f"responder established IKE SA; {pluto_says(key_type, our_id)}" in log, log[-3000:]
    assert "issued by CA 'O=tcplab, CN=tcplab Intermediate CA 1'" in log
    records = list(read_jsonl(trace))
    ok = auth_ok(records)
    assert ok["peer_chain"] == [
        "CN=east,O=tcplab",
        "CN=tcplab Intermediate CA 1,O=tcplab",
        "CN=tcplab Root CA,O=tcplab",
    ]
    assert ok["peer_signature"] == ("ecdsa-sha256" if key_type.startswith("ecdsa") else "rsa-pss-sha256")
    rows = decrypted(lab, pcap, transport, records, tmp_path)
    check_cert_auth_rows(rows)
    check_ids(rows, our_id, pluto_initiates=False)
    figures(f"we initiate, {transport}, {key_type}, our ID by {our_id}", records, rows)


@pytest.mark.parametrize(
    ("transport", "key_type", "our_id"),
    [("udp", "rsa-2048", "dn"), ("tcp", "ecdsa-p256", "san")],
    ids=["udp-rsa-pss-dn", "tcp-ecdsa-san"],
)
def test_pluto_initiates_with_certificates(
    lab: Lab, tmp_path: Path, transport: str, key_type: str, our_id: str
) -> None:
    pki = lab_pki(key_type, 1)
    up(lab, pki, transport=transport, rightid=RIGHTID[our_id])
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    creds = [*write_ours(pki, tmp_path / "creds"), "--id-type", "fqdn" if our_id == "san" else "dn"]
    with capture(lab, pcap, BPF[transport]):
        rc, events, err, whack = respond_to_pluto(
            lab, [*creds, "--trace", str(trace), "--keys", str(tmp_path / "keys")], transport
        )
    assert rc == 0, (events, err, whack, lab.log()[-4000:])
    assert [e["event"] for e in events] == ["IkeSaEstablished"] and events[0]["transport"] == transport
    log = lab.log_with("initiator established IKE SA")
    assert f"initiator established IKE SA; {pluto_says(key_type, our_id)}" in log, log[-3000:]
    records = list(read_jsonl(trace))
    ok = auth_ok(records)
    assert ok["peer_chain"][0] == "CN=east,O=tcplab"
    # pluto signs with the strongest hash we announce (SHA2-512), for ECDSA P-256 too
    assert ok["peer_signature"] == ("ecdsa-sha512" if key_type.startswith("ecdsa") else "rsa-pss-sha512")
    rows = decrypted(lab, pcap, transport, records, tmp_path)
    check_cert_auth_rows(rows)
    check_ids(rows, our_id, pluto_initiates=True)
    figures(f"pluto initiates, {transport}, {key_type}, our ID by {our_id}", records, rows)


# --- IKE fragmentation (RFC 7383), both ways, through a router that drops IP fragments -------------------------------

BIG_CHAIN = ("rsa-3072", 2)  # three RSA-3072 certificates in CERT payloads: IKE_AUTH of about 4.5 kB


def skf_sets(rows: list[dict[str, str]], source: str) -> list[tuple[int, int]]:
    """(fragment number, total) of every SKF frame from ``source``, as tshark reads the RFC 7383 header."""
    return [
        (int(w["isakmp.frag.number"].split(",")[0]), int(w["isakmp.frag.total"].split(",")[0]))
        for w in rows
        if w["ip.src"] == source and SKF in payload_types(w) and w["isakmp.frag.number"]
    ]


def check_reassembled_by_tshark(rows: list[dict[str, str]], source: str, total: int, certificates: int) -> None:
    """tshark decrypts every SKF with the exported keys and, at the last fragment, shows the reassembled
    message: the CERT payloads of the whole chain and the AUTH."""
    (whole,) = [w for w in rows if w["ip.src"] == source and SKF in payload_types(w) and w["isakmp.fragment.count"]]
    assert int(whole["isakmp.fragment.count"]) == total, whole
    assert whole["isakmp.typepayload"].split(",").count(CERT) == certificates and AUTH in payload_types(whole), whole


def check_fragment_sets(sets: list[tuple[int, int]]) -> int:
    """Every set whole (1..total, each once per sending); the number of fragments per set."""
    assert sets, "no SKF frames"
    totals = {total for _, total in sets}
    assert len(totals) == 1, sets
    total = totals.pop()
    assert total >= 2, sets
    assert sorted(sets) == sorted((n, total) for n in range(1, total + 1) for _ in range(len(sets) // total)), sets
    return total


def test_we_fragment_our_ike_auth_and_pluto_answers_in_fragments(lab: Lab, tmp_path: Path) -> None:
    """Our IKE_AUTH in RFC 7383 fragments; pluto reassembles it and, having received fragments, fragments its
    answer at once. No IP fragment gets through the router, so nothing else could work."""
    pki = lab_pki(*BIG_CHAIN)
    up(lab, pki, transport="udp")
    drop_ip_fragments(lab)
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    creds = write_ours(pki, tmp_path / "creds")
    with capture(lab, pcap, BPF["udp"]):
        rc, events, err = run_ours(
            lab, initiator(creds, "udp", trace, "--fragmentation", "--dh-group", "14", "--keys", str(tmp_path / "keys"))
        )
    assert rc == 0, (events, err, lab.log()[-4000:])
    assert [e["event"] for e in events] == ["IkeSaEstablished", "LivenessChecked", "IkeSaDeleted"]
    log = lab.log_with("responder established IKE SA")
    assert "responder established IKE SA; authenticated peer '3072-bit RSASSA-PSS with SHA2_256'" in log, log[-3000:]
    records = list(read_jsonl(trace))
    assert auth_ok(records)["fragments_sent"] >= 3
    reassembled = [r.data for r in records if r.name == "state_updated" and r.data.get("event") == "reassembled"]
    assert [d["exchange"] for d in reassembled] == ["IKE_AUTH"] and reassembled[0]["fragments"] >= 2
    rows = tshark_rows(pcap, records)
    ours, theirs = check_fragment_sets(skf_sets(rows, OURS)), check_fragment_sets(skf_sets(rows, PLUTO_ADDR))
    assert ours == auth_ok(records)["fragments_sent"] and theirs == reassembled[0]["fragments"]
    check_reassembled_by_tshark(rows, OURS, ours, 3)
    check_reassembled_by_tshark(rows, PLUTO_ADDR, theirs, 3)
    assert max(int(w["frame.len"]) for w in rows if w["ip.src"] == OURS) <= 1514  # one Ethernet frame each
    figures("fragmentation, we initiate, udp, rsa-3072 + 2 intermediates", records, rows)


def test_pluto_fragments_its_ike_auth_through_a_fragment_dropping_router(lab: Lab, tmp_path: Path) -> None:
    """fragmentation=yes: pluto's IKE_AUTH request goes as RFC 7383 fragments of at most 576 octets from its
    first transmission; we reassemble it and answer in fragments of our path MTU. No IP fragment gets through."""
    pki = lab_pki(*BIG_CHAIN)
    up(lab, pki, transport="udp", extra_conn="\tfragmentation=yes\n")
    drop_ip_fragments(lab)
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    creds = write_ours(pki, tmp_path / "creds")
    with capture(lab, pcap, BPF["udp"]):
        rc, events, err, whack = respond_to_pluto(
            lab, [*creds, "--fragmentation", "--trace", str(trace), "--keys", str(tmp_path / "keys")], "udp"
        )
    assert rc == 0, (events, err, whack, lab.log()[-4000:])
    assert [e["event"] for e in events] == ["IkeSaEstablished"]
    log = lab.log_with("initiator established IKE SA")
    assert "initiator established IKE SA; authenticated peer '3072-bit RSASSA-PSS with SHA2_256'" in log, log[-3000:]
    records = list(read_jsonl(trace))
    ok = auth_ok(records)
    assert ok["peer_signature"] == "rsa-pss-sha512" and ok["fragments_sent"] >= 3
    reassembled = [r.data for r in records if r.name == "state_updated" and r.data.get("event") == "reassembled"]
    assert [d["exchange"] for d in reassembled] == ["IKE_AUTH"]
    rows = tshark_rows(pcap, records)
    theirs = check_fragment_sets(skf_sets(rows, PLUTO_ADDR))
    assert theirs == reassembled[0]["fragments"]
    assert check_fragment_sets(skf_sets(rows, OURS)) == ok["fragments_sent"]
    check_reassembled_by_tshark(rows, OURS, ok["fragments_sent"], 3)
    check_reassembled_by_tshark(rows, PLUTO_ADDR, theirs, 3)
    pluto_auth = [w for w in rows if w["ip.src"] == PLUTO_ADDR and w["isakmp.exchangetype"] == IKE_AUTH]
    assert all(SKF in payload_types(w) and int(w["frame.len"]) <= 14 + 576 for w in pluto_auth)
    assert len(pluto_auth) == theirs  # sent once: no retransmission was needed
    figures("fragmentation, pluto initiates, udp, rsa-3072 + 2 intermediates", records, rows)


def test_a_big_chain_goes_whole_over_tcp(lab: Lab, tmp_path: Path) -> None:
    """Both offer RFC 7383, but over TCP nothing is fragmented (RFC 7383 §2.5.3 / RFC 9329 §2): one IKE_AUTH
    message each way, carried whole by the stream."""
    pki = lab_pki(*BIG_CHAIN)
    up(lab, pki, transport="tcp")
    drop_ip_fragments(lab)  # TCP segments fit the path: nothing for the router to drop
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    creds = write_ours(pki, tmp_path / "creds")
    with capture(lab, pcap, BPF["tcp"]):
        rc, events, err = run_ours(
            lab, initiator(creds, "tcp", trace, "--fragmentation", "--dh-group", "14", "--keys", str(tmp_path / "keys"))
        )
    assert rc == 0, (events, err, lab.log()[-4000:])
    assert events[0]["event"] == "IkeSaEstablished" and events[0]["transport"] == "tcp"
    records = list(read_jsonl(trace))
    assert "fragments_sent" not in auth_ok(records)
    assert not [r for r in records if r.data.get("event") == "reassembled"]
    rows = decrypted(lab, pcap, "tcp", records, tmp_path)
    check_cert_auth_rows(rows)
    out = figures("big chain over tcp, we initiate, rsa-3072 + 2 intermediates", records, rows)
    assert out["ike_auth_ours"]["frames"] == out["ike_auth_pluto"]["frames"] == 1
    assert out["ike_auth_ours"]["skf_fragments"] == out["ike_auth_pluto"]["skf_fragments"] == 0


@pytest.mark.parametrize("policy", ["tcp", "send"])
def test_without_fragmentation_the_big_ike_auth_goes_to_tcp(lab: Lab, tmp_path: Path, policy: str) -> None:
    """pluto with fragmentation=no behind a router that drops IP fragments: our 3.9 kB IKE_AUTH cannot cross
    over UDP. With oversize_udp "tcp" we see it coming from pluto's IKE_SA_INIT answer (no
    IKEV2_FRAGMENTATION_SUPPORTED) and start over on TCP at once; with "send" the IKE_AUTH goes out in IP
    fragments, is lost with every retransmission, and only the response timeout sends us to TCP."""
    pki = lab_pki(*BIG_CHAIN)
    up(lab, pki, transport="fallback", extra_conn="\tfragmentation=no\n")
    drop_ip_fragments(lab)
    trace = tmp_path / "trace.jsonl"
    creds = write_ours(pki, tmp_path / "creds")
    args = initiator(creds, "fallback", trace, "--fragmentation", "--dh-group", "14", "--oversize-udp", policy)
    args[args.index("--timeout") + 1] = "30"
    started = time.monotonic()
    rc, events, err = run_ours(lab, [*args, "--retransmit", "0.1"], timeout=45)
    wall = time.monotonic() - started
    assert rc == 0, (events, err, lab.log()[-4000:])
    names = [e["event"] for e in events]
    assert names[-3:] == ["IkeSaEstablished", "LivenessChecked", "IkeSaDeleted"], events
    assert events[names.index("IkeSaEstablished")]["transport"] == "tcp"
    log = lab.log_with("responder established IKE SA")
    assert "IKETCP ACCEPTED" in log and "responder established IKE SA" in log, log[-3000:]
    records = list(read_jsonl(trace))
    too_big = [r.data for r in records if r.data.get("event") == "too_big_for_udp" and "exchange" in r.data]
    ip_fragments = [r.data for r in records if r.data.get("event") == "ip_fragments"]
    if policy == "tcp":
        assert len(too_big) == 1 and too_big[0]["exchange"] == "IKE_AUTH" and not ip_fragments
        assert too_big[0]["peer_fragmentation"] is False
    else:
        assert not too_big and ip_fragments and ip_fragments[0]["exchange"] == "IKE_AUTH"
    sent = [r for r in records if r.layer == "ike" and r.name == "segment_sent"]
    print(
        "\nFIGURES "
        + json.dumps(
            {
                "test": f"no fragmentation, fragment-dropping router, oversize_udp={policy}",
                "time_to_sa_ms": round((auth_ok(records)["t"] - min(r.t for r in sent)) * 1000, 1),
                "wall_s": round(wall, 2),
                "udp_ike_auth_sends": sum(
                    1 for r in sent if r.data["exchange"] == "IKE_AUTH" and r.data["transport"] == "udp"
                ),
                "events": names,
            }
        )
    )


def drop_one_full_fragment(lab: Lab, source: str, ip_length: int) -> None:
    """The router drops the first UDP datagram of exactly ``ip_length`` octets from ``source``, once (pluto,
    seeing no NAT, stays on port 500: RFC 7296 §2.23 moves to 4500 only with a NAT, or as we do, always)."""
    sh(*lab.at(lab.router), "iptables", "-I", "FORWARD", "-p", "udp", "-s", source, "-m", "length",
       "--length", str(ip_length), "-m", "quota", "--quota", str(ip_length), "-j", "DROP")  # fmt: skip


@pytest.mark.parametrize("lost", ["pluto's", "ours"])
def test_a_lost_fragment_costs_one_retransmission_of_whole_messages(lab: Lab, tmp_path: Path, lost: str) -> None:
    """RFC 7383 §2.6.1: the initiator resends every fragment of its request; the responder, seeing the first
    fragment of a request it already answered, resends every fragment of its response. One of pluto's
    576-octet fragments lost: we are the initiator and resend. One of our 1500-octet fragments lost: pluto
    initiates and resends, and we answer from the cached fragments."""
    pki = lab_pki(*BIG_CHAIN)
    up(lab, pki, transport="udp")
    drop_ip_fragments(lab)
    pcap, trace = tmp_path / "ours.pcap", tmp_path / "trace.jsonl"
    creds = write_ours(pki, tmp_path / "creds")
    if lost == "pluto's":
        drop_one_full_fragment(lab, PLUTO_ADDR, 576 - 9)  # pluto's full fragments: 567-octet IP datagrams
        with capture(lab, pcap, BPF["udp"]):
            rc, events, err = run_ours(
                lab,
                initiator(creds, "udp", trace, "--fragmentation", "--dh-group", "14", "--keys", str(tmp_path / "keys")),
            )
        whack = ""
    else:
        drop_one_full_fragment(lab, OURS, 1500)  # ours fill the 1500-octet path MTU
        with capture(lab, pcap, BPF["udp"]):
            rc, events, err, whack = respond_to_pluto(
                lab, [*creds, "--fragmentation", "--trace", str(trace), "--keys", str(tmp_path / "keys")], "udp"
            )
    assert rc == 0, (events, err, whack, lab.log()[-4000:])
    assert events[0]["event"] == "IkeSaEstablished"
    records = list(read_jsonl(trace))
    auth_sent = [r.data for r in records if r.name == "segment_sent" and r.data.get("exchange") == "IKE_AUTH"]
    rows = tshark_rows(pcap, records)
    ours, theirs = skf_sets(rows, OURS), skf_sets(rows, PLUTO_ADDR)
    if lost == "pluto's":
        assert [d.get("retransmission", 0) for d in auth_sent] == [0, 1], auth_sent  # we resent our request once
        assert len(ours) == 2 * ours[0][1] and len(theirs) == 2 * theirs[0][1] - 1  # one of pluto's never arrived
    else:
        assert [d.get("resent", "") for d in auth_sent] == ["", "retransmitted request"], auth_sent
        assert len(ours) == 2 * ours[0][1] and len(theirs) == 2 * theirs[0][1]  # ours was lost past the capture
        log = lab.log_with("initiator established IKE SA")
        assert "initiator established IKE SA" in log, log[-3000:]
    figures(f"fragmentation, one of {'our' if lost == 'ours' else lost} fragments lost once", records, rows)


@pytest.mark.parametrize("authby", ["rsa-sha2_384", "rsa-sha2_512"])
def test_we_sign_with_a_hash_pluto_announced(lab: Lab, tmp_path: Path, authby: str) -> None:
    """RFC 7427 §4: a signer uses a hash the peer listed in SIGNATURE_HASH_ALGORITHMS. pluto with
    authby=rsa-sha2_384 (or _512) lists only that hash and refuses an RSA-PSS signature with SHA-256."""
    pki = lab_pki("rsa-2048", 1)
    up(lab, pki, transport="udp", extra_conn=f"\tauthby={authby}\n")
    trace = tmp_path / "trace.jsonl"
    rc, events, err = run_ours(lab, initiator(write_ours(pki, tmp_path / "creds"), "udp", trace, "--dh-group", "14"))
    assert rc == 0, (events, err, lab.log()[-4000:])
    bits = authby.rsplit("_", 1)[1]
    log = lab.log_with("responder established IKE SA")
    assert f"authenticated peer '2048-bit RSASSA-PSS with SHA2_{bits}'" in log, log[-3000:]
    assert auth_ok(list(read_jsonl(trace)))["peer_signature"] == f"rsa-pss-sha{bits}"


@pytest.mark.parametrize("address_in_certificate", [True, False], ids=["ipaddress-san", "dns-san-only"])
def test_pluto_named_by_its_address(lab: Lab, tmp_path: Path, address_in_certificate: bool) -> None:
    """With leftcert= and no leftid=, pluto 4.10 names itself by its address (ID_IPV4_ADDR). A certificate
    with that iPAddress in its subjectAltName names it (RFC 4945); one without it does not, and we say so."""
    base = lab_pki("ecdsa-p256", 1)
    east = issue_certificate(
        name="east",
        key=base.end_entities["east"].private_key,
        issuer=base.intermediates[0],
        rng=random.Random(5),
        not_before=base.end_entities["east"].certificate.not_valid_before_utc,
        addresses=(PLUTO_ADDR,) if address_in_certificate else (),
    )
    pki = LabPki(base.root, base.intermediates, {**base.end_entities, "east": east})
    lab.up(
        enable_tcp="no",
        conn_auth="\tleftcert=east\n\tleftsendcert=always\n\tsendca=all\n\trightid=@west\n\tauthby=ecdsa\n",
        nss_setup=nss_setup_for(pki, lab.tmp),
    )
    trace = tmp_path / "trace.jsonl"
    rc, events, err = run_ours(lab, initiator(write_ours(pki, tmp_path / "creds"), "udp", trace, "--dh-group", "14"))
    auth = [
        r.data
        for r in read_jsonl(trace)
        if r.name == "state_updated" and r.data.get("exchange") == "IKE_AUTH" and "result" in r.data
    ]
    if address_in_certificate:
        assert rc == 0, (events, err, lab.log()[-3000:])
        assert auth[-1]["result"] == "ok"
    else:
        assert rc == 1 and events[-1]["event"] == "IkeSaDeleted" and events[-1]["error"], events
        assert auth[-1]["reason"] == (
            "responder AUTH did not verify: the certificate does not name ID_IPV4_ADDR 10.89.2.1"
        ), auth
