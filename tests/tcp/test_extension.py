"""The TcpExtension hooks: options in every segment role, state changes, and owning the stream."""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Sequence

import pytest

from lab.tcp import SegmentRole, TcpConfig, TcpExtension, TcpState
from lab.tcp.events import ConnectionEstablished, ConnectionTerminated
from lab.wire.tcp import TcpOption, TcpSegment, Timestamps, UnknownOption
from tests.tcp.pair import TcpPair, payload, peek, random_loss, sha256

KIND = 253  # RFC 4727 experimental
ROLE_CODE = {SegmentRole.SYN: 1, SegmentRole.SYN_ACK: 2, SegmentRole.ACK: 3, SegmentRole.DATA: 4}
CODE_ROLE = {v: k for k, v in ROLE_CODE.items()}


class Tagger(TcpExtension):
    """Adds UnknownOption(253, role code + stream offset + side) and records what arrives."""

    name = "tagger"

    def __init__(self, side: bytes) -> None:
        self.side = side
        self.sent: list[tuple[SegmentRole, int, int]] = []
        self.received: list[tuple[SegmentRole, SegmentRole | None, int, int | None, bytes | None]] = []
        self.states: list[tuple[TcpState, TcpState]] = []

    def options_to_send(self, role: SegmentRole, *, stream_offset: int, length: int, now: float) -> Sequence[TcpOption]:
        self.sent.append((role, stream_offset, length))
        return [UnknownOption(KIND, struct.pack("!BI", ROLE_CODE[role], stream_offset) + self.side)]

    def options_received(self, role: SegmentRole, segment: TcpSegment, *, stream_offset: int, now: float) -> None:
        tag = next((o for o in segment.options if isinstance(o, UnknownOption) and o.kind == KIND), None)
        if tag is None:
            self.received.append((role, None, stream_offset, None, None))
            return
        code, offset = struct.unpack_from("!BI", tag.data)
        self.received.append((role, CODE_ROLE[code], stream_offset, offset, tag.data[5:]))

    def state_changed(self, old: TcpState, new: TcpState, *, now: float) -> None:
        self.states.append((old, new))


def tagged_pair(**kw) -> tuple[TcpPair, Tagger, Tagger]:
    client_ext, server_ext = Tagger(b"C"), Tagger(b"S")
    pair = TcpPair(client_extension=client_ext, server_extension=server_ext, **kw)
    assert client_ext.conn is pair.client and server_ext.conn is pair.server
    return pair, client_ext, server_ext


def test_options_in_every_role() -> None:
    pair, client_ext, server_ext = tagged_pair()
    pair.handshake()
    # the server saw the client's SYN, the client the server's SYN/ACK, the server the third ACK
    assert server_ext.received[0] == (SegmentRole.SYN, SegmentRole.SYN, 0, 0, b"C")
    assert client_ext.received[0] == (SegmentRole.SYN_ACK, SegmentRole.SYN_ACK, 0, 0, b"S")
    assert server_ext.received[1] == (SegmentRole.ACK, SegmentRole.ACK, 0, 0, b"C")
    up, down = payload(60_000, 1), payload(40_000, 2)
    pair.transfer(up, down)
    assert pair.data(pair.server) == up and pair.data(pair.client) == down
    for ext, peer_side, first_role in ((client_ext, b"S", SegmentRole.SYN_ACK), (server_ext, b"C", SegmentRole.SYN)):
        roles = {r[0] for r in ext.received}
        assert roles == {first_role, SegmentRole.ACK, SegmentRole.DATA}
        for role, tag_role, offset, tag_offset, side in ext.received:
            # every segment carried the peer's option, and both ends agree on its role and offset
            assert side == peer_side
            assert tag_role is role
            assert tag_offset == offset
        sent_roles = {r[0] for r in ext.sent}
        assert sent_roles >= {SegmentRole.ACK, SegmentRole.DATA}


