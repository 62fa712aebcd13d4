"""tcpcrypt (RFC 8548): key schedule and frame protection (``keys``), the stream layer (``stream``),
its events and the resumption cache (``session_cache``); wire formats are in ``lab.wire.tcpcrypt``,
benchmarks in ``lab.bench.tcpcrypt``."""
