"""Segments a receiving kernel coalesced (GRO on Mininet) and the send buffer's acknowledged front.

A coalesced segment reaches the stack with its checksum field holding only the pseudo-header's sum:
``receive_segment(verified=True)`` takes it as checked (the kernel checked each segment it merged),
while the same bytes without the flag are a bad checksum and dropped. The send buffer keeps the
acknowledged bytes at its front until they are worth deleting; what it reports as buffered, and
every byte it sends again, stay as before.
"""

from __future__ import annotations

import random

from lab.tcp import TcpConnection
from lab.tcp.connection import SBUF_TRIM_BYTES
from lab.wire.checksum import mod_ffff, pack_address, pseudo_header_sum
from tests.tcp.pair import TcpPair, random_loss, sha256


def _coalesce(segments: list[bytes]) -> bytes:
    """Consecutive full segments of one connection as GRO leaves them: the first header with the
    whole length's pseudo-header sum in the checksum field, the payloads one after another."""
    hlen = (segments[0][12] >> 4) * 4
    return segments[0][:hlen] + b"".join(s[hlen:] for s in segments)


def _with_partial_checksum(conn: TcpConnection, segment: bytes) -> bytes:
    src, dst = pack_address(conn.addr.remote_addr), pack_address(conn.addr.local_addr)
    partial = mod_ffff(pseudo_header_sum(src, dst, 6, len(segment))) or 0xFFFF
    return segment[:16] + partial.to_bytes(2, "big") + segment[18:]


def test_a_coalesced_segment_is_taken_whole_only_when_marked_checked() -> None:
    pair = TcpPair(trace=False)
    pair.handshake()
    data = bytes(random.Random(3).randbytes(8 * 1448))
    pair.client.send(data)
    segments = [out.data for out in pair.client.segments_to_send(now=pair.now)]
    assert len(segments) == 8 and all(len(s) == 32 + 1448 for s in segments)
    merged = _with_partial_checksum(pair.server, _coalesce(segments))
    pair.server.receive_segment(merged, now=pair.now)  # not marked: a bad checksum
    pair.collect()
    assert pair.data(pair.server) == b""
    pair.server.receive_segment(merged, now=pair.now, verified=True)
    pair.collect()
    assert pair.data(pair.server) == data


def test_the_send_buffer_reports_only_unacknowledged_bytes_and_resends_the_right_ones() -> None:
    """Acknowledged bytes stay at the buffer's front until they are at least SBUF_TRIM_BYTES and half
    of it; with 2 % loss each way every retransmission must still carry the bytes it stands for."""
    size = 3 * 1024 * 1024
    data = random.Random(9).randbytes(size)
    rng = random.Random(4)
    pair = TcpPair(one_way_s=0.005, fault=random_loss(rng, 2.0), trace=False)
    pair.handshake()
    pair.client.send(data)
    seen: list[tuple[int, int]] = []
    for _ in range(400):
        pair.run(until=pair.now + 0.01)
        conn = pair.client
        queued = conn.stream_offset_queued
        assert conn.send_buffered == queued - conn.stream_offset_acked
        seen.append((conn.send_buffered, len(conn._sbuf)))
        if len(pair.data(pair.server)) >= size:
            break
    assert sha256(pair.data(pair.server)) == sha256(data)
    assert any(held - buffered >= 1448 for buffered, held in seen)  # acknowledged bytes were kept a while
    # ... and leave once they are SBUF_TRIM_BYTES and half of what the buffer holds
    assert all(held - buffered < SBUF_TRIM_BYTES or 2 * (held - buffered) < held for buffered, held in seen)
