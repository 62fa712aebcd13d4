"""The vectors.md §4 chain through the lab's own IKE SA: libreswan's real messages in, the GOLD values out.

The initiator SA is given the experiment's randomness (SPIi, Ni, the ECP-256
private scalar) and its IKE_SA_INIT request, then fed libreswan's
IKE_SA_INIT response (msg2) and IKE_AUTH response (msg4). It must derive
every SK_* of vectors.md, compute the GOLD initiator AUTH in the IKE_AUTH
request it builds, verify libreswan's AUTH, and report the Child SA that
libreswan refused (TS_UNACCEPTABLE) while the IKE SA stands.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lab.ike.config import IkeConfig
from lab.ike.events import ChildSaFailed, IkeSaEstablished
from lab.ike.keys import decrypt_message
from lab.ike.sa import IkeSa
from lab.ike.state import IkeSaState
from lab.trace import MemoryTracer
from lab.wire.ikev2 import TS_UNACCEPTABLE, AuthPayload, IdiPayload

GOLD = json.loads((Path(__file__).parent / "captures" / "ikev2_psk_aesgcm256_dh19_vs_libreswan.json").read_text())
H = bytes.fromhex


def gold_initiator() -> tuple[IkeSa, MemoryTracer]:
    tracer = MemoryTracer()
    config = IkeConfig(
        psk=GOLD["PSK"].encode(),
        local_id=b"west",
        remote_id=b"east",
        dh_groups=(19,),
        encr_key_bits=(256,),
        export_keys=True,
    )
    sa = IkeSa(
        config=config,
        initiator=True,
        transport="tcp",
        local=("192.0.2.1", 0xAB5C),
        remote=("192.0.2.2", 4500),
        rng=random.Random(1),
        tracer=tracer,
    )
    sa.spi_i = H(GOLD["SPIi"])
    sa.start(now=0.0)
    sa.messages_to_send()
    # the experiment's randomness and the request it sent (RealMessage1 is signed by AUTH, §2.15)
    sa._ni = H(GOLD["Ni"])
    sa._dh_private = int(GOLD["dh_priv_i"], 16).to_bytes(32, "big")
    sa._init_request = H(GOLD["msg1"])
    return sa, tracer


def test_libreswan_messages_through_our_initiator_give_the_gold_values() -> None:
    sa, tracer = gold_initiator()
    sa.receive_message(H(GOLD["msg2"]), now=0.01)
    assert sa.state is IkeSaState.AUTH_SENT
    keys = sa.keys
    assert keys.skeyseed.hex() == GOLD["SKEYSEED"]
    assert (keys.sk_d.hex(), keys.sk_ei.hex(), keys.sk_er.hex()) == (GOLD["SK_d"], GOLD["SK_ei"], GOLD["SK_er"])
    assert (keys.sk_pi.hex(), keys.sk_pr.hex()) == (GOLD["SK_pi"], GOLD["SK_pr"])
    assert keys.sk_ai == keys.sk_ar == b""
    (auth_request,) = sa.messages_to_send()
    _, inner = decrypt_message(auth_request, sk_e=H(GOLD["SK_ei"]))
    assert next(p for p in inner if isinstance(p, IdiPayload)).data == b"west"
    assert next(p for p in inner if isinstance(p, AuthPayload)).data.hex() == GOLD["AUTHi"]
    sa.receive_message(H(GOLD["msg4"]), now=0.02)
    assert sa.state is IkeSaState.ESTABLISHED
    events = []
    while (event := sa.next_event()) is not None:
        events.append(event)
    assert isinstance(events[0], IkeSaEstablished) and events[0].spi_r.hex() == GOLD["SPIr"]
    assert events[1] == ChildSaFailed(notify_type=TS_UNACCEPTABLE)
    (key_record,) = tracer.select(layer="ike", name="key_updated")
    assert key_record.data["sk_ei"] == GOLD["SK_ei"] and key_record.data["spi_r"] == GOLD["SPIr"]


def test_a_forged_responder_auth_is_refused() -> None:
    sa, _ = gold_initiator()
    sa.receive_message(H(GOLD["msg2"]), now=0.01)
    sa.messages_to_send()
    msg4 = bytearray(H(GOLD["msg4"]))
    msg4[-20] ^= 1  # inside the ciphertext: the ICV fails, the message is dropped, the SA keeps waiting
    sa.receive_message(bytes(msg4), now=0.02)
    assert sa.state is IkeSaState.AUTH_SENT
    drops = [r.data["reason"] for r in sa._tracer.select(layer="ike", name="segment_dropped")]
    assert drops == ["integrity"]


def test_a_wrong_psk_does_not_verify_libreswans_auth() -> None:
    sa, _ = gold_initiator()
    sa.config = IkeConfig(psk=b"not-the-kat-psk", local_id=b"west", remote_id=b"east", dh_groups=(19,))
    sa.receive_message(H(GOLD["msg2"]), now=0.01)
    sa.messages_to_send()
    sa.receive_message(H(GOLD["msg4"]), now=0.02)
    assert sa.state is IkeSaState.FAILED
