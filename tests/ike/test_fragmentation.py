"""lab.ike.fragmentation and lab.wire.ikev2_fragment: RFC 7383 fragments, sizes, reassembly limits."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.esp.sa import aes_gcm_open, aes_gcm_seal
from lab.ike.fragmentation import (
    DEFAULT_PATH_MTU_IPV4,
    DEFAULT_PATH_MTU_IPV6,
    FragmentOfReassembledMessage,
    FragmentPending,
    FragmentReassembler,
    FragmentRefused,
    MessageReassembled,
    ReassemblyLimits,
    choose_udp_sending,
    decrypt_fragment,
    fragment_message,
    fragment_overhead,
    fragmentation_supported_notify,
    max_ike_message_len,
    offers_fragmentation,
)
from lab.wire.ikev2 import (
    IKE_AUTH,
    IKEV2_FRAGMENTATION_SUPPORTED,
    AuthPayload,
    IdiPayload,
    IkeMessage,
    NotifyPayload,
    UnknownPayload,
    decode_ike_message,
    encode_ike_message,
)
from lab.wire.ikev2_fragment import (
    EncryptedFragmentPayload,
    decode_fragment_message,
    encode_fragment_message,
    push_encrypted_fragment_payload,
)

SK_EI = bytes(range(36))  # AES-256 key | salt
SPI_I, SPI_R = b"\x01" * 8, b"\x02" * 8
CERT_BODY = bytes(random.Random(3).randbytes(2500))  # stands in for a certificate chain


def _auth_message(mid: int = 1) -> tuple[IkeMessage, tuple]:
    message = IkeMessage(SPI_I, SPI_R, IKE_AUTH, mid, initiator=True)
    inner = (IdiPayload(2, b"initiator.lab"), UnknownPayload(48, b"\x04" + CERT_BODY), AuthPayload(14, b"\x99" * 300))
    return message, inner


def _ivs() -> callable:
    counter = itertools.count(1)
    return lambda: next(counter).to_bytes(8, "big")


def test_notify_and_constants() -> None:
    assert IKEV2_FRAGMENTATION_SUPPORTED == 16430
    notify = fragmentation_supported_notify()
    assert (notify.notify_type, notify.protocol_id, notify.spi, notify.data) == (16430, 0, b"", b"")
    assert offers_fragmentation([NotifyPayload(16388, b"x" * 20), notify])
    assert not offers_fragmentation([NotifyPayload(16388, b"x" * 20)])


def test_sizes_from_the_path_mtu() -> None:
    assert max_ike_message_len(path_mtu=DEFAULT_PATH_MTU_IPV4) == 576 - 20 - 8
    assert max_ike_message_len(path_mtu=DEFAULT_PATH_MTU_IPV4, port=4500) == 576 - 20 - 8 - 4
    assert max_ike_message_len(path_mtu=DEFAULT_PATH_MTU_IPV6, ipv6=True, port=4500) == 1280 - 40 - 8 - 4
    assert max_ike_message_len(path_mtu=1500) == 1472
    with pytest.raises(ValueError):
        max_ike_message_len(path_mtu=60)


def test_skf_codec_exact_bytes_and_bad_fields() -> None:
    payload = EncryptedFragmentPayload(35, 1, 3, b"\xaa\xbb")
    assert push_encrypted_fragment_payload(payload) == bytes.fromhex("2300000a00010003aabb")
    with pytest.raises(ValueError):
        push_encrypted_fragment_payload(EncryptedFragmentPayload(0, 4, 3, b""))
    message, inner = _auth_message()
    good = fragment_message(message, inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=548)[0]
    for offset, value, field in ((32, 0, "fragment_number"), (34, 0, "total_fragments"), (32, 9, "fragment_number")):
        bad = bytearray(good)
        bad[offset : offset + 2] = value.to_bytes(2, "big")
        with pytest.raises(DecodeError) as exc:
            decode_fragment_message(bytes(bad))
        assert exc.value.field == field
    with pytest.raises(DecodeError) as exc:
        decode_fragment_message(good[:-1])
    assert exc.value.field == "length"


@pytest.mark.parametrize(
    ("path_mtu", "ipv6", "port"),
    [(576, False, 500), (576, False, 4500), (1280, True, 4500), (1500, False, 500), (9000, False, 500)],
)
def test_round_trip_across_mtus(path_mtu: int, ipv6: bool, port: int) -> None:
    message, inner = _auth_message()
    limit = max_ike_message_len(path_mtu=path_mtu, ipv6=ipv6, port=port)
    fragments = fragment_message(message, inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=limit)
    chain_len = len(encode_ike_message(IkeMessage(SPI_I, SPI_R, IKE_AUTH, 1, inner))) - 28
    room = limit - fragment_overhead()
    assert len(fragments) == -(-chain_len // room)
    assert all(len(f) <= limit for f in fragments)
    assert all(decode_fragment_message(f).header.message_id == 1 for f in fragments)
    reassembler = FragmentReassembler()
    results = [reassembler.add(f, sk_e=SK_EI, now=0.0) for f in reversed(fragments)]  # any order
    assert all(isinstance(r, FragmentPending) for r in results[:-1])
    done = results[-1]
    assert isinstance(done, MessageReassembled)
    assert done.inner == inner and done.fragments == len(fragments)
    assert (done.message.message_id, done.message.exchange_type, done.message.initiator) == (1, IKE_AUTH, True)
    assert reassembler.buffered_len == 0


@settings(max_examples=30, deadline=None)
@given(size=st.integers(min_value=0, max_value=5000), limit=st.integers(min_value=62, max_value=1500))
def test_any_message_any_limit_round_trips(size: int, limit: int) -> None:
    message = IkeMessage(SPI_I, SPI_R, IKE_AUTH, 2, initiator=True)
    inner = (UnknownPayload(48, bytes(size)),) if size else ()
    fragments = fragment_message(message, inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=limit)
    assert all(len(f) <= limit for f in fragments)
    reassembler = FragmentReassembler(ReassemblyLimits(max_fragments=0xFFFF))
    *_, last = [reassembler.add(f, sk_e=SK_EI, now=0.0) for f in fragments]
    assert isinstance(last, MessageReassembled) and last.inner == inner


def test_aad_covers_fragment_number_and_total() -> None:
    message, inner = _auth_message()
    first = fragment_message(message, inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=548)[0]
    # independent check: AES-GCM open with AAD = IKE header | SKF generic header | Fragment Number | Total Fragments
    plain = aes_gcm_open(SK_EI[:32], SK_EI[32:], first[36:44], first[44:], first[:36])
    assert plain[-1] == 0 and plain[:-1].startswith(
        encode_ike_message(IkeMessage(SPI_I, SPI_R, 35, 1, inner))[28:][:10]
    )
    assert first[28] == 35  # first fragment: Next Payload = IDi
    second = fragment_message(message, inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=548)[1]
    assert second[28] == 0
    tampered = first[:34] + b"\x00\x09" + first[36:]  # Total Fragments changed: the ICV no longer matches
    result = FragmentReassembler().add(tampered, sk_e=SK_EI, now=0.0)
    assert isinstance(result, FragmentRefused) and result.reason in ("integrity", "malformed")


def _fragments(mid: int = 1, limit: int = 548) -> list[bytes]:
    message, inner = _auth_message(mid)
    return fragment_message(message, inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=limit)


def test_malformed_and_forged_fragments_are_refused_and_counted() -> None:
    reassembler = FragmentReassembler()
    frags = _fragments()
    assert reassembler.add(b"\x00" * 10, sk_e=SK_EI, now=0.0).reason == "malformed"
    forged = frags[0][:-1] + bytes((frags[0][-1] ^ 1,))
    assert reassembler.add(forged, sk_e=SK_EI, now=0.0).reason == "integrity"
    assert reassembler.add(frags[0], sk_e=b"\x07" * 36, now=0.0).reason == "integrity"
    assert reassembler.buffered_len == 0
    assert reassembler.refusals == {"malformed": 1, "integrity": 2}


def test_duplicates_and_inconsistent_copies() -> None:
    reassembler = FragmentReassembler()
    frags = _fragments()
    assert isinstance(reassembler.add(frags[0], sk_e=SK_EI, now=0.0), FragmentPending)
    assert reassembler.add(frags[0], sk_e=SK_EI, now=0.1).reason == "duplicate"
    # the same fragment re-encrypted (new IV) with the same content is still a duplicate
    again = _fragments()[0]
    assert reassembler.add(again, sk_e=SK_EI, now=0.1).reason == "duplicate"
    # a fragment 1 of the same size but other content: refused, the first copy stays
    message, inner = _auth_message()
    other_inner = (IdiPayload(2, b"intruder.lab"), *inner[1:])
    other = fragment_message(message, other_inner, sk_e=SK_EI, next_iv=_ivs(), max_message_len=548)[0]
    assert reassembler.add(other, sk_e=SK_EI, now=0.2).reason == "inconsistent"
    *_, done = [reassembler.add(f, sk_e=SK_EI, now=0.3) for f in frags[1:]]
    assert isinstance(done, MessageReassembled) and done.inner == inner
    assert isinstance(reassembler.add(frags[2], sk_e=SK_EI, now=0.4), FragmentOfReassembledMessage)


def test_total_fragments_rising_restarts_and_falling_is_stale() -> None:
    big, small = _fragments(limit=1200), _fragments(limit=548)
    assert len(small) > len(big)
    reassembler = FragmentReassembler()
    reassembler.add(big[0], sk_e=SK_EI, now=0.0)
    assert isinstance(reassembler.add(small[0], sk_e=SK_EI, now=0.1), FragmentPending)  # smaller MTU: start over
    assert reassembler.refusals["restarted"] == 1
    assert reassembler.add(big[1], sk_e=SK_EI, now=0.2).reason == "stale_total"
    *_, done = [reassembler.add(f, sk_e=SK_EI, now=0.3) for f in small[1:]]
    assert isinstance(done, MessageReassembled)


def test_limits_on_count_size_and_time() -> None:
    frags = _fragments(limit=200)
    assert len(frags) > 8
    few = FragmentReassembler(ReassemblyLimits(max_fragments=8))
    assert few.add(frags[0], sk_e=SK_EI, now=0.0).reason == "too_many_fragments"
    small = FragmentReassembler(ReassemblyLimits(max_message_len=1000))
    results = [small.add(f, sk_e=SK_EI, now=0.0) for f in frags]
    assert any(isinstance(r, FragmentRefused) and r.reason == "too_large" for r in results)
    assert not any(isinstance(r, MessageReassembled) for r in results)
    slow = FragmentReassembler(ReassemblyLimits(timeout_s=5.0))
    slow.add(frags[0], sk_e=SK_EI, now=0.0)
    assert slow.get_timer() == 5.0
    assert [r.reason for r in slow.handle_timer(now=5.0)] == ["timed_out"]
    assert slow.pending_messages == 0 and slow.get_timer() is None


def test_bad_chain_after_reassembly_is_refused() -> None:
    message = IkeMessage(SPI_I, SPI_R, IKE_AUTH, 1, initiator=True)
    frags = fragment_message(message, [UnknownPayload(48, bytes(900))], sk_e=SK_EI, next_iv=_ivs(), max_message_len=548)
    # replace the last fragment by one whose plaintext is garbage: the joined chain no longer parses
    junk = EncryptedFragmentPayload(0, len(frags), len(frags), b"")
    header = decode_fragment_message(frags[-1]).header
    placeholder = encode_fragment_message(
        header, EncryptedFragmentPayload(0, junk.fragment_number, junk.total_fragments, bytes(8 + 6 + 16))
    )
    aad = placeholder[:36]
    last = aad + bytes(8) + aes_gcm_seal(SK_EI[:32], SK_EI[32:], bytes(8), b"\xff" * 5 + b"\x00", aad)
    reassembler = FragmentReassembler()
    results = [reassembler.add(f, sk_e=SK_EI, now=0.0) for f in [*frags[:-1], last]]
    assert results[-1].reason == "bad_chain"


def test_flood_keeps_memory_bounded() -> None:
    limits = ReassemblyLimits(
        max_fragments=64, max_message_len=16 * 1024, max_pending_messages=4, max_buffered_len=32 * 1024
    )
    reassembler = FragmentReassembler(limits)
    rng = random.Random(9)
    peak = 0
    ivs = _ivs()
    for n in range(1500):
        mid = rng.randrange(1, 1000)
        message = IkeMessage(SPI_I, SPI_R, IKE_AUTH, mid, initiator=True)
        frags = fragment_message(
            message,
            [UnknownPayload(48, rng.randbytes(rng.randrange(1, 12000)))],
            sk_e=SK_EI,
            next_iv=ivs,
            max_message_len=1200,
        )
        frag = rng.choice(frags[1:] or frags)  # never completing sets, mostly
        if n % 7 == 0:
            frag = rng.randbytes(rng.randrange(0, 1500))  # unauthenticated junk
        result = reassembler.add(frag, sk_e=SK_EI, now=n * 0.001)
        assert isinstance(result, (FragmentPending, FragmentRefused, MessageReassembled, FragmentOfReassembledMessage))
        peak = max(peak, reassembler.buffered_len)
        assert reassembler.pending_messages <= 4
    assert peak <= 32 * 1024
    assert (
        reassembler.refusals["evicted"] > 0
        and reassembler.refusals["malformed"] + reassembler.refusals["integrity"] > 0
    )
    # after the flood a genuine message still gets through
    *_, done = [reassembler.add(f, sk_e=SK_EI, now=10.0) for f in _fragments(mid=2000)]
    assert isinstance(done, MessageReassembled)


def test_a_whole_message_is_not_a_fragment() -> None:
    whole = encode_ike_message(IkeMessage(SPI_I, SPI_R, IKE_AUTH, 1, (NotifyPayload(16384),), initiator=True))
    assert FragmentReassembler().add(whole, sk_e=SK_EI, now=0.0).reason == "malformed"
    assert decode_ike_message(whole)
    with pytest.raises(DecodeError):
        decrypt_fragment(whole, sk_e=SK_EI)


def test_choose_udp_sending() -> None:
    limit = max_ike_message_len(path_mtu=1280, ipv6=True)
    assert choose_udp_sending(1200, max_message_len=limit, encrypted=True, fragmentation_negotiated=False) == "whole"
    assert choose_udp_sending(3000, max_message_len=limit, encrypted=True, fragmentation_negotiated=True) == "fragments"
    assert (
        choose_udp_sending(3000, max_message_len=limit, encrypted=True, fragmentation_negotiated=False)
        == "ip-fragments"
    )
    # IKE_SA_INIT with an ML-KEM-1024 key cannot be fragmented by IKE
    assert (
        choose_udp_sending(1900, max_message_len=limit, encrypted=False, fragmentation_negotiated=True)
        == "ip-fragments"
    )


@settings(max_examples=50, deadline=None)
@given(
    first=st.integers(0, 255),
    total=st.integers(1, 0xFFFF),
    data=st.binary(max_size=64),
    number_seed=st.integers(0, 0xFFFF),
)
def test_skf_codec_round_trips(first: int, total: int, data: bytes, number_seed: int) -> None:
    number = number_seed % total + 1
    payload = EncryptedFragmentPayload(first, number, total, data)
    header = decode_fragment_message(encode_fragment_message(decode_fragment_message(_fragments()[0]).header, payload))
    assert header.fragment == payload
