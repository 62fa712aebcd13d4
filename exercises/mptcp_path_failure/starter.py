"""mptcp_path_failure: h1's MPTCP settings, so a transfer survives losing path A.

``client_config()`` returns keyword arguments for h1's
``lab.mptcp.config.MptcpConfig`` (see its docstring for every setting; the
strategies are named in ``lab.mptcp.strategies``: SCHEDULERS,
PATH_MANAGERS). Path B (h1's address 10.0.3.1) is a metered link: keep it
a backup, used only when path A cannot carry the data. Then run:

    tcplab exercise check mptcp_path_failure
"""

from __future__ import annotations

PATH_B = "10.0.3.1"

CLIENT = {
    "path_manager": "paired",  # one subflow per path
    "scheduler": "min_rtt",
}


def client_config() -> dict:
    return CLIENT
