"""mptcp_fairness reference solution.

Uncoupled, each subflow is a NewReno flow of its own, so h1 takes two of the
three shares of the bottleneck. LIA (RFC 6356) links the subflows' increases:
together they grow by at most what one TCP flow on the best path would, and
each still halves its own window on a loss, so the connection takes one share
(1.07 of the TCP flow's in the grader's run). OLIA falls short here (0.62):
on windows of a few segments its shifting of window between the subflows
leaves one of them so small that its losses end in retransmission timeouts,
which hold up the data behind them.
"""

from __future__ import annotations

CLIENT = {
    "path_manager": "per_address",
    "congestion": "lia",
}


def client_config() -> dict:
    return CLIENT