def test_data_offsets_match_the_stream() -> None:
    pair, client_ext, _server_ext = tagged_pair()
    pair.handshake()
    up = payload(100_000, 3)
    pair.transfer(up)
    data = [(off, length) for role, off, length in client_ext.sent if role is SegmentRole.DATA and length]
    # segments cover the stream from 0 to the end, each starting where the previous one ended
    assert data[0][0] == 0
    covered = sorted(set(data))
    for (off, length), (nxt, _) in itertools.pairwise(covered):
        assert nxt == off + length
    assert covered[-1][0] + covered[-1][1] == len(up)


def test_options_coexist_with_sack_and_timestamps_under_loss() -> None:
    """With an extension option, SACK blocks shrink to fit the 40 option bytes."""
    pair, client_ext, server_ext = tagged_pair(fault=random_loss(random.Random(4), 8.0), reorder_rng=random.Random(5))
    pair.handshake()
    up, down = payload(300_000, 6), payload(300_000, 7)
    pair.transfer(up, down)
    assert sha256(pair.data(pair.server)) == sha256(up)
    assert sha256(pair.data(pair.client)) == sha256(down)
    sack_with_tag = [
        r
        for r in pair.records(name="segment_sent")
        if {o["kind"] for o in r.data.get("options", [])} >= {"SACK", "TS", KIND}
    ]
    assert sack_with_tag
    for ext in (client_ext, server_ext):
        assert all(r[1] is not None for r in ext.received)


def test_state_changes_are_reported_in_order() -> None:
    pair, client_ext, server_ext = tagged_pair()
    pair.handshake()
    pair.transfer(b"abc", b"def")
    for ext, node in ((client_ext, "client"), (server_ext, "server")):
        traced = [
            (TcpState(r.data["from"]), TcpState(r.data["to"]))
            for r in pair.records(node=node, name="state_updated")
            if "to" in r.data
        ]
        assert ext.states == traced
        assert ext.states[-1][1] is TcpState.CLOSED


def test_peer_without_extension_ignores_the_option() -> None:
    ext = Tagger(b"C")
    pair = TcpPair(client_extension=ext)
    pair.handshake()
    up = payload(50_000, 8)
    pair.transfer(up, up)
    assert pair.data(pair.server) == up and pair.data(pair.client) == up
    # the server does not echo unknown options; the client's extension sees segments without them
    assert ext.received and all(r[1] is None for r in ext.received)


class RequireTag(Tagger):
    """Refuses a peer that does not speak the option (as MPTCP or TCP-ENO policies may)."""

    def options_received(self, role: SegmentRole, segment: TcpSegment, *, stream_offset: int, now: float) -> None:
        super().options_received(role, segment, stream_offset=stream_offset, now=now)
        if self.received[-1][1] is None:
            self.conn.abort("peer lacks option 253", now=now)


def test_extension_refusing_a_synack() -> None:
    ext = RequireTag(b"C")
    pair = TcpPair(client_extension=ext)
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.run(until=5.0)
    assert pair.client.state is TcpState.CLOSED
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="peer lacks option 253", reset=True)]


def test_extension_refusing_a_syn_does_not_raise() -> None:
    """A peer's SYN never makes receive_segment() raise, even when the extension aborts on it."""
    ext = RequireTag(b"S")
    pair = TcpPair(server_extension=ext)
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.run(until=5.0)
    assert pair.server.state is TcpState.CLOSED
    assert [t.reset for t in pair.terminated(pair.server)] == [True]
    assert pair.events_of(pair.client, ConnectionEstablished) == []


def test_extension_refusing_data() -> None:
    class RejectData(Tagger):
        def options_received(self, role, segment, *, stream_offset, now) -> None:
            super().options_received(role, segment, stream_offset=stream_offset, now=now)
            if role is SegmentRole.DATA and stream_offset >= 10_000:
                self.conn.abort("too much", now=now)

    pair = TcpPair(server_extension=RejectData(b"S"), client_extension=Tagger(b"C"))
    pair.handshake()
    pair.client.send(payload(50_000, 9))
    pair.run(until=10.0)
    assert pair.server.state is TcpState.CLOSED
    assert pair.client.state is TcpState.CLOSED
    assert len(pair.data(pair.server)) <= 10_000 + pair.client.mss
    assert [t.reset for t in pair.terminated(pair.client)] == [True]


