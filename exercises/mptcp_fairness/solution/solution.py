"""mptcp_fairness reference solution.

Uncoupled, each subflow is a NewReno flow of its own, so h1 takes two of the
three shares of the bottleneck. LIA (RFC 6356) links the subflows' increases:
together they grow by at most what one TCP flow on the best path would, and
each still halves its own window on a loss, so the connection takes one share
and moves its traffic to the least congested subflow. OLIA passes as well.
"""

from __future__ import annotations

CLIENT = {
    "path_manager": "per_address",
    "congestion": "lia",
}


def client_config() -> dict:
    return CLIENT
