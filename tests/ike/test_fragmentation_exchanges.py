"""IKE fragmentation (RFC 7383) in the real exchanges: negotiation, both roles, retransmission, TCP, limits.

P-256 + ML-KEM-1024 makes both IKE_INTERMEDIATE messages about 1630 octets,
more than a 1280-octet path carries in one datagram, so with fragmentation
negotiated each goes as SKF fragments. The refusal tests feed fragments made
with the SA's real keys straight into the responder endpoint, as a peer
holding the keys (or a replaying middlebox) could.
"""

from __future__ import annotations

from lab.ike.events import IkeSaEstablished, LivenessChecked, PacketReceived
from lab.ike.fragmentation import ReassemblyLimits, fragment_message
from lab.ike.multi_ke import IKE_INTERMEDIATE
from lab.wire.buffer import Buffer
from lab.wire.ikev2 import INFORMATIONAL, NON_ESP_MARKER, IkeMessage, NotifyPayload, pull_ike_header
from lab.wire.ikev2_fragment import is_fragment_message
from tests.ike.pair import I_ADDR, R_ADDR, Pair, configs

PQ = {"dh_groups": (19,), "additional_key_exchanges": (37,)}


def fragmented_pair(**overrides: object) -> Pair:
    settings = {"transport": "udp", "fragmentation": True, "path_mtu_bytes": 1280, **PQ, **overrides}
    pair = Pair(*configs(**settings))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    return pair


def sent(pair: Pair, node: str, exchange: str) -> list[dict]:
    return [
        r.data
        for r in pair.tracer.select(layer="ike", name="segment_sent", node=node)
        if r.data["exchange"] == exchange
    ]


def datagrams(pair: Pair, from_i: bool) -> list[bytes]:
    return [d[4:] for kind, f, d in pair.sent if kind == "udp" and f == from_i and d[:4] == NON_ESP_MARKER]


def test_both_roles_fragment_ike_intermediate_and_the_sa_comes_up() -> None:
    pair = fragmented_pair()
    assert pair.of("i", IkeSaEstablished) and pair.of("r", IkeSaEstablished)
    sa_i, sa_r = pair.i.sa, pair.r.sas()[0]
    assert sa_i.fragmentation and sa_r.fragmentation
    (request,) = sent(pair, "i", "IKE_INTERMEDIATE")
    (response,) = sent(pair, "r", "IKE_INTERMEDIATE")
    assert request["length"] > 1280 and request["fragments"] == 2
    assert response["length"] > 1280 and response["fragments"] == 2
    for from_i in (True, False):
        frags = [d for d in datagrams(pair, from_i) if is_fragment_message(d)]
        assert len(frags) == 2 and all(len(d) + 4 + 8 + 20 <= 1280 for d in frags)
        assert {pull_ike_header(Buffer(d)).exchange_type for d in frags} == {IKE_INTERMEDIATE}
    reassembled = [
        (r.node, r.data["exchange"], r.data["fragments"])
        for r in pair.tracer.records
        if r.layer == "ike" and r.data.get("event") == "reassembled"
    ]
    assert reassembled == [("r", "IKE_INTERMEDIATE", 2), ("i", "IKE_INTERMEDIATE", 2)]
    # IKE_AUTH fits: sent whole
    assert "fragments" not in sent(pair, "i", "IKE_AUTH")[0]
    pair.i.send_packet(b"\x45after fragments", now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("r", PacketReceived)] == [b"\x45after fragments"]


def test_fragments_need_both_ends_to_offer_them() -> None:
    pair = fragmented_pair(r_fragmentation=False)
    assert pair.of("i", IkeSaEstablished)
    assert not pair.i.sa.fragmentation and not pair.i.sa.peer_fragmentation
    assert not any(is_fragment_message(d) for d in datagrams(pair, True) + datagrams(pair, False))
    too_big = [(r.node, r.data["exchange"]) for r in pair.tracer.records if r.data.get("event") == "ip_fragments"]
    assert too_big == [("i", "IKE_INTERMEDIATE"), ("r", "IKE_INTERMEDIATE")]  # both send whole, as IP fragments


