"""Hybrid post-quantum IKE wired into the real exchanges (RFC 9242, RFC 9370, ML-KEM), in the simulator.

Two endpoints (tests.ike.pair) or a whole simulated network (IkeSession on
single-path): IKE_SA_INIT with an ECDH group and ADDKE1 = ML-KEM, one
IKE_INTERMEDIATE, the keys updated, IntAuth in AUTH, IKE_AUTH at MID 2, and
ESP whose keys come from the last SK_d, byte-exact end to end.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.ike.events import IkeSaDeleted, IkeSaEstablished, PacketReceived
from lab.ike.keylog import KeyTables, key_tables
from lab.ike.keys import decrypt_message, derive_child_sa_keys, encr_key_len, encrypt_message
from lab.ike.multi_ke import IKE_INTERMEDIATE
from lab.scenario import Scenario, run_scenario
from lab.scenario.ike import IkeSession
from lab.trace import MemoryTracer, read_jsonl
from lab.wire.buffer import Buffer
from lab.wire.ikev2 import AUTHENTICATION_FAILED, NON_ESP_MARKER, NotifyPayload, pull_ike_header
from tests.ike.pair import Pair, configs

TSHARK = shutil.which("tshark")
HYBRIDS = {"x25519+mlkem768": (31, 36), "p256+mlkem1024": (19, 37)}


def hybrid_pair(combo: str, transport: str = "udp", **overrides: object) -> Pair:
    dh, kem = HYBRIDS[combo]
    pair = Pair(*configs(transport=transport, dh_groups=(dh,), additional_key_exchanges=(kem,), **overrides))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    return pair


def exchanges(pair: Pair, node: str) -> list[tuple[str, int, bool]]:
    return [
        (r.data["exchange"], r.data["message_id"], r.data["response"])
        for r in pair.tracer.select(layer="ike", name="segment_sent", node=node)
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("combo", sorted(HYBRIDS))
def test_hybrid_ike_sa_runs_one_intermediate_exchange_then_ike_auth_at_mid_2(combo: str, transport: str) -> None:
    dh, kem = HYBRIDS[combo]
    pair = hybrid_pair(combo, transport)
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == [transport]
    assert len(pair.of("r", IkeSaEstablished)) == 1
    assert exchanges(pair, "i")[:3] == [
        ("IKE_SA_INIT", 0, False),
        ("IKE_INTERMEDIATE", 1, False),
        ("IKE_AUTH", 2, False),
    ]
    assert exchanges(pair, "r")[:3] == [("IKE_SA_INIT", 0, True), ("IKE_INTERMEDIATE", 1, True), ("IKE_AUTH", 2, True)]
    sa_i, sa_r = pair.i.sa, pair.r.sas()[0]
    assert sa_i.dh_group == sa_r.dh_group == dh
    assert sa_i.additional_kes == sa_r.additional_kes == (kem,)
    assert sa_i.intermediate_done == sa_r.intermediate_done == 1
    # two key stages per end: IKE_SA_INIT's, then after IKE_INTERMEDIATE; both ends agree on each
    stages = {
        node: [r.data for r in pair.tracer.select(layer="ike", name="key_updated", node=node)] for node in ("i", "r")
    }
    assert [d.get("intermediate") for d in stages["i"]] == [None, 1]
    assert [d["sk_ei"] for d in stages["i"]] == [d["sk_ei"] for d in stages["r"]]
    assert stages["i"][0]["sk_ei"] != stages["i"][1]["sk_ei"]
    assert sa_i.keys == sa_r.keys and sa_i.keys.sk_ei.hex() == stages["i"][1]["sk_ei"]
    # the Child SA of IKE_AUTH: KEYMAT from the last SK_d (RFC 9370 §2.2.2)
    child_i = sa_i.child
    expected = derive_child_sa_keys(
        prf_id=sa_i.prf_id,
        sk_d=sa_i.keys.sk_d,
        ni=sa_i._ni,
        nr=sa_i._nr,
        encr_key_len=encr_key_len(child_i.suite.encr_id, child_i.key_bits),
    )
    assert child_i.keymat_out == expected.encr_i2r and child_i.keymat_in == expected.encr_r2i
    # ESP both ways, byte-exact
    pair.i.send_packet(b"\x45hybrid inner packet i->r", now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"\x45hybrid inner packet i->r"]
    pair.r.send_packet(b"\x45and back", now=pair.now, sa=sa_r)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("i", PacketReceived)] == [b"\x45and back"]


def test_key_export_writes_the_final_keys_for_tshark() -> None:
    pair = hybrid_pair("x25519+mlkem768")
    tables = key_tables(pair.tracer.records)
    (row,) = tables.ikev2
    final = pair.i.sa.keys
    assert final.sk_ei.hex() in row and final.sk_er.hex() in row
    first = next(r.data for r in pair.tracer.select(layer="ike", name="key_updated", node="i"))
    assert first["sk_ei"] not in row  # the IKE_SA_INIT keys are superseded
    assert len(tables.esp) == 2


def test_responder_refuses_a_method_it_does_not_accept() -> None:
    pair = Pair(*configs(dh_groups=(31,), additional_key_exchanges=(37,), r_accepted_additional_kes=(36,)))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and "NO_PROPOSAL_CHOSEN" in deleted.reason
    assert not pair.of("i", IkeSaEstablished)


def test_classic_peer_that_ignores_addke_is_not_taken_for_hybrid() -> None:
    """A responder that chose a proposal without our (required) ADDKE round would leave the SA classic: refuse it."""
    pair = Pair(*configs(transport="udp", dh_groups=(31,), additional_key_exchanges=(36,)))

    from lab.ike.multi_ke import TRANSFORM_ADDKE1
    from lab.wire.ikev2 import SaPayload, decode_ike_message, encode_ike_message

    def strip_addke(kind: str, from_i: bool, data: bytes) -> bytes:
        if kind != "udp" or from_i or data[:4] == NON_ESP_MARKER:
            return data
        message = decode_ike_message(data)
        payloads = []
        for p in message.payloads:
            if isinstance(p, SaPayload):
                (prop,) = p.proposals
                p = SaPayload(
                    (
                        type(prop)(
                            prop.number,
                            prop.protocol_id,
                            tuple(t for t in prop.transforms if t.transform_type < TRANSFORM_ADDKE1),
                            prop.spi,
                        ),
                    )
                )
            payloads.append(p)
        return encode_ike_message(
            type(message)(
                message.spi_i, message.spi_r, message.exchange_type, message.message_id, tuple(payloads), response=True
            )
        )

    pair.tamper = strip_addke
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert not pair.of("i", IkeSaEstablished)
    failed = [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("result") == "failed"
    ]
    assert "additional key exchanges [] chosen, we asked for [36]" in failed[0]["reason"]


def test_auth_fails_when_an_ike_intermediate_message_was_altered() -> None:
    """IntAuth (RFC 9242 §3.3.2): someone holding the IKE_SA_INIT keys adds a payload to the IKE_INTERMEDIATE
    request and re-encrypts it. The responder accepts it (the KE is untouched, so both derive the same keys),
    but the messages the two ends saw differ, and the initiator's AUTH does not verify."""
    pair = Pair(*configs(dh_groups=(31,), additional_key_exchanges=(36,)))
    altered = []

    def alter(kind: str, from_i: bool, data: bytes) -> bytes:
        if kind != "udp" or not from_i or data[:4] != NON_ESP_MARKER:
            return data
        message = data[4:]
        if pull_ike_header(Buffer(message)).exchange_type != IKE_INTERMEDIATE:
            return data
        keys = next(r.data for r in pair.tracer.select(layer="ike", name="key_updated", node="i"))
        sk_ei = bytes.fromhex(keys["sk_ei"])
        header, inner = decrypt_message(message, sk_e=sk_ei)
        extra = NotifyPayload(40960, b"inserted on the way")  # a private-use status notify: ignored, not refused
        forged = encrypt_message(
            type(header)(header.spi_i, header.spi_r, header.exchange_type, header.message_id, (), initiator=True),
            (*inner, extra),
            sk_e=sk_ei,
            iv=b"\xee" * 8,
        )
        altered.append(len(forged))
        return NON_ESP_MARKER + forged

    pair.tamper = alter
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert altered
    assert not pair.of("r", IkeSaEstablished) and not pair.of("i", IkeSaEstablished)
    r_failed = [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node="r")
        if r.data.get("exchange") == "IKE_AUTH"
    ]
    assert r_failed and r_failed[0]["result"] == "failed" and "initiator AUTH did not verify" in r_failed[0]["reason"]
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.notify_type == AUTHENTICATION_FAILED
    # the same run without the alteration establishes: the extra payload alone changes nothing else
    clean = hybrid_pair("x25519+mlkem768")
    assert clean.of("i", IkeSaEstablished)


