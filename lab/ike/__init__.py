"""IKEv2 (RFC 7296) with a pre-shared key or certificates, one Child SA and its rekeying, over UDP and TCP (RFC 9329).

``keys`` (key derivation, AUTH, the SK payload), ``sa`` (one IKE SA's
exchanges), ``endpoint`` (transports, UDP-to-TCP fallback, demultiplexing,
ESP), ``tunnel`` (inner packets of the scenarios' tunnel), ``keylog`` and
``pcap`` (tshark decryption tables, RFC 9329 captures as UDP). Hybrid
post-quantum key exchange: ``mlkem``/``mlkem_encaps`` (ML-KEM) and
``multi_ke`` (RFC 9370 with RFC 9242 IKE_INTERMEDIATE), ``followup_ke`` (RFC 9370
IKE_FOLLOWUP_KE after CREATE_CHILD_SA); ``fragmentation``
(RFC 7383) and ``policy`` (fragments, IP fragments or TCP for a large
message); ``certs`` (the lab PKI) and ``signature_auth`` (RFC 7427). Wire formats
are in ``lab.wire.ikev2`` and ``lab.wire.iketcp``, the TCP stream layer in
``lab.iketcp``; drivers and workloads in ``lab.scenario`` (``ike_driver`` on
a host stack, ``ike_live`` on kernel sockets, ``ike`` the workload).
"""