def test_never_fragmented_over_tcp() -> None:
    pair = fragmented_pair(transport="tcp")
    assert [e.transport for e in pair.of("i", IkeSaEstablished)] == ["tcp"]
    assert pair.i.sa.fragmentation  # negotiated, yet TCP carries the messages whole
    assert not any("fragments" in r.data for r in pair.tracer.select(layer="ike", name="segment_sent"))
    assert sent(pair, "i", "IKE_INTERMEDIATE")[0]["length"] > 1280


def test_a_lost_fragment_makes_the_initiator_resend_every_fragment() -> None:
    lost = []

    def lose_second_fragment(kind: str, from_i: bool, data: bytes) -> bytes | None:
        second = kind == "udp" and from_i and is_fragment_message(data[4:]) and data[36:38] == b"\x00\x02"
        if second and not lost:  # Fragment Number 2 (after the marker, header and SKF generic header)
            lost.append(data)
            return None
        return data

    settings = {"transport": "udp", "fragmentation": True, "path_mtu_bytes": 1280, **PQ}
    pair = Pair(*configs(**settings), tamper=lose_second_fragment)
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert lost and pair.of("i", IkeSaEstablished)
    requests = sent(pair, "i", "IKE_INTERMEDIATE")
    assert [(r.get("retransmission", 0), r["fragments"]) for r in requests] == [(0, 2), (1, 2)]
    frags = [d for d in datagrams(pair, True) if is_fragment_message(d)]
    assert len(frags) == 4 and frags[:2] == frags[2:]  # the same two fragments again
    assert pair.r.sas()[0]._reassembler.refusals["duplicate"] == 1  # fragment 1 was already in


def test_a_retransmitted_fragmented_request_gets_every_fragment_of_the_response_again() -> None:
    dropped = []

    def lose_the_response(kind: str, from_i: bool, data: bytes) -> bytes | None:
        if kind == "udp" and not from_i and is_fragment_message(data[4:]) and len(dropped) < 2:
            dropped.append(data)
            return None
        return data

    settings = {"transport": "udp", "fragmentation": True, "path_mtu_bytes": 1280, **PQ}
    pair = Pair(*configs(**settings), tamper=lose_the_response)
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert len(dropped) == 2 and pair.of("i", IkeSaEstablished)
    resent = [d for d in sent(pair, "r", "IKE_INTERMEDIATE") if d.get("resent")]
    assert len(resent) == 1 and resent[0]["fragments"] == 2  # on fragment 1 of the retransmission only


# --- refusals through the endpoint ---------------------------------------------------------------------------

LIMITS = ReassemblyLimits(
    max_fragments=8, max_message_len=3000, max_pending_messages=2, max_buffered_len=4000, timeout_s=2.0
)


def established(**overrides: object) -> Pair:
    pair = fragmented_pair(r_fragment_limits=LIMITS, **overrides)
    assert pair.of("r", IkeSaEstablished)
    return pair


def forge(pair: Pair, message_id: int, notify_len: int, *, max_len: int = 600) -> list[bytes]:
    """Fragments of an INFORMATIONAL request under the initiator's real keys."""
    sa = pair.i.sa
    header = IkeMessage(sa.spi_i, sa.spi_r, INFORMATIONAL, message_id, (), initiator=True)
    counter = iter(range(10**6))
    return fragment_message(
        header,
        (NotifyPayload(40960, bytes(notify_len)),),
        sk_e=sa.keys.sk_ei,
        next_iv=lambda: (0xF000_0000 + next(counter)).to_bytes(8, "big"),
        max_message_len=max_len,
    )


def inject(pair: Pair, fragment: bytes) -> None:
    pair.r.receive_datagram(NON_ESP_MARKER + fragment, local=(R_ADDR, 4500), remote=(I_ADDR, 4500), now=pair.now)
    pair.flush()


def refusals(pair: Pair) -> list[str]:
    return [
        r.data["reason"]
        for r in pair.tracer.select(layer="ike", name="segment_dropped", node="r")
        if r.data["reason"].startswith("fragment_")
    ]