def test_retransmitted_intermediate_request_gets_the_cached_response_under_the_old_keys() -> None:
    """The responder updated its keys after answering; a retransmitted IKE_INTERMEDIATE (its response lost)
    still verifies under the keys that protected it and gets the same response again."""
    pair = Pair(*configs(dh_groups=(31,), additional_key_exchanges=(36,)))
    dropped = []

    def lose_first_intermediate_response(kind: str, from_i: bool, data: bytes) -> bytes | None:
        ours = kind == "udp" and not from_i and data[:4] == NON_ESP_MARKER
        if ours and pull_ike_header(Buffer(data[4:])).exchange_type == IKE_INTERMEDIATE and not dropped:
            dropped.append(data)
            return None
        return data

    pair.tamper = lose_first_intermediate_response
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert dropped and pair.of("i", IkeSaEstablished)
    resent = [r.data for r in pair.tracer.select(layer="ike", name="segment_sent", node="r") if r.data.get("resent")]
    assert [(d["exchange"], d["message_id"]) for d in resent] == [("IKE_INTERMEDIATE", 1)]


def _pq_session(name: str, kem: int, dh: int, transport: str, **extra: object) -> IkeSession:
    """One session of the two: the host's one responder (built from the first session's settings) takes both."""
    return IkeSession(
        name=name,
        initiator_config={"dh_groups": (dh,), "transport": transport, "additional_key_exchanges": (kem,), **extra},
        responder_config={"dh_groups": (31, 19), **extra},
        data_bytes=48 * 1024,
    )


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_hybrid_sessions_in_the_simulator_carry_esp_byte_exact(transport: str) -> None:
    scenario = Scenario(
        name=f"pq-{transport}",
        description="hybrid IKE in the simulator",
        topology="single-path",
        transfers=(_pq_session("x25519", 36, 31, transport), _pq_session("p256", 37, 19, transport)),
        time_limit_s=60.0,
    )
    result = run_scenario(scenario, seed=3, pcaps=False)
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert {t.extra["transport"] for t in result.transfers} == {transport}
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    done = [
        r
        for r in tracer.records
        if r.layer == "ike" and r.data.get("exchange") == "IKE_INTERMEDIATE" and r.data.get("result") == "ok"
    ]
    assert sorted((r.node, r.data["additional_ke"]) for r in done) == [("h1", 36), ("h1", 37), ("h2", 36), ("h2", 37)]
    auth = [
        r
        for r in tracer.records
        if r.layer == "ike" and r.name == "segment_sent" and r.data.get("exchange") == "IKE_AUTH"
    ]
    assert {r.data["message_id"] for r in auth} == {2}
    assert all(t.extra.get("closed") for t in result.transfers if t.name.endswith("r->i"))


