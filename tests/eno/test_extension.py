"""EnoExtension on real TcpConnections: negotiation matrix, roles, policies, encodings, bad options."""

from __future__ import annotations

import hashlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.eno.events import (
    EncryptionAborted,
    EncryptionNegotiated,
    EncryptionRefused,
    FallbackToTcp,
    SessionEstablished,
)
from lab.eno.extension import TRANSITIONS, EnoConfig, EnoExtension, EnoState, Input
from lab.errors import ConfigError, LocalProtocolError
from lab.tcp import TcpExtension, TcpState
from lab.tcp.events import ConnectionTerminated, StreamEnded
from lab.tcpcrypt.stream import TcpcryptConfig
from lab.wire.eno import eno_options, option_bytes
from lab.wire.tcp import ACK, SYN, UnknownOption, decode_segment
from tests.eno.pair import EnoPair, replace_syn_eno, strip_eno

P256, P521, X25519, X448 = 0x21, 0x22, 0x23, 0x24
DATA = random.Random(5).randbytes(60_000)


def run_transfer(pair: EnoPair, data: bytes = DATA, back: bytes = b"", *, until: float = 60.0) -> None:
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    if data:
        pair.client.send(data)  # written in SYN-SENT: waits for ENO's decision
    pair.run(until=0.025)  # the SYN-ACK is in: the client is ESTABLISHED, the keys are not there yet
    if pair.client.state is TcpState.ESTABLISHED:
        pair.client.close(now=pair.now)
    pair.run(until=0.2)
    if pair.server.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
        if back:
            pair.server.send(back)
        pair.server.close(now=pair.now)
    pair.run(until=until)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the TEP matrix ---------------------------------------------------------------------------------

MATRIX = [
    pytest.param((X25519, P256), (X25519, P256), X25519, id="same-lists"),
    pytest.param((P256, X25519), (X25519, P256), X25519, id="b-preference-wins"),
    pytest.param((X25519, P256), (P256,), P256, id="b-subset"),
    pytest.param((P256, X25519, X448), (X448, P521), X448, id="partial-overlap"),
    pytest.param((P521,), (P521, X448), P521, id="p521"),
    pytest.param((X448,), (X448,), X448, id="x448"),
    pytest.param((P256,), (X25519,), None, id="disjoint"),
    pytest.param((), (X25519,), None, id="client-offers-nothing"),
    pytest.param((X25519,), (), None, id="server-supports-nothing"),
]


@pytest.mark.parametrize(("client_teps", "server_teps", "expected"), MATRIX)
def test_tep_matrix(client_teps: tuple[int, ...], server_teps: tuple[int, ...], expected: int | None) -> None:
    pair = EnoPair(EnoConfig(teps=client_teps), EnoConfig(teps=server_teps))
    back = b"reply" * 100
    run_transfer(pair, back=back)
    assert sha(pair.data(pair.server)) == sha(DATA)
    assert pair.data(pair.client) == back
    assert pair.events_of(pair.server, StreamEnded) and pair.events_of(pair.client, StreamEnded)
    client, server = pair.client_ext, pair.server_ext
    assert client is not None and server is not None
    if expected is None:
        assert client.state is EnoState.FALLBACK and server.state is EnoState.FALLBACK
        assert pair.eno("client", FallbackToTcp)[0].reason == "no_common_tep"
        assert pair.eno("server", FallbackToTcp)[0].reason == "no_common_tep"
        # in the clear: the payload crosses unencrypted
        return
    assert client.state is EnoState.ENCRYPTED and server.state is EnoState.ENCRYPTED
    assert client.negotiated_tep == server.negotiated_tep == expected
    assert client.role.value == "A" and server.role.value == "B"
    assert client.session_id == server.session_id and client.session_id[0] == expected
    assert len(client.session_id) == 33
    assert client.transcript == server.transcript
    [neg] = pair.eno("client", EncryptionNegotiated)
    assert neg.tep == expected and neg.role == "A"
    [est] = pair.eno("server", SessionEstablished)
    assert est.session_id == server.session_id