def still_alive(pair: Pair) -> bool:
    before = len(pair.of("i", LivenessChecked))
    pair.i.check_liveness(now=pair.now)
    pair.run(pair.now + 1.0)
    return len(pair.of("i", LivenessChecked)) == before + 1


def test_malformed_fragment_is_refused() -> None:
    pair = established()
    good = forge(pair, 9, 1500)[0]
    bad = bytearray(good)
    bad[32:36] = b"\x00\x05\x00\x03"  # Fragment Number 5 of 3
    inject(pair, bytes(bad))
    zero = bytearray(good)
    zero[34:36] = b"\x00\x00"  # Total Fragments 0
    inject(pair, bytes(zero))
    flipped = bytearray(good)
    flipped[-1] ^= 1  # the ICV no longer verifies
    inject(pair, bytes(flipped))
    inject(pair, good[:40])  # cut short
    assert refusals(pair) == ["fragment_malformed", "fragment_malformed", "fragment_integrity", "fragment_malformed"]
    assert pair.r.sas()[0]._reassembler.buffered_len == 0
    assert still_alive(pair)


def test_overlapping_fragments_are_refused() -> None:
    pair = established()
    first = forge(pair, 9, 1500)
    other = forge(pair, 9, 1400)  # same Message ID and Total Fragments, different content
    assert len(first) == len(other) == 3
    inject(pair, first[0])
    inject(pair, other[0])
    inject(pair, first[0])
    assert refusals(pair) == ["fragment_inconsistent", "fragment_duplicate"]
    assert still_alive(pair)


def test_oversized_fragment_sets_are_refused() -> None:
    pair = established()
    for fragment in forge(pair, 9, 5000, max_len=500)[:3]:  # 12 fragments announced, the limit is 8
        inject(pair, fragment)
    big = forge(pair, 10, 3100, max_len=1200)  # 3 fragments, more than 3000 octets together
    for fragment in big:
        inject(pair, fragment)
    assert refusals(pair) == ["fragment_too_many_fragments"] * 3 + ["fragment_too_large"]
    assert pair.r.sas()[0]._reassembler.buffered_len == 0
    assert still_alive(pair)


def test_an_incomplete_set_times_out() -> None:
    pair = established()
    inject(pair, forge(pair, 9, 1500)[0])
    assert pair.r.sas()[0]._reassembler.pending_messages == 1
    pair.run(pair.now + 3.0)
    assert refusals(pair) == ["fragment_timed_out"]
    assert pair.r.sas()[0]._reassembler.pending_messages == 0


def test_a_fragment_flood_keeps_memory_bounded_and_the_sa_working() -> None:
    pair = established()
    reassembler = pair.r.sas()[0]._reassembler
    peak_len = peak_sets = 0
    for message_id in range(100, 400):  # 300 messages, never completed: fragments 1 and 2 of 3 each
        for fragment in forge(pair, message_id, 1500)[:2]:
            inject(pair, fragment)
            peak_len = max(peak_len, reassembler.buffered_len)
            peak_sets = max(peak_sets, reassembler.pending_messages)
    assert peak_len <= LIMITS.max_buffered_len and peak_sets <= LIMITS.max_pending_messages
    assert reassembler.refusals["evicted"] >= 290
    assert still_alive(pair)
    assert pair.r.sas()[0].established


def test_a_fragment_arriving_over_tcp_is_dropped() -> None:
    """RFC 7383 fragments have no place on TCP (RFC 9329 carries any size): the SA drops them, unread."""
    from lab.wire.iketcp import encode_ike_frame

    pair = fragmented_pair(transport="tcp")
    assert pair.of("r", IkeSaEstablished)
    (conn,) = list(pair._tcp_back)
    pair.r.receive_tcp_data(conn, encode_ike_frame(forge(pair, 9, 1500)[0]), now=pair.now)
    pair.flush()
    drops = [r.data for r in pair.tracer.select(layer="ike", name="segment_dropped", node="r")]
    assert [(d["reason"], d["detail"]) for d in drops] == [("fragment_unexpected", "IKE fragment over TCP")]
    assert pair.r.sas()[0]._reassembler.buffered_len == 0
    assert still_alive(pair)