def test_tshark_decrypts_ike_auth_with_the_final_keys_and_ike_intermediate_with_the_first(tmp_path: Path) -> None:
    """What keylog's docstring says tshark's one-row-per-SPI-pair table can and cannot do, checked with tshark."""
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark)")
    scenario = Scenario(
        name="pq-tshark",
        description="hybrid IKE for tshark",
        topology="single-path",
        transfers=(_pq_session("x25519", 36, 31, "udp"),),
        time_limit_s=60.0,
    )
    out = tmp_path / "run"
    assert run_scenario(scenario, seed=3, out_dir=out).ok
    records = list(read_jsonl(out / "trace.jsonl"))

    def decoded(tables: KeyTables) -> dict[str, list[tuple[bool, set[str]]]]:
        """Exchange type -> (ICV verified, payload types) per IKE message tshark decrypted with ``tables``."""
        fields = ("isakmp.exchangetype", "isakmp.typepayload", "_ws.expert.message")
        proc = subprocess.run(
            [TSHARK, "-n", "-r", str(out / "pcaps" / "h1-eth0.pcap"), *tables.tshark_options(), "-T", "fields"]
            + ["-E", "separator=|", *(a for f in fields for a in ("-e", f))],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        rows: dict[str, list[tuple[bool, set[str]]]] = {}
        for line in proc.stdout.splitlines():
            exchange, payloads, expert = line.split("|")
            if exchange:
                verified = "Integrity Checksum Data is incorrect" not in expert
                rows.setdefault(exchange, []).append((verified, set(payloads.split(","))))
        return rows

    final = decoded(key_tables(records))
    assert len(final["35"]) == 2 and all(ok and {"35", "39"} & p for ok, p in final["35"])  # IKE_AUTH: SK{ID, AUTH}
    assert len(final["43"]) == 2 and not any(ok for ok, _ in final["43"])  # IKE_INTERMEDIATE: wrong keys, bad ICV
    first = decoded(key_tables(r for r in records if "intermediate" not in r.data))
    assert all(ok and "34" in p for ok, p in first["43"])  # the IKE_SA_INIT keys open SK{KE}
    assert not any(ok for ok, _ in first["35"])


def test_a_hybrid_sa_rekeys_its_child_and_itself_and_keeps_fragmentation() -> None:
    """Rekeys run ML-KEM-1024 again in IKE_FOLLOWUP_KE (RFC 9370 §2.2.4, tests/ike/test_followup_ke.py), its
    1568-octet KE in RFC 7383 fragments on a 1280-octet path, and the new IKE SA keeps fragmentation."""
    pair = hybrid_pair("p256+mlkem1024", fragmentation=True, path_mtu_bytes=1280)
    old = pair.i.sa
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 1.0)
    new = pair.i.sa
    assert new is not old and new.established and new.fragmentation and new.additional_kes == (37,)
    followups = [
        r.data
        for r in pair.tracer.select(layer="ike", name="segment_sent", node="i")
        if r.data["exchange"] == "IKE_FOLLOWUP_KE"
    ]
    assert len(followups) == 2 and all(d["fragments"] >= 2 for d in followups)
    assert new.keys.sk_d != old.keys.sk_d
    pair.i.send_packet(b"\x45after both rekeys", now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"\x45after both rekeys"]