# --- an extension that owns the stream


class XorStream(TcpExtension):
    """Encrypts the stream with a position-keyed XOR, as a toy tcpcrypt."""

    name = "xor"
    owns_stream = True

    def __init__(self, key: int) -> None:
        self.key = key
        self.written = 0
        self.chunks: list[tuple[int, int]] = []

    def _pad(self, offset: int, length: int) -> bytes:
        return bytes((self.key * (offset + i) + (offset + i) // 256) & 0xFF for i in range(length))

    def _xor(self, data: bytes, offset: int) -> bytes:
        pad = self._pad(offset, len(data))
        return bytes(a ^ b for a, b in zip(data, pad))

    def app_send(self, data: bytes) -> None:
        self.conn.send_stream(self._xor(data, self.written))
        self.written += len(data)

    def stream_received(self, data: bytes, *, stream_offset: int, now: float) -> None:
        self.chunks.append((stream_offset, len(data)))
        self.conn.deliver(self._xor(data, stream_offset))


@pytest.mark.parametrize("faults", [False, True])
def test_owns_stream_transforms_end_to_end(faults: bool) -> None:
    wire = {"client": {}, "server": {}}

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if seg.payload:
            side = "client" if sender is pair.client else "server"
            wire[side][seg.seq] = seg.payload
        if faults and rng.random() < 0.05:
            return []
        return [data]

    rng = random.Random(10)
    client_ext, server_ext = XorStream(7), XorStream(7)
    pair = TcpPair(
        client_extension=client_ext,
        server_extension=server_ext,
        fault=fault,
        reorder_rng=random.Random(11) if faults else None,
    )
    pair.handshake()
    up, down = payload(200_000, 12), payload(150_000, 13)
    pair.transfer(up, down)
    assert sha256(pair.data(pair.server)) == sha256(up)
    assert sha256(pair.data(pair.client)) == sha256(down)
    # the application bytes are plain, the bytes on the wire are the transformed stream
    on_wire = b"".join(p for _, p in sorted(wire["client"].items(), key=lambda kv: (kv[0] - pair.client._iss) % 2**32))
    assert len(on_wire) == len(up)
    assert on_wire != up
    assert on_wire == client_ext._xor(up, 0)
    # stream_received saw contiguous, in-order offsets
    offsets = server_ext.chunks
    assert offsets[0][0] == 0
    for (off, n), (nxt, _) in itertools.pairwise(offsets):
        assert nxt == off + n


def test_owns_stream_on_one_side_only_shows_the_transform() -> None:
    pair = TcpPair(client_extension=XorStream(3))
    pair.handshake()
    up = payload(30_000, 14)
    pair.transfer(up)
    assert len(pair.data(pair.server)) == len(up)
    assert pair.data(pair.server) != up
    assert pair.data(pair.server) == XorStream(3)._xor(up, 0)


def test_owns_stream_with_paused_reader() -> None:
    """stream_received offsets stay right when the application pauses (the extension reads the stream)."""
    server_ext = XorStream(5)
    pair = TcpPair(client_extension=XorStream(5), server_extension=server_ext, server_config=TcpConfig())
    pair.handshake()
    pair.server.pause_reading()
    up = payload(80_000, 15)
    pair.client.send(up)
    pair.run(until=1.0)
    pair.server.resume_reading(now=pair.now)
    pair.client.close(now=pair.now)
    pair.run(until=100.0)
    assert pair.data(pair.server) == up


def test_timestamps_still_first_with_extension_options() -> None:
    pair, _, _ = tagged_pair()
    pair.handshake()
    pair.client.send(b"x" * 3000)
    pair.collect()
    segs = [peek(d) for *_, d in pair.in_flight]
    assert segs
    for seg in segs:
        assert seg.option(Timestamps) is not None
        assert any(isinstance(o, UnknownOption) and o.kind == KIND for o in seg.options)
