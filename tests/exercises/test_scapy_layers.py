"""exercises.scapy_layers: what Scapy does not know (ENO, IKETCP framing, tcpcrypt INIT1), checked against the lab's codecs."""

from __future__ import annotations

import pytest

pytest.importorskip("scapy")

from scapy.layers.inet import IP, TCP

from exercises.iketcp_decode import scenario as iketcp_scenario
from exercises.scapy_layers import (
    decode_tcpcrypt_init1,
    eno_from_packet,
    eno_option,
    iketcp_esp,
    iketcp_frames,
    iketcp_ike,
)
from lab.eno.rules import EnoAgreed, negotiate
from lab.iketcp import IketcpStream, Role
from lab.wire.eno import TepSuboption, decode_syn_eno_option
from lab.wire.tcpcrypt import TCPCRYPT_ECDHE_CURVE25519, Init1, push_init1


def test_eno_option_goes_through_scapy_and_back() -> None:
    opt = eno_option(0x22, TepSuboption(0x23, v=True, data=b"\x01\x02"), 0x21, passive_role=True)
    raw = bytes(IP(src="10.0.1.1", dst="10.0.2.2") / TCP(flags="S", options=[("MSS", 1460), opt]))
    parsed = eno_from_packet(IP(raw))
    assert parsed == decode_syn_eno_option(bytes((69, 2 + len(opt[1]))) + opt[1])
    assert [t.tep_id for t in parsed.teps] == [0x22, 0x23, 0x21]
    assert parsed.global_suboption.passive_role
    assert (
        opt[1].hex() == "012281a3010221"
    )  # global 0x01, 0x22, length byte 0x81, v|0x23 with 01 02, 0x21 (RFC 8547 §4.4)


def test_eno_options_built_here_negotiate_like_the_rules() -> None:
    a = eno_from_packet(IP(bytes(IP() / TCP(flags="S", options=[eno_option(0x21, 0x22)]))))
    b = eno_from_packet(IP(bytes(IP() / TCP(flags="SA", options=[eno_option(0x22, 0x21, passive_role=True)]))))
    outcome = negotiate(a, b)
    assert isinstance(outcome, EnoAgreed) and outcome.tep_id == 0x21
    assert eno_from_packet(IP(bytes(IP() / TCP(flags="S")))) is None


def test_iketcp_frames_split_like_the_lab_stream() -> None:
    stream = iketcp_scenario.build_stream()
    frames = iketcp_frames(stream)
    assert [f.kind for f in frames] == ["ike", "ike", "keepalive", "esp", "esp"]
    assert sum(f.length for f in frames) + 6 == len(stream)
    decoder = IketcpStream(role=Role.RESPONDER)
    decoder.receive_data(stream)
    events = []
    while (ev := decoder.next_event()) is not None:
        events.append(ev)
    assert frames[0].message[4:] == events[0].message
    assert bytes(frames[3].message) == events[2].packet


def test_iketcp_framing_matches_the_lab_encoder() -> None:
    message = bytes(range(40))
    lab = IketcpStream(role=Role.INITIATOR)
    lab.send_ike(message)
    lab.send_esp(b"\x00\x00\x01\x00" + bytes(12))
    out = lab.data_to_send()
    assert out == b"IKETCP" + bytes(iketcp_ike(message)) + bytes(iketcp_esp(b"\x00\x00\x01\x00" + bytes(12)))
    with pytest.raises(ValueError, match="SPI 0"):
        iketcp_esp(bytes(12))
    with pytest.raises(ValueError, match="IKETCP prefix"):
        iketcp_frames(out[6:])
    with pytest.raises(ValueError, match="Length 1"):
        iketcp_frames(b"IKETCP\x00\x01")
    assert iketcp_frames(out[:-3]) == iketcp_frames(out)[:1]  # a partial frame is left out


def test_tcpcrypt_init1_decodes() -> None:
    msg = Init1(sym_cipher_list=(0x0001,), n_a=bytes(range(32)), pub_a=bytes(range(32, 64)))
    wire = push_init1(msg, tep=TCPCRYPT_ECDHE_CURVE25519)
    assert decode_tcpcrypt_init1(wire + b"application data", tep=TCPCRYPT_ECDHE_CURVE25519) == msg
