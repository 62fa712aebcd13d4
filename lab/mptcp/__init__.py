"""Multipath TCP (RFC 8684, MPTCP v1; RFC 6824, v0 where the lab shows the difference).

The option codec is ``lab.wire.mptcp``; ``lab.mptcp.crypto`` derives tokens,
IDSNs, HMACs and the DSS checksum. The sans-I/O endpoint will live here too.
"""
