"""Wire codecs: bytes <-> frozen dataclasses, with no state and no tracer.

One module per format: IPv4/IPv6 (``ip``), UDP, TCP and its options
(``tcp``), MPTCP (``mptcp``), TCP-ENO (``eno``), tcpcrypt (``tcpcrypt``),
IKEv2 (``ikev2``), ESP (``esp``), the IKETCP framing (``iketcp``);
``buffer`` and ``checksum`` serve them all.
"""
