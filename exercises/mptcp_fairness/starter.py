"""mptcp_fairness: make h1's MPTCP connection fair to the TCP flow it shares a bottleneck with.

``client_config()`` returns keyword arguments for h1's
``lab.mptcp.config.MptcpConfig``: its docstring explains every setting, and
``lab.mptcp.strategies`` names the coupled congestion controllers (RFC 6356
LIA, OLIA). Then run:

    tcplab exercise check mptcp_fairness
"""

from __future__ import annotations

CLIENT = {
    "path_manager": "per_address",  # one subflow per local address: keep this
    "congestion": "uncoupled",  # each subflow is a TCP flow of its own
}


def client_config() -> dict:
    return CLIENT