def test_two_additional_key_exchanges_take_two_intermediate_exchanges() -> None:
    pair = Pair(*configs(transport="udp", dh_groups=(31,), additional_key_exchanges=(36, 37)))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert pair.of("i", IkeSaEstablished) and pair.of("r", IkeSaEstablished)
    assert exchanges(pair, "i")[:4] == [
        ("IKE_SA_INIT", 0, False),
        ("IKE_INTERMEDIATE", 1, False),
        ("IKE_INTERMEDIATE", 2, False),
        ("IKE_AUTH", 3, False),
    ]
    assert pair.i.sa.intermediate_done == pair.r.sas()[0].intermediate_done == 2
    stages = [r.data.get("additional_ke") for r in pair.tracer.select(layer="ike", name="key_updated", node="r")]
    assert stages == [None, 36, 37]


def test_invalid_ke_payload_retry_keeps_the_additional_key_exchange() -> None:
    """The responder wants the other ECDH group (RFC 7296 §1.2): the initiator retries IKE_SA_INIT, ADDKE and all."""
    pair = Pair(*configs(transport="udp", i_dh_groups=(19, 31), r_dh_groups=(31,), additional_key_exchanges=(36,)))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert pair.of("i", IkeSaEstablished)
    assert pair.i.sa.dh_group == 31 and pair.i.sa.additional_kes == (36,)
    retries = [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("result") == "INVALID_KE_PAYLOAD"
    ]
    assert [d["dh_group"] for d in retries] == [31]


def test_config_checks_the_new_fields() -> None:
    from lab.errors import ConfigError
    from lab.ike.config import IkeConfig

    assert IkeConfig(additional_key_exchanges=[36, 37]).additional_key_exchanges == (36, 37)  # from JSON
    with pytest.raises(ConfigError, match="additional_key_exchanges must be drawn from"):
        IkeConfig(additional_key_exchanges=(35,))  # ML-KEM-512: named, not implemented
    with pytest.raises(ConfigError, match="at most 7"):
        IkeConfig(additional_key_exchanges=(36,) * 8)
    with pytest.raises(ConfigError, match="path_mtu_bytes must be 576..65535"):
        IkeConfig(path_mtu_bytes=500)
