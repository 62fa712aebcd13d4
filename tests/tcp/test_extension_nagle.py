"""Nagle does not hold a segment that an extension's boundary has made as large as it can be.

An MPTCP subflow ends every segment at its DSS mapping's end, and a mapping's first segment
carries 16 more option bytes (1420 payload bytes where others carry 1436). The scheduler hands a
subflow one mapping per window's room, often exactly one such segment; Nagle took it for a short
segment and held it until everything outstanding was acknowledged, so subflows sat idle with
room in their windows (about a third of the time at a shared bottleneck). Waiting cannot make
such a segment larger: its end is the extension's, not the application's. RFC 9293 §3.8.6.2.2's
rule still holds a short segment the application could still grow.
"""

from __future__ import annotations

import pytest

from lab.tcp import TcpConfig
from lab.tcp.extension import TcpExtension
from tests.tcp.pair import TcpPair

RECORD = 1000  # the extension's records: no segment crosses a record's end


class Records(TcpExtension):
    """Segments end where a fixed-size record ends (as MPTCP's mappings or draft tcpcrypt frames do)."""

    name = "records"

    def segment_limit(self, stream_offset: int) -> int:
        return RECORD - stream_offset % RECORD


def _sent_at(pair: TcpPair) -> list[tuple[float, int]]:
    return [(r.t, r.data["len"]) for r in pair.records(node="client", name="segment_sent") if r.data["len"]]


@pytest.mark.parametrize("extension", [True, False])
def test_a_segment_ending_at_the_extensions_boundary_is_not_held(extension: bool) -> None:
    pair = TcpPair(client_config=TcpConfig(nagle=True), client_extension=Records() if extension else None)
    pair.handshake()
    t0 = pair.now
    pair.client.send(b"a" * RECORD)
    pair.run(until=t0 + 0.001)
    pair.client.send(b"b" * RECORD)  # the first is still unacknowledged (10 ms one way)
    pair.run(until=t0 + 0.002)
    sent = _sent_at(pair)
    if extension:
        # the second record cannot grow by waiting: it goes out at once
        assert [n for _, n in sent] == [RECORD, RECORD]
    else:
        # plain TCP: 1000 bytes < MSS with data outstanding, held for coalescing (RFC 9293 3.8.6.2.2)
        assert [n for _, n in sent] == [RECORD]
    pair.run(until=t0 + 1.0)
    assert pair.data(pair.server) == b"a" * RECORD + b"b" * RECORD


def test_a_short_write_inside_a_record_is_still_held() -> None:
    """Half a record with data outstanding: the segment could still grow to the record's end."""
    pair = TcpPair(client_config=TcpConfig(nagle=True), client_extension=Records())
    pair.handshake()
    t0 = pair.now
    pair.client.send(b"a" * RECORD)
    pair.run(until=t0 + 0.001)
    pair.client.send(b"b" * (RECORD // 2))
    pair.run(until=t0 + 0.002)
    assert [n for _, n in _sent_at(pair)] == [RECORD]
    pair.client.send(b"c" * (RECORD // 2))  # now the record is complete: as large as it can be
    pair.run(until=t0 + 0.003)
    assert [n for _, n in _sent_at(pair)] == [RECORD, RECORD]
    pair.run(until=t0 + 1.0)
    assert pair.data(pair.server) == b"a" * RECORD + b"b" * (RECORD // 2) + b"c" * (RECORD // 2)
