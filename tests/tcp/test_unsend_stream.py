"""An extension that owns the stream (MPTCP) may take back queued bytes that were never sent: the
data arrived another way meanwhile. Sent bytes, and anything once a FIN is queued, stay."""

from __future__ import annotations

from lab.tcp import TcpConfig
from tests.tcp.pair import TcpPair


def test_bytes_never_sent_are_taken_back_and_the_rest_arrives_intact() -> None:
    pair = TcpPair(client_config=TcpConfig(nagle=False))
    pair.client.connect(now=0.0)
    pair.server.listen(now=0.0)
    pair.run(until=0.1)
    first, second = b"a" * 3000, b"b" * 5000
    pair.client.send_stream(first)
    pair._collect(pair.client)  # the initial window takes all of it: sent
    pair.client.send_stream(second)
    assert pair.client.unsent_bytes == len(second)
    assert pair.client.unsend_stream(len(first) - 10) == 0  # reaches into sent bytes: refused
    assert pair.client.unsend_stream(len(first) + 1000) == len(second) - 1000
    assert pair.client.unsent_bytes == 1000
    pair.run(until=1.0)
    assert bytes(pair.received[id(pair.server)]) == first + second[:1000]
    pair.client.close(now=pair.now)
    assert pair.client.unsend_stream(0) == 0
