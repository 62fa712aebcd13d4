"""mptcp_fairness reference solution.

Uncoupled, each subflow is a NewReno flow of its own, so h1 takes two of the
three shares of the bottleneck. LIA (RFC 6356) links the subflows' increases:
together they grow by at most what one TCP flow on the best path would, and
each still halves its own window on a loss, so the connection takes one share
(0.99 of the TCP flow's in the grader's run, 1.78 uncoupled). OLIA takes 0.92:
it moves window towards the subflow with the fewest losses, and at a shared
bottleneck both see the same loss rate, so it ends near LIA.
"""

from __future__ import annotations

CLIENT = {
    "path_manager": "per_address",
    "congestion": "lia",
}


def client_config() -> dict:
    return CLIENT
