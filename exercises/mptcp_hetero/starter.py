"""mptcp_hetero: tune h1's MPTCP settings so two very different paths beat (or at least match) the fast one.

``client_config()`` returns keyword arguments for h1's
``lab.mptcp.config.MptcpConfig``: its docstring explains every setting, and
``lab.mptcp.strategies`` names the schedulers and congestion controllers.
Change one thing at a time and measure. Then run:

    tcplab exercise check mptcp_hetero
"""

from __future__ import annotations

CLIENT = {
    "path_manager": "paired",  # one subflow per path: keep this
    "scheduler": "round_robin",  # each subflow in turn, whatever its RTT
    "mapping_bytes": 1448,  # connection-level chunk handed to a subflow at a time
    "opportunistic_retransmission": False,  # resend data held up on the slow path over the fast one
    "penalisation": False,  # halve the window of the subflow that holds the connection up
    "slow_path_check": False,  # ECF: hold data back for the fast path when it would deliver sooner
    "congestion": "uncoupled",  # or "lia", "olia" (RFC 6356 coupled congestion control)
}


def client_config() -> dict:
    return CLIENT
