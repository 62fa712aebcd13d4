"""tcpcrypt (RFC 8548): key schedule and frame protection (``keys``), the stream layer (``stream``),
its events, the resumption cache (``session_cache``) and benchmarks; wire formats are in ``lab.wire.tcpcrypt``."""
