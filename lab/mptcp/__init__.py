"""Multipath TCP (RFC 8684, MPTCP v1; RFC 6824, v0 where the lab shows the difference).

The option codec is ``lab.wire.mptcp``; ``crypto`` derives tokens, IDSNs,
HMACs and the DSS checksum; ``connection`` is the sans-I/O endpoint (the
data-sequence space, subflows, reinjection), with ``options`` (which option
goes on which segment, and what a received one does) and ``state`` (subflow
states, a transition table); ``strategies`` holds its schedulers, path
managers and coupled congestion control; ``hook`` is how a host stack keeps
a host's MPTCP state (tokens, announced ports). Scenario workloads are in
``lab.scenario.mptcp``.
"""
