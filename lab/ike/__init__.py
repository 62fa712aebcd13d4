"""IKEv2 (RFC 7296) with a pre-shared key, one Child SA and its rekeying, over UDP and TCP (RFC 9329).

``keys`` (key derivation, AUTH, the SK payload), ``sa`` (one IKE SA's
exchanges), ``endpoint`` (transports, UDP-to-TCP fallback, demultiplexing,
ESP), ``tunnel`` (inner packets of the scenarios' tunnel), ``keylog`` and
``pcap`` (tshark decryption tables, RFC 9329 captures as UDP). Wire formats
are in ``lab.wire.ikev2`` and ``lab.wire.iketcp``, the TCP stream layer in
``lab.iketcp``; drivers and workloads in ``lab.scenario`` (``ike_driver`` on
a host stack, ``ike_live`` on kernel sockets, ``ike`` the workload).
"""
