"""Multipath TCP (RFC 8684, MPTCP v1; RFC 6824, v0 where the lab shows the difference).

The option codec is ``lab.wire.mptcp``; ``lab.mptcp.crypto`` derives tokens,
IDSNs, HMACs and the DSS checksum; ``lab.mptcp.connection`` is the sans-I/O
endpoint, ``lab.mptcp.strategies`` its schedulers, path managers and coupled
congestion control, ``lab.scenario.mptcp`` the scenario workload.
"""
