"""TCP-ENO options (RFC 8547 §4): exact bytes, round trips, malformed input, transcript."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.buffer import Buffer
from lab.wire.eno import (
    ENO_KIND,
    EXPERIMENTAL_KIND,
    GlobalSuboption,
    NonSynEnoOption,
    SynEnoOption,
    TepSuboption,
    decode_syn_eno_option,
    eno_options,
    from_tcp_option,
    is_eno_option,
    negotiation_transcript,
    option_bytes,
    pull_non_syn_eno_option,
    pull_syn_eno_option,
    push_non_syn_eno_option,
    push_syn_eno_option,
    syn_eno_option,
    to_tcp_option,
)
from lab.wire.tcp import MaxSegmentSize, NoOperation, UnknownOption, pull_options, push_options

X25519 = 0x23
P256 = 0x21
B_ROLE = GlobalSuboption(passive_role=True)
APP_AWARE = GlobalSuboption(application_aware=True)

# --- exact bytes ------------------------------------------------------------------------------

EXACT = [
    pytest.param(
        "4505022321",  # kind 69, len 5, global a=1, TEP 0x23, TEP 0x21
        SynEnoOption((APP_AWARE, TepSuboption(X25519), TepSuboption(P256))),
        id="syn-app-aware-two-teps",
    ),
    pytest.param(
        "fd07454e022321",  # kind 253, len 7, ExID "EN", same suboptions
        SynEnoOption((APP_AWARE, TepSuboption(X25519), TepSuboption(P256)), experimental=True),
        id="syn-experimental",
    ),
    pytest.param("45040123", SynEnoOption((B_ROLE, TepSuboption(X25519))), id="synack-b-x25519"),
    pytest.param("4502", SynEnoOption(), id="vacuous"),
    pytest.param("450303", SynEnoOption((GlobalSuboption(True, True),)), id="global-a-b"),
    pytest.param("45031f", SynEnoOption((GlobalSuboption(True, True, reserved=7),)), id="global-z-bits"),
    pytest.param(
        "450e88a0d1d2d3d4d5d6d7d8d921",  # length byte 0x88: 8 + 1 = 9 data bytes for TEP 0x20 (v=1)
        SynEnoOption((TepSuboption(0x20, v=True, data=bytes.fromhex("d1d2d3d4d5d6d7d8d9")), TepSuboption(P256))),
        id="length-byte",
    ),
    pytest.param(
        "450821a301020304",  # last TEP with v=1: data runs to the end, no length byte
        SynEnoOption((TepSuboption(P256), TepSuboption(X25519, v=True, data=bytes.fromhex("01020304")))),
        id="last-with-data",
    ),
    pytest.param("4503a3", SynEnoOption((TepSuboption(X25519, v=True),)), id="last-v-no-data"),
    pytest.param(
        "450980a3ff80a4ee7f",  # two one-byte data suboptions with length bytes, then TEP 0x7f
        SynEnoOption(
            (
                TepSuboption(X25519, v=True, data=b"\xff"),
                TepSuboption(0x24, v=True, data=b"\xee"),
                TepSuboption(0x7F),
            )
        ),
        id="two-length-bytes",
    ),
    pytest.param(
        "45289fa0" + "00" * 32 + "a2" + "11" * 3,  # 32-byte suboption (nnnnn = 31) then a last one with data
        SynEnoOption((TepSuboption(0x20, v=True, data=bytes(32)), TepSuboption(0x22, v=True, data=b"\x11" * 3))),
        id="32-byte-suboption",
    ),
]


@pytest.mark.parametrize(("hex_bytes", "option"), EXACT)
def test_syn_option_exact_bytes(hex_bytes: str, option: SynEnoOption) -> None:
    raw = bytes.fromhex(hex_bytes)
    assert push_syn_eno_option(option) == raw
    assert decode_syn_eno_option(raw) == option


def test_rfc_figure_9_handshake_options() -> None:
    # RFC 8547 Figure 9: A -> SYN ENO<X,Y>; B -> SYN-ACK ENO<b=1,Y>; A -> ACK ENO<>
    syn = SynEnoOption((TepSuboption(0x21), TepSuboption(0x23)))
    synack = SynEnoOption((B_ROLE, TepSuboption(0x23)))
    assert push_syn_eno_option(syn) == bytes.fromhex("45042123")
    assert push_syn_eno_option(synack) == bytes.fromhex("45040123")
    assert push_non_syn_eno_option(NonSynEnoOption()) == bytes.fromhex("4502")
    assert syn.global_suboption == GlobalSuboption()  # implicit 0x00
    assert synack.global_suboption.passive_role


def test_only_the_first_global_suboption_counts() -> None:
    option = decode_syn_eno_option(bytes.fromhex("4505010223"))
    assert option.suboptions[:2] == (B_ROLE, APP_AWARE)
    assert option.global_suboption == B_ROLE
    assert push_syn_eno_option(option) == bytes.fromhex("4505010223")  # both kept for the round trip


def test_tep_byte_carries_the_v_bit() -> None:
    assert TepSuboption(0x23).byte == 0x23
    assert TepSuboption(0x23, v=True, data=b"x").byte == 0xA3


def test_length_byte_before_last_suboption_is_accepted_and_canonicalised() -> None:
    raw = bytes.fromhex("450580a3ff")  # legal, but the canonical form drops the length byte
    option = decode_syn_eno_option(raw)
    assert option == SynEnoOption((TepSuboption(X25519, v=True, data=b"\xff"),))
    assert push_syn_eno_option(option) == bytes.fromhex("4504a3ff")


def test_vacuous_and_teps() -> None:
    assert SynEnoOption((B_ROLE,)).vacuous
    option = decode_syn_eno_option(bytes.fromhex("4505012123"))
    assert not option.vacuous
    assert [t.tep_id for t in option.teps] == [0x21, 0x23]


def test_non_syn_option_contents_are_opaque() -> None:
    for raw, option in [
        (bytes.fromhex("4502"), NonSynEnoOption()),
        (bytes.fromhex("4504beef"), NonSynEnoOption(b"\xbe\xef")),
        (bytes.fromhex("fd04454e"), NonSynEnoOption(experimental=True)),
    ]:
        assert push_non_syn_eno_option(option) == raw
        assert pull_non_syn_eno_option(Buffer(raw)) == option


# --- inside a TCP segment ---------------------------------------------------------------------


def test_eno_option_inside_tcp_options() -> None:
    area = bytes.fromhex("020405b4450502232101fd04454e00fd04abcd")  # MSS, ENO, NOP, ENO exp., EOL
    options = pull_options(area[:14])
    assert options[0] == MaxSegmentSize(1460)
    assert options[1] == UnknownOption(ENO_KIND, bytes.fromhex("022321"))
    assert options[2] == NoOperation()
    assert is_eno_option(options[1])
    assert is_eno_option(options[3])
    assert not is_eno_option(UnknownOption(EXPERIMENTAL_KIND, bytes.fromhex("abcd")))  # another ExID
    assert not is_eno_option(options[0])
    assert from_tcp_option(options[1]) == SynEnoOption((APP_AWARE, TepSuboption(X25519), TepSuboption(P256)))
    assert option_bytes(options[1]) == bytes.fromhex("4505022321")


def test_to_tcp_option_encodes_through_lab_wire_tcp() -> None:
    option = SynEnoOption((B_ROLE, TepSuboption(X25519)), experimental=True)
    tcp_option = to_tcp_option(option)
    assert tcp_option == UnknownOption(EXPERIMENTAL_KIND, bytes.fromhex("454e0123"))
    assert push_options([tcp_option]) == bytes.fromhex("fd06454e01230000")
    assert to_tcp_option(NonSynEnoOption()) == UnknownOption(ENO_KIND, b"")


def test_two_eno_options_in_a_syn_count_as_none() -> None:
    kind69 = UnknownOption(ENO_KIND, bytes.fromhex("23"))
    kind253 = UnknownOption(EXPERIMENTAL_KIND, bytes.fromhex("454e23"))
    other_exp = UnknownOption(EXPERIMENTAL_KIND, bytes.fromhex("1234"))
    assert syn_eno_option([MaxSegmentSize(1460), kind69]) is kind69
    assert syn_eno_option([kind253, other_exp]) is kind253
    assert syn_eno_option([kind69, kind253]) is None  # RFC 8547 §4.1 and §11: never both
    assert syn_eno_option([kind69, kind69]) is None
    assert syn_eno_option([other_exp]) is None
    assert eno_options([kind69, other_exp, kind253]) == [kind69, kind253]


def test_scapy_carries_the_same_option_bytes() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    raw = push_syn_eno_option(SynEnoOption((APP_AWARE, TepSuboption(X25519), TepSuboption(P256))))
    segment = bytes(scapy_all.TCP(flags="S", options=[(ENO_KIND, raw[2:])]))
    assert segment[20:25] == raw


# --- negotiation transcript (RFC 8547 §4.8) --------------------------------------------------------


def test_transcript_is_both_options_with_kind_and_length() -> None:
    a = bytes.fromhex("4505022321")
    b = bytes.fromhex("45040123")
    assert negotiation_transcript(a, b) == bytes.fromhex("450502232145040123")


def test_transcript_keeps_the_experimental_encoding_verbatim() -> None:
    a = bytes.fromhex("fd07454e022321")
    b = bytes.fromhex("fd06454e0123")
    assert negotiation_transcript(a, b) == a + b


def test_transcript_keeps_non_canonical_bytes() -> None:
    a = bytes.fromhex("450580a3ff")  # re-encoding would drop the length byte; the transcript must not
    b = bytes.fromhex("45040123")
    assert negotiation_transcript(a, b) == a + b


@pytest.mark.parametrize("bad", ["", "45", "450323ff", "020405b4", "4504"])
def test_transcript_rejects_what_is_not_one_option(bad: str) -> None:
    with pytest.raises(ValueError):
        negotiation_transcript(bytes.fromhex(bad), bytes.fromhex("4502"))


# --- malformed input -------------------------------------------------------------------------------

MALFORMED = [
    pytest.param("4503", "length", 1, id="length-past-end"),
    pytest.param("4501", "length", 1, id="length-below-2"),
    pytest.param("fd03454e", "length", 1, id="experimental-length-below-4"),
    pytest.param("fd04454f", "exid", 2, id="wrong-exid"),
    pytest.param("0203", "kind", 0, id="not-eno-kind"),
    pytest.param("45", "length", 1, id="no-length-byte"),
    pytest.param("450481a3", "suboptions[0].length", 2, id="length-byte-overruns"),
    pytest.param("450380", "suboptions[0].length", 2, id="length-byte-at-end"),
    pytest.param("45052380219f", "suboptions[1].length", 3, id="second-suboption-overruns"),
    pytest.param("4505809fff", "suboptions[0].tep_id", 3, id="length-byte-then-0x9f"),
    pytest.param("45058021ff", "suboptions[0].tep_id", 3, id="length-byte-then-v0-tep"),
    pytest.param("45058001ff", "suboptions[0].tep_id", 3, id="length-byte-then-global"),
    pytest.param("45058081ff", "suboptions[0].tep_id", 3, id="length-byte-then-length-byte"),
    pytest.param("fd07454e2380a3", "suboptions[1].length", 5, id="experimental-offsets"),
]


@pytest.mark.parametrize(("hex_bytes", "field", "offset"), MALFORMED)
def test_malformed_syn_option_names_field_and_offset(hex_bytes: str, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        pull_syn_eno_option(Buffer(bytes.fromhex(hex_bytes)))
    assert (info.value.field, info.value.offset) == (field, offset)


def test_offsets_follow_the_buffer_base() -> None:
    with pytest.raises(DecodeError) as info:
        pull_syn_eno_option(Buffer(bytes.fromhex("450481a3"), base_offset=24))
    assert (info.value.field, info.value.offset) == ("suboptions[0].length", 26)


def test_trailing_bytes_after_a_whole_option() -> None:
    with pytest.raises(DecodeError) as info:
        decode_syn_eno_option(bytes.fromhex("450323ff"))
    assert info.value.field == "length"


def test_malformed_option_from_a_segment() -> None:
    (option,) = pull_options(bytes.fromhex("450481a3"))  # TCP framing is fine, ENO's is not
    with pytest.raises(DecodeError) as info:
        from_tcp_option(option)
    assert info.value.field == "suboptions[0].length"


@pytest.mark.parametrize(
    "option",
    [
        SynEnoOption((TepSuboption(0x1F),)),  # a global value, not a TEP
        SynEnoOption((TepSuboption(0x80),)),
        SynEnoOption((TepSuboption(0x23, data=b"x"),)),  # data without v
        SynEnoOption((TepSuboption(0x23, v=True), TepSuboption(0x21))),  # not last, no data: no length byte possible
        SynEnoOption((TepSuboption(0x23, v=True, data=bytes(33)), TepSuboption(0x21))),
        SynEnoOption((GlobalSuboption(reserved=8),)),
        SynEnoOption(tuple(TepSuboption(0x21) for _ in range(39))),  # 41 bytes
    ],
)
def test_push_rejects_what_has_no_encoding(option: SynEnoOption) -> None:
    with pytest.raises(ValueError):
        push_syn_eno_option(option)


# --- round trips -------------------------------------------------------------------------------------

tep_ids = st.integers(min_value=0x20, max_value=0x7F)
global_suboptions = st.builds(GlobalSuboption, st.booleans(), st.booleans(), st.integers(0, 7))
plain_teps = st.builds(TepSuboption, tep_ids)
inner_data_teps = st.builds(TepSuboption, tep_ids, st.just(True), st.binary(min_size=1, max_size=32))
last_data_teps = st.builds(TepSuboption, tep_ids, st.just(True), st.binary(max_size=36))


@st.composite
def syn_options(draw: st.DrawFn) -> SynEnoOption:
    """Any encodable SYN-form option within the 40-byte options area."""
    experimental = draw(st.booleans())
    budget = 40 - (4 if experimental else 2)
    suboptions: list[GlobalSuboption | TepSuboption] = []
    while budget >= 1 and draw(st.booleans()):
        kind = draw(st.sampled_from(["global", "tep", "data"]))
        if kind == "global":
            suboptions.append(draw(global_suboptions))
            budget -= 1
        elif kind == "tep" or budget < 3:
            suboptions.append(draw(plain_teps))
            budget -= 1
        else:  # not last, so behind a length byte: 1..32 data bytes
            data = draw(st.binary(min_size=1, max_size=min(32, budget - 2)))
            suboptions.append(TepSuboption(draw(tep_ids), v=True, data=data))
            budget -= 2 + len(data)
    if budget >= 1 and draw(st.booleans()):  # a last suboption whose data runs to the end
        suboptions.append(TepSuboption(draw(tep_ids), v=True, data=draw(st.binary(max_size=budget - 1))))
    return SynEnoOption(tuple(suboptions), experimental)


@given(syn_options())
def test_syn_option_round_trip(option: SynEnoOption) -> None:
    raw = push_syn_eno_option(option)
    assert decode_syn_eno_option(raw) == option
    assert raw[1] == len(raw) <= 40


@given(st.binary(max_size=38), st.booleans())
def test_any_suboption_bytes_decode_or_name_a_field(body: bytes, experimental: bool) -> None:
    if experimental:
        body = body[:36]
        head = bytes((EXPERIMENTAL_KIND, len(body) + 4, 0x45, 0x4E))
    else:
        head = bytes((ENO_KIND, len(body) + 2))
    try:
        option = decode_syn_eno_option(head + body)
    except DecodeError as exc:
        assert exc.field.startswith("suboptions[")
        assert len(head) <= exc.offset < len(head) + len(body)
        return
    canonical = push_syn_eno_option(option)  # decodable bytes re-encode to an equal option
    assert decode_syn_eno_option(canonical) == option
    assert len(canonical) <= len(head) + len(body)


@given(st.binary(max_size=36), st.booleans())
def test_non_syn_option_round_trip(contents: bytes, experimental: bool) -> None:
    option = NonSynEnoOption(contents, experimental)
    raw = push_non_syn_eno_option(option)
    assert pull_non_syn_eno_option(Buffer(raw)) == option
