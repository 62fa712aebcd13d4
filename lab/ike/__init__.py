"""IKEv2 (RFC 7296) with a pre-shared key, one Child SA and its rekeying, over UDP and TCP (RFC 9329).

``keys`` (key derivation, AUTH, the SK payload), ``sa`` (one IKE SA's
exchanges), ``endpoint`` (transports, UDP-to-TCP fallback, demultiplexing,
ESP), ``sim`` / ``live`` (drivers on the simulator and on kernel sockets),
``workload`` and ``tunnel`` (the scenarios' IKE session), ``keylog`` and
``pcap`` (tshark decryption tables, RFC 9329 captures as UDP). Wire formats
are in ``lab.wire.ikev2`` and ``lab.wire.iketcp``.
"""