def test_payload_is_encrypted_on_the_wire() -> None:
    wire = bytearray()

    def tap(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        wire.extend(decode_segment(data).payload)
        return [data]

    marker = b"PLAINTEXT-MARKER" * 64
    pair = EnoPair(fault=tap)
    run_transfer(pair, marker)
    assert pair.data(pair.server) == marker
    assert b"PLAINTEXT-MARKER" not in wire
    assert bytes(wire).startswith(bytes.fromhex("15101a0e"))  # Init1 leads host A's stream

    plain_wire = bytearray()

    def tap_plain(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        plain_wire.extend(decode_segment(data).payload)
        return [data]

    fallback = EnoPair(EnoConfig(teps=(P256,)), EnoConfig(teps=(X25519,)), fault=tap_plain)
    run_transfer(fallback, marker)
    assert b"PLAINTEXT-MARKER" in plain_wire


# --- options on the wire -----------------------------------------------------------------------------


def test_options_on_syn_synack_and_ack() -> None:
    seen: list[tuple[int, bytes]] = []

    def tap(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        seg = decode_segment(data)
        for opt in eno_options(seg.options):
            seen.append((seg.flags, option_bytes(opt)))
        return [data]

    pair = EnoPair(EnoConfig(teps=(X25519, P256), application_aware=True), EnoConfig(teps=(P256, X25519)), fault=tap)
    run_transfer(pair, b"x")
    assert seen[0] == (SYN, bytes.fromhex("4505022321"))  # a = 1, X25519, P-256
    assert seen[1] == (SYN | ACK, bytes.fromhex("45040121"))  # b = 1, B's choice P-256
    non_syn = [raw for flags, raw in seen[2:]]
    assert non_syn and all(raw == bytes.fromhex("4502") for raw in non_syn)  # A's empty non-SYN ENO
    assert len(non_syn) <= 3  # A stops once it heard a non-SYN segment from B
    assert pair.client_ext.local_application_aware and not pair.client_ext.remote_application_aware
    assert pair.server_ext.remote_application_aware and not pair.server_ext.local_application_aware
    assert pair.client_ext.transcript == bytes.fromhex("450502232145040121")


@pytest.mark.parametrize(("client_exp", "server_exp"), list(itertools.product((False, True), repeat=2)))
def test_both_encodings(client_exp: bool, server_exp: bool) -> None:
    seen: list[bytes] = []

    def tap(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        seg = decode_segment(data)
        if seg.flags & SYN:
            seen.extend(option_bytes(o) for o in eno_options(seg.options))
        return [data]

    pair = EnoPair(EnoConfig(experimental_encoding=client_exp), EnoConfig(experimental_encoding=server_exp), fault=tap)
    run_transfer(pair)
    assert sha(pair.data(pair.server)) == sha(DATA)
    assert pair.client_ext.encrypted and pair.server_ext.encrypted
    kind = 253 if client_exp else 69
    assert [raw[0] for raw in seen] == [kind, kind]  # B answers in the encoding A used
    if client_exp:
        assert seen[0][2:4] == b"\x45\x4e"


def test_application_aware_required() -> None:
    pair = EnoPair(EnoConfig(), EnoConfig(require_application_aware=True))
    run_transfer(pair)
    assert pair.server_ext.state is EnoState.FALLBACK
    assert pair.server_ext.fallback_reason == "not_application_aware"
    # B's SYN-ACK carries a vacuous option, so A falls back as well and the bytes arrive intact
    assert pair.client_ext.state is EnoState.FALLBACK
    assert pair.data(pair.server) == DATA
    pair = EnoPair(EnoConfig(application_aware=True), EnoConfig(require_application_aware=True))
    run_transfer(pair)
    assert pair.server_ext.encrypted and pair.server_ext.remote_application_aware


# --- roles and simultaneous open -----------------------------------------------------------------------


def simultaneous(client: EnoConfig, server: EnoConfig) -> EnoPair:
    pair = EnoPair(client, server)
    pair.client.connect(now=0.0)
    pair.server.connect(now=0.0)
    pair.client.send(DATA)
    pair.run(until=0.05)
    if pair.client.state is TcpState.ESTABLISHED:
        pair.client.close(now=pair.now)
    pair.run(until=1.0)
    if pair.server.state is TcpState.CLOSE_WAIT:
        pair.server.close(now=pair.now)
    pair.run(until=30.0)
    return pair


def test_simultaneous_open_roles_from_b_bit() -> None:
    pair = simultaneous(EnoConfig(teps=(X25519, P256)), EnoConfig(teps=(P256, X25519), passive_role=True))
    assert pair.data(pair.server) == DATA
    assert pair.client_ext.role.value == "A" and pair.server_ext.role.value == "B"
    # the rule is unchanged: the last TEP in B's option that A offered
    assert pair.client_ext.negotiated_tep == pair.server_ext.negotiated_tep == X25519
    assert pair.client_ext.session_id == pair.server_ext.session_id


def test_simultaneous_open_b_side_may_be_the_sender() -> None:
    pair = simultaneous(EnoConfig(passive_role=True), EnoConfig())
    assert pair.data(pair.server) == DATA
    assert pair.client_ext.role.value == "B" and pair.server_ext.role.value == "A"
    assert pair.client_ext.encrypted and pair.server_ext.encrypted


@pytest.mark.parametrize("b", [False, True])
def test_simultaneous_open_same_b_falls_back(b: bool) -> None:
    pair = simultaneous(EnoConfig(passive_role=b), EnoConfig(passive_role=b))
    assert pair.data(pair.server) == DATA
    assert pair.client_ext.fallback_reason == pair.server_ext.fallback_reason == "same_role"


def test_active_opener_with_b_bit_meets_passive_opener() -> None:
    pair = EnoPair(EnoConfig(passive_role=True), EnoConfig())
    run_transfer(pair)
    assert pair.data(pair.server) == DATA
    assert pair.client_ext.fallback_reason == pair.server_ext.fallback_reason == "same_role"


# --- policies and peers without ENO --------------------------------------------------------------------

POLICY_CASES = [
    # client, server, what happens at the client and the server
    pytest.param(EnoConfig(), None, "fallback", None, id="server-without-eno"),
    pytest.param(None, EnoConfig(), None, "fallback", id="client-without-eno"),
    pytest.param(EnoConfig(policy="mandatory"), None, "refused", None, id="mandatory-client-vs-plain"),
    pytest.param(None, EnoConfig(policy="mandatory"), None, "refused", id="mandatory-server-vs-plain"),
    pytest.param(
        EnoConfig(policy="mandatory", teps=(P256,)),
        EnoConfig(teps=(X448,)),
        "refused",
        "fallback",
        id="mandatory-client-no-common-tep",
    ),
    pytest.param(
        EnoConfig(teps=(P256,)),
        EnoConfig(policy="mandatory", teps=(X448,)),
        None,
        "refused",
        id="mandatory-server-no-common-tep",
    ),
    pytest.param(EnoConfig(policy="mandatory"), EnoConfig(policy="mandatory"), "encrypted", "encrypted", id="both"),
]


@pytest.mark.parametrize(("client_cfg", "server_cfg", "client_outcome", "server_outcome"), POLICY_CASES)
def test_policies(
    client_cfg: EnoConfig | None, server_cfg: EnoConfig | None, client_outcome: str | None, server_outcome: str | None
) -> None:
    pair = EnoPair(client_cfg, server_cfg)
    run_transfer(pair)
    outcomes = {"client": client_outcome, "server": server_outcome}
    refused = "refused" in outcomes.values()
    for side, ext in (("client", pair.client_ext), ("server", pair.server_ext)):
        if ext is not None and outcomes[side] is not None:
            assert ext.state.value == outcomes[side], side
    if refused:
        assert pair.data(pair.server) == b""  # not one byte in the clear
        assert pair.terminated(pair.client) and pair.terminated(pair.client)[0].reset
        assert pair.terminated(pair.server) and pair.terminated(pair.server)[0].reset
        refusing = "client" if outcomes["client"] == "refused" else "server"
        [event] = pair.eno(refusing, EncryptionRefused)
        assert event.reason
        assert pair.eno_records(node=refusing, name="error")
    else:
        assert pair.data(pair.server) == DATA


def test_mandatory_client_resets_the_synack_at_once() -> None:
    pair = EnoPair(EnoConfig(policy="mandatory"), None)
    run_transfer(pair, until=0.5)
    # the server learns of the refusal from the RST, not from a timeout
    assert pair.server.state is TcpState.CLOSED and pair.terminated(pair.server)[0].reset


# --- middleboxes stripping ENO --------------------------------------------------------------------------


def test_stripped_from_syn_opportunistic_falls_back() -> None:
    pair = EnoPair(fault=strip_eno(syn=True, non_syn=False))
    run_transfer(pair)
    assert pair.data(pair.server) == DATA
    assert pair.client_ext.fallback_reason == pair.server_ext.fallback_reason == "no_eno_option"
    records = pair.eno_records(node="server", name="segment_received")
    assert records[0].data["option"] is None and records[0].data["segment"] == "SYN"


def test_stripped_from_acks_mandatory_server_resets() -> None:
    pair = EnoPair(EnoConfig(), EnoConfig(policy="mandatory"), fault=strip_eno(syn=False, non_syn=True))
    run_transfer(pair)
    assert pair.server_ext.state is EnoState.REFUSED
    assert pair.server_ext.fallback_reason == "no_non_syn_eno"
    assert pair.data(pair.server) == b""


def test_stripped_from_acks_opportunistic_server_resets_on_init1_and_delivers_nothing() -> None:
    # B falls back (A's non-SYN ENO never came) while A, which saw B's agreement, sends its Init1.
    # A host that disabled ENO must not pass TEP data up (RFC 8547 §4.7): B resets the connection
    # instead of handing Init1 to its application; A never counts itself encrypted.
    pair = EnoPair(fault=strip_eno(syn=False, non_syn=True))
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.client.send(b"secret")
    pair.run(until=1.0)
    assert pair.server_ext.state is EnoState.FALLBACK
    assert pair.data(pair.server) == b""
    [aborted] = pair.eno("server", EncryptionAborted)
    assert aborted.reason == "split_decision"
    assert pair.terminated(pair.server)[0].reset
    assert pair.client_ext.state is not EnoState.ENCRYPTED
    assert pair.terminated(pair.client)[0].reset


# --- malformed and odd options ------------------------------------------------------------------------

MALFORMED_SYN = [
    pytest.param(UnknownOption(69, bytes.fromhex("8821")), id="length-byte-overruns"),
    pytest.param(UnknownOption(69, bytes.fromhex("800121")), id="length-byte-not-followed-by-v-tep"),
    pytest.param(UnknownOption(253, bytes.fromhex("454e81")), id="experimental-length-byte-at-end"),
]


@pytest.mark.parametrize("bad", MALFORMED_SYN)
@pytest.mark.parametrize("policy", ["opportunistic", "mandatory"])
def test_malformed_syn_option(bad: UnknownOption, policy: str) -> None:
    pair = EnoPair(EnoConfig(), EnoConfig(policy=policy), fault=replace_syn_eno(bad))
    run_transfer(pair)
    [dropped] = pair.eno_records(node="server", name="segment_dropped")
    assert dropped.data["reason"].startswith("malformed ENO option") and dropped.data["field"]
    assert pair.server_ext.fallback_reason == "malformed"
    if policy == "mandatory":
        assert pair.server_ext.state is EnoState.REFUSED and pair.data(pair.server) == b""
    else:
        assert pair.data(pair.server) == DATA
        assert pair.client_ext.state is EnoState.FALLBACK  # the SYN-ACK had no ENO


def test_two_eno_options_count_as_none() -> None:
    both = [UnknownOption(69, bytes.fromhex("0023")), UnknownOption(253, bytes.fromhex("454e0023"))]
    pair = EnoPair(fault=replace_syn_eno(both))
    run_transfer(pair)
    assert pair.server_ext.fallback_reason == "no_eno_option"
    assert pair.data(pair.server) == DATA


def test_unknown_teps_and_data_are_skipped() -> None:
    # A offers "Use TLS" (0x30, never assigned), a TEP with data, and X25519: B picks X25519
    odd = UnknownOption(69, bytes.fromhex("00") + bytes.fromhex("30") + bytes.fromhex("81d0aabb") + bytes.fromhex("23"))
    pair = EnoPair(fault=replace_syn_eno(odd))
    run_transfer(pair)
    assert pair.server_ext.negotiated_tep == X25519
    # A's real SYN option differs from what B saw: the transcripts differ, so the keys do
    assert pair.client_ext.state is EnoState.ABORTED or pair.server_ext.state is EnoState.ABORTED
    assert pair.data(pair.server) == b""


def test_synack_choosing_a_tep_a_did_not_offer() -> None:
    bogus = UnknownOption(69, bytes.fromhex("0124"))  # b = 1, X448, which A never offered
    pair = EnoPair(EnoConfig(teps=(X25519,)), EnoConfig(), fault=replace_syn_eno(bogus, flags=SYN | ACK))
    run_transfer(pair)
    assert pair.client_ext.fallback_reason == "no_common_tep"


# --- the tcpcrypt handshake stalls -----------------------------------------------------------------------


def test_peer_stops_mid_tcpcrypt_handshake() -> None:
    cfg = EnoConfig(tcpcrypt=TcpcryptConfig(handshake_timeout_s=3.0))
    state = {"drop": False}

    def fault(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        seg = decode_segment(data)
        if sender is pair.server and not seg.flags & SYN:
            return []  # B goes silent after its SYN-ACK
        return [data]

    pair = EnoPair(cfg, EnoConfig(), fault=fault)
    _ = state
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.client.send(b"never sent in the clear")
    pair.run(until=10.0)
    assert pair.client_ext.state is EnoState.ABORTED
    [aborted] = pair.eno("client", EncryptionAborted)
    assert aborted.reason == "handshake_timeout"
    [term] = pair.terminated(pair.client)
    assert term.reset and "handshake_timeout" in term.reason
    assert 3.0 <= pair.now


def test_peer_stops_mid_eno_handshake() -> None:
    def fault(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        return [] if sender is pair.client and not decode_segment(data).flags & SYN else [data]

    pair = EnoPair(fault=fault)
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.run(until=400.0)
    assert pair.server_ext.state is EnoState.AWAITING_ACK  # never confirmed; TCP gives up on its own
    assert pair.server.state is TcpState.CLOSED


# --- API and state table -------------------------------------------------------------------------------


def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        EnoConfig(policy="sometimes")
    with pytest.raises(ConfigError):
        EnoConfig(teps=(0x30,))
    with pytest.raises(ConfigError):
        EnoConfig(teps=(X25519, X25519))
    assert EnoConfig(tcpcrypt=TcpcryptConfig(profile="draft02", aeads=(1,))).experimental_encoding


def test_rekey_before_encryption_raises() -> None:
    ext = EnoExtension()
    with pytest.raises(LocalProtocolError):
        ext.rekey(now=0.0)


def test_transition_table_is_closed() -> None:
    for (state, inp), new in TRANSITIONS.items():
        assert isinstance(state, EnoState) and isinstance(inp, Input) and isinstance(new, EnoState)
    for state in (EnoState.FALLBACK, EnoState.REFUSED, EnoState.ABORTED):
        assert not [k for k in TRANSITIONS if k[0] is state]  # end states


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([P256, P521, X25519, X448]), unique=True, max_size=4),
    st.lists(st.sampled_from([P256, P521, X25519, X448]), unique=True, max_size=4),
    st.booleans(),
    st.booleans(),
)
def test_negotiation_property(client_teps: list[int], server_teps: list[int], c_exp: bool, s_exp: bool) -> None:
    pair = EnoPair(
        EnoConfig(teps=tuple(client_teps), experimental_encoding=c_exp),
        EnoConfig(teps=tuple(server_teps), experimental_encoding=s_exp),
    )
    run_transfer(pair, DATA[:3000])
    assert pair.data(pair.server) == DATA[:3000]
    common = [t for t in server_teps if t in client_teps]
    if common:
        assert pair.client_ext.negotiated_tep == pair.server_ext.negotiated_tep == common[0]
        assert pair.client_ext.session_id == pair.server_ext.session_id
    else:
        assert pair.client_ext.state is pair.server_ext.state is EnoState.FALLBACK


def test_trace_records_for_the_handshake_view() -> None:
    pair = EnoPair()
    run_transfer(pair, b"abc")
    client = pair.eno_records(node="client")
    sent = [r.data for r in client if r.name == "segment_sent"]
    assert sent[0]["segment"] == "SYN" and sent[0]["teps"] == ["0x23", "0x21"] and sent[0]["b"] is False
    received = [r.data for r in client if r.name == "segment_received"]
    assert received[0]["segment"] == "SYN-ACK" and received[0]["b"] is True
    agreed = [r.data for r in client if r.name == "state_updated" and r.data["to"] == "negotiated"]
    assert agreed[0]["role"] == "A" and agreed[0]["tep"] == "0x23" and "last TEP" in agreed[0]["why"]
    keys = {r.node: r.data["session_id"] for r in pair.eno_records(name="key_updated", layer="tcpcrypt")}
    assert keys["client"] == keys["server"] == pair.client_ext.session_id.hex()


def test_no_stream_end_event_is_lost() -> None:
    pair = EnoPair()
    run_transfer(pair, b"")
    assert pair.events_of(pair.server, StreamEnded)
    assert not [t for t in pair.events_of(pair.server, ConnectionTerminated) if t.reset]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(Input)), max_size=12))
def test_every_state_input_pair_follows_the_table(inputs: list[Input]) -> None:
    ext = EnoExtension()
    for inp in inputs:
        before = ext.state
        expected = TRANSITIONS.get((before, inp))
        if expected is None:
            with pytest.raises(AssertionError):
                ext._set_state(inp, 0.0)
            assert ext.state is before  # a refused transition changes nothing
        else:
            ext._set_state(inp, 0.0)
            assert ext.state is expected


@pytest.mark.skipif(not hasattr(TcpExtension, "segment_limit"), reason="the connection has no segment_limit hook")
def test_draft02_puts_one_init_message_or_frame_in_each_segment() -> None:
    """tcpcryptd's packet-by-packet mode decrypts each segment as one record."""
    payloads: list[bytes] = []

    def tap(sender, data: bytes) -> list[bytes]:  # noqa: ANN001
        seg = decode_segment(data)
        if sender is pair.client and seg.payload:
            payloads.append(seg.payload)
        return [data]

    draft = EnoConfig(teps=(P256,), tcpcrypt=TcpcryptConfig(profile="draft02", aeads=(1,)))
    pair = EnoPair(draft, draft, fault=tap)
    run_transfer(pair, DATA[:20_000])
    assert pair.data(pair.server) == DATA[:20_000]
    assert payloads[0][:4] == bytes.fromhex("15101a0e") and len(payloads[0]) == int.from_bytes(payloads[0][4:8], "big")
    for payload in payloads[1:]:
        assert len(payload) == 3 + int.from_bytes(payload[1:3], "big")  # exactly one whole frame
