"""mptcp_path_failure reference solution: a scheduler that gives up on a subflow whose RTO fired.

With ``min_rtt`` the backup is used only once no active subflow is left; the
path-A subflow stays ESTABLISHED while its retransmission timer backs off,
so the transfer waits for path A to come back. ``backup_aware`` treats a
subflow whose RTO has fired as dead: its unacknowledged data is reinjected
on the backup, which carries the transfer until path A answers again.
"""

from __future__ import annotations

PATH_B = "10.0.3.1"

CLIENT = {
    "path_manager": "paired",
    "backup_addresses": (PATH_B,),
    "scheduler": "backup_aware",
}


def client_config() -> dict:
    return CLIENT
